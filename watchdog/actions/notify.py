"""Notifications: JSON webhooks with a bounded queue, per-attempt timeout, retries with jittered backoff.

``Notifier.submit`` never blocks and never raises: when the queue is full the oldest notification is dropped
and counted, because a watchdog that stalls on a dead webhook is the outage. A single sender task drains the
queue; ``aclose`` gives it a bounded time to finish.
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

log = logging.getLogger("watchdog.notify")


@dataclass
class NotifyStats:
    sent: int = 0
    failed: int = 0
    dropped: int = 0
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
    ) -> None:
        self.webhooks = webhooks
        self._queue: deque[dict[str, Any]] = deque()
        self._maxsize = maxsize
        self._ready = anyio.Event()
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._on_result = on_result or (lambda url, outcome: None)
        self.stats = NotifyStats()

    def submit(self, payload: dict[str, Any]) -> None:
        """Queue ``payload`` for every webhook; drop the oldest queued one if the queue is full."""
        if not self.webhooks:
            return
        if len(self._queue) >= self._maxsize:
            self._queue.popleft()
            self.stats.dropped += 1
            log.warning("notification queue full (%d); dropped the oldest", self._maxsize)
        self._queue.append(payload)
        self._ready.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def run(self, http: aiohttp.ClientSession) -> None:
        """Send queued notifications until cancelled."""
        while True:
            while not self._queue:
                self._ready = anyio.Event()
                await self._ready.wait()
            payload = self._queue.popleft()
            for hook in self.webhooks:
                await self._deliver(http, hook, payload)

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
                        self._on_result(hook.url, "sent")
                        return True
                    problem = f"HTTP {r.status}"
                    if 400 <= r.status < 500 and r.status not in (408, 429):
                        break  # the receiver refuses this payload; retrying will not change its mind
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = str(exc) or type(exc).__name__
            if attempt < hook.retries:
                self.stats.retried += 1
                await anyio.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not crypto
                delay = min(delay * 2, self._max_backoff)
        self.stats.failed += 1
        self._on_result(hook.url, "failed")
        log.warning("webhook %s failed after %d attempt(s): %s", hook.url, attempt + 1, problem)
        return False
