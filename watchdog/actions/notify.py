"""Notifications: JSON webhooks with a bounded queue, per-attempt timeout, retries with jittered backoff.

``Notifier.submit`` never blocks and never raises: when the queue is full the oldest notification is dropped
and counted, because a watchdog that stalls on a dead webhook is the outage. A single sender task drains the
queue; what is still queued when it is cancelled (shutdown) is counted as discarded. Payloads are redacted
(``watchdog.redact``) when queued, so no secret and no bare ``Infinity`` ever reaches a receiver. Any exception
of one delivery (a ``ValueError`` from a header aiohttp refuses, a bug) is a counted failure of that delivery,
never the end of the sender.

Outcomes reported to ``on_result`` (and counted in ``watchdog_notifications_total{outcome}``): ``sent``,
``failed``, ``dropped`` (queue full) and ``discarded`` (pending at shutdown).
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio

from watchdog.config import Webhook
from watchdog.redact import REDACTOR, Redactor, outward

log = logging.getLogger("watchdog.notify")


@dataclass
class NotifyStats:
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    discarded: int = 0
    retried: int = 0


class Notifier:
    def __init__(
        self,
        webhooks: list[Webhook],
        *,
        maxsize: int = 100,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        on_result: Callable[[str, str], None] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.webhooks = webhooks
        self._queue: deque[dict[str, Any]] = deque()
        self._maxsize = maxsize
        self._ready = anyio.Event()
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._on_result = on_result or (lambda url, outcome: None)
        self.stats = NotifyStats()
        self._redactor = redactor

    def submit(self, payload: dict[str, Any]) -> None:
        """Queue ``payload`` for every webhook; drop the oldest queued one if the queue is full."""
        if not self.webhooks:
            return
        if len(self._queue) >= self._maxsize:
            self._queue.popleft()
            self.stats.dropped += 1
            self._report("", "dropped")
            log.warning("notification queue full (%d); dropped the oldest", self._maxsize)
        self._queue.append(outward(payload, redactor=self._redactor))
        self._ready.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def run(self, http: aiohttp.ClientSession) -> None:
        """Send queued notifications until cancelled; what is still queued then is counted as discarded."""
        try:
            while True:
                while not self._queue:
                    self._ready = anyio.Event()
                    await self._ready.wait()
                payload = self._queue.popleft()
                for hook in self.webhooks:
                    await self._deliver(http, hook, payload)
        finally:
            if self._queue:
                n = len(self._queue)
                self.stats.discarded += n
                for _ in range(n):
                    self._report("", "discarded")
                self._queue.clear()
                log.warning("shutting down with %d notification(s) unsent; discarded", n)

    def _report(self, url: str, outcome: str) -> None:
        try:
            self._on_result(url, outcome)
        except Exception:  # a counting callback must not take the sender down
            log.exception("notification result callback failed")

    async def _deliver(self, http: aiohttp.ClientSession, hook: Webhook, payload: dict[str, Any]) -> bool:
        delay = self._backoff
        for attempt in range(hook.retries + 1):
            try:
                async with http.post(
                    hook.url,
                    json=payload,
                    headers=hook.headers,
                    timeout=aiohttp.ClientTimeout(total=hook.timeout),
                ) as r:
                    if r.status < 300:
                        self.stats.sent += 1
                        self._report(hook.url, "sent")
                        return True
                    problem = f"HTTP {r.status}"
                    if 400 <= r.status < 500 and r.status not in (408, 429):
                        break  # the receiver refuses this payload; retrying will not change its mind
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = str(exc) or type(exc).__name__
            except Exception as exc:  # noqa: BLE001 - e.g. ValueError for a header value aiohttp refuses
                problem = f"{type(exc).__name__}: {exc}"
                break  # the same request would fail the same way
            if attempt < hook.retries:
                self.stats.retried += 1
                await anyio.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not crypto
                delay = min(delay * 2, self._max_backoff)
        self.stats.failed += 1
        self._report(hook.url, "failed")
        redact = (self._redactor or REDACTOR).text
        log.warning("webhook %s failed after %d attempt(s): %s", redact(hook.url), attempt + 1, redact(problem))
        return False
