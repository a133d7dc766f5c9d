"""The systemd notify protocol (``sd_notify(3)``), standard library only.

Under ``Type=notify`` systemd hands the service ``NOTIFY_SOCKET``: an ``AF_UNIX`` datagram socket, its path
or, with a leading ``@``, its name in the abstract namespace. Each message is one datagram of ``KEY=VALUE``
lines. The watchdog sends:

- ``READY=1`` once its listener is bound and its targets are loaded (systemd holds ``After=`` units until then);
- ``WATCHDOG=1`` at half of ``WATCHDOG_USEC``, and only while the agent's own heartbeat is fresh: the caller
  drives :meth:`Notifier.beat` from the event loop that does the work, so a stalled loop stops the pings and
  systemd restarts the service (no thread that would ping for a dead loop);
- ``STOPPING=1`` when SIGTERM arrives;
- ``STATUS=`` a one-line summary that ``systemctl status`` shows.

Outside systemd (no ``NOTIFY_SOCKET``) :func:`from_environ` returns ``None`` and nothing is sent. A send that
fails is logged once and never raised: systemd's absence must not take the watchdog down.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger("watchdog.sdnotify")


class Notifier:
    """Sends notify messages to one socket; ``ping_interval`` is half of ``WATCHDOG_USEC`` (None: no pings)."""

    def __init__(self, address: str, *, watchdog_usec: int | None = None) -> None:
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.ping_interval = watchdog_usec / 2e6 if watchdog_usec else None
        self.last_ping: float | None = None
        self.status: str | None = None
        self._failed = False

    def send(self, **fields: str) -> bool:
        """One datagram carrying ``KEY=VALUE`` for each field, in order; False (logged once) if it failed."""
        text = "\n".join(f"{key}={' '.join(value.split())}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(text.encode(), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify systemd at %r: %s", self.address.replace("\0", "@"), exc)
            self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str) -> None:
        self.status = status
        self.send(READY="1", STATUS=status)

    def stopping(self, status: str = "stopping") -> None:
        self.send(STOPPING="1", STATUS=status)

    def beat(self, now: float, status: str | None = None) -> bool:
        """Called from a heartbeat known to be fresh: ping if half of ``WATCHDOG_USEC`` passed since the last one.

        A changed ``status`` rides along in the same datagram, or goes alone when no ping is due.
        Returns whether a ping was sent.
        """
        changed = status is not None and status != self.status
        due = self.ping_interval is not None and (self.last_ping is None or now - self.last_ping >= self.ping_interval)
        fields: dict[str, str] = {}
        if due:
            fields["WATCHDOG"] = "1"
        if changed and status is not None:
            fields["STATUS"] = status
            self.status = status
        if fields and self.send(**fields) and due:
            self.last_ping = now
            return True
        return False


def from_environ(environ: Mapping[str, str] | None = None, *, getpid: Callable[[], int] = os.getpid) -> Notifier | None:
    """The notifier systemd asked for, or None when not started by systemd with ``Type=notify``.

    ``WATCHDOG_PID``, when set, names the process the pings are for; another process (a child that inherited
    the environment) must not ping on its behalf.
    """
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if not address or not (address.startswith(("/", "@"))):
        return None
    usec: int | None = None
    raw = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if raw.isdigit() and int(raw) > 0 and (not pid or pid == str(getpid())):
        usec = int(raw)
    return Notifier(address, watchdog_usec=usec)
