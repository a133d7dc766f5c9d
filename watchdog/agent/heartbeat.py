"""The agent's own heartbeat: how late its event loop runs, for /healthz, the loop-lag gauge and systemd's
watchdog (``watchdog.commands.run.keep_systemd_fed``)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import anyio


class Heartbeat:
    """Beats every ``period`` seconds on the agent's loop, calling ``on_beat``; ``last`` is when it last beat, and
    a beat later than 50 ms is kept as a lag. One beat a second: /healthz calls a heartbeat older than 2 s stalled
    (``server.STALL_AFTER``), and each timer is a wake-up of the sidecar (four a second cost it more than the
    beats measured)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        period: float = 1.0,
        on_beat: Callable[[], None] | None = None,
    ) -> None:
        self.clock, self.period, self.on_beat = clock, period, on_beat
        self.last = clock()
        self.lags: deque[tuple[float, float]] = deque(maxlen=64)  # (when, lag) of recent late beats

    async def run(self) -> None:
        while True:
            before = self.clock()
            await anyio.sleep(self.period)
            lag = max(0.0, self.clock() - before - self.period)
            self.last = self.clock()
            if lag > 0.05:
                self.lags.append((self.last, lag))
            if self.on_beat is not None:
                self.on_beat()

    def recent_lag(self, window: float = 10.0) -> float:
        """The worst lag of the loop within the last ``window`` seconds."""
        since = self.clock() - window
        return max((lag for t, lag in self.lags if t >= since), default=0.0)
