"""The systemd notify protocol: the real ``watchdog run`` talks to a datagram socket as systemd would give it.

READY=1 once the listener answers, WATCHDOG=1 at half of WATCHDOG_USEC, no pings while the process is
stopped (SIGSTOP: the loop that drives them is the agent's own), pings again after SIGCONT, STOPPING=1 on
SIGTERM. Both kinds of NOTIFY_SOCKET: a path, and '@name' in the abstract namespace.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from examples.demo.harness import free_port
from watchdog.agent.sdnotify import Notifier, from_environ

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().splitlines())


class Systemd:
    """The receiving end of NOTIFY_SOCKET, as systemd holds it."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address
        self.messages: list[tuple[float, dict[str, str]]] = []

    def next(self, within: float) -> dict[str, str] | None:
        """The next message, waiting at most ``within`` seconds; None when none came."""
        self.sock.settimeout(within)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        msg = _fields(data)
        self.messages.append((time.monotonic(), msg))
        return msg

    def wait_for(self, key: str, within: float) -> dict[str, str]:
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            msg = self.next(left)
            if msg is not None and key in msg:
                return msg
        raise AssertionError(f"no {key} within {within} s; got {[m for _, m in self.messages]}")

    def drain(self) -> None:
        while self.next(0.05) is not None:
            pass


@contextmanager
def systemd_socket(kind: str, tmp_path: Path) -> Iterator[Systemd]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        if kind == "path":
            path = str(tmp_path / "notify.sock")
            sock.bind(path)
            yield Systemd(sock, path)
        else:
            name = f"watchdog-test-{uuid.uuid4().hex}"
            sock.bind("\0" + name)
            yield Systemd(sock, "@" + name)
    finally:
        sock.close()


@contextmanager
def watchdog_run(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``watchdog run`` watching a sleeping process, under the given environment; stopped by pid after."""
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    listen = f"127.0.0.1:{free_port()}"
    config = tmp_path / "watchdog.yaml"
    config.write_text(
        f"targets:\n  - name: sleeper\n    match: {{pid: {target.pid}}}\n    workers: self\n"
        f"server: {{listen: '{listen}'}}\nintervals: {{process: 1s}}\n"
    )
    log = (tmp_path / "watchdog.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchdog", "run", "-c", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
    )
    try:
        yield proc, listen
    finally:
        for p in (proc, target):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
            p.wait(timeout=10)
        log.close()


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_ready_then_pings_that_stop_with_the_process_and_stopping_on_sigterm(kind: str, tmp_path: Path) -> None:
    with (
        systemd_socket(kind, tmp_path) as systemd,
        watchdog_run(tmp_path, {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "1000000"}) as (proc, listen),
    ):
        ready = systemd.wait_for("READY", within=60)
        assert ready["READY"] == "1"
        assert ready["STATUS"].startswith("watching 1 target(s), 1 worker(s)")
        # READY comes after the listener is bound: it answers now, without retrying
        with urllib.request.urlopen(f"http://{listen}/healthz", timeout=10) as r:
            assert r.status == 200
        pings = [systemd.wait_for("WATCHDOG", within=10) for _ in range(3)]
        assert all(p["WATCHDOG"] == "1" for p in pings)
        # (their spacing, half of WATCHDOG_USEC, is checked with a fake clock below: arrival times here are
        # when this test read them, which a loaded machine skews)

        os.kill(proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while _state(proc.pid) != "T" and time.monotonic() < deadline:  # the stop has taken effect
            time.sleep(0.01)
        assert _state(proc.pid) == "T"
        systemd.drain()  # a ping sent just before the stop
        silent = systemd.next(within=2.5)  # five ping periods
        assert silent is None, f"pinged while stopped: {silent}"

        os.kill(proc.pid, signal.SIGCONT)
        assert systemd.wait_for("WATCHDOG", within=10)["WATCHDOG"] == "1"

        proc.send_signal(signal.SIGTERM)
        stopping = systemd.wait_for("STOPPING", within=10)
        assert stopping["STOPPING"] == "1"
        assert "SIGTERM" in stopping["STATUS"]
        assert proc.wait(timeout=30) == 0


def test_without_watchdog_usec_it_says_ready_and_never_pings(tmp_path: Path) -> None:
    with (
        systemd_socket("path", tmp_path) as systemd,
        watchdog_run(tmp_path, {"NOTIFY_SOCKET": systemd.address}) as (proc, _),
    ):
        systemd.wait_for("READY", within=60)
        # STATUS updates may come; a ping must not, over several would-be periods
        deadline = time.monotonic() + 3
        while (left := deadline - time.monotonic()) > 0:
            msg = systemd.next(left)
            assert msg is None or "WATCHDOG" not in msg, msg
        proc.send_signal(signal.SIGTERM)
        systemd.wait_for("STOPPING", within=10)
        assert proc.wait(timeout=30) == 0


def test_from_environ_reads_what_systemd_sets() -> None:
    assert from_environ({}) is None
    assert from_environ({"NOTIFY_SOCKET": "relative/path"}) is None
    n = from_environ({"NOTIFY_SOCKET": "@sd", "WATCHDOG_USEC": "3000000"}, getpid=lambda: 7)
    assert n is not None
    assert n.address == "\0sd"
    assert n.ping_interval == 1.5
    # WATCHDOG_PID names another process (we are a child that inherited it): no pings from us
    other = from_environ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "8"}, getpid=lambda: 7)
    assert other is not None
    assert other.ping_interval is None
    mine = from_environ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "7"}, getpid=lambda: 7)
    assert mine is not None
    assert mine.ping_interval == 1.5


def test_beat_pings_at_half_the_interval_and_sends_status_only_when_it_changes(tmp_path: Path) -> None:
    with systemd_socket("path", tmp_path) as systemd:
        n = Notifier(systemd.address, watchdog_usec=2_000_000)  # a ping per second
        assert n.beat(100.0, "a") is True
        assert systemd.next(1) == {"WATCHDOG": "1", "STATUS": "a"}
        assert n.beat(100.5, "a") is False  # not due, status unchanged: nothing sent
        assert n.beat(100.9, "b") is False  # not due, but the status changed
        assert systemd.next(1) == {"STATUS": "b"}
        assert n.beat(101.0, "b") is True
        assert systemd.next(1) == {"WATCHDOG": "1"}
        assert systemd.next(0.1) is None


def test_a_socket_that_is_gone_is_logged_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier(str(tmp_path / "nobody-listens.sock"), watchdog_usec=1_000_000)
    assert n.beat(1.0) is False
    assert n.beat(2.0) is False
    n.ready("x")
    n.stopping()
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1
