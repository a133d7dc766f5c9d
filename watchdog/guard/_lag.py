"""Event-loop lag: a light heartbeat whose lateness is how long the loop could not run anything else."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NoReturn

import anyio

from watchdog.guard import _metrics
from watchdog.guard._metrics import RegistryArg, Sample

logger = logging.getLogger("watchdog.guard")


@dataclass(frozen=True)
class LagStatistics:
    """The monitor at one moment: ``lag`` now (a stall in progress counts), ``max_lag`` over the window."""

    lag: float
    max_lag: float
    ticks: int


class LagMonitor:
    """Measures how late the event loop wakes a sleeping heartbeat, and keeps the worst of the last minute.

    Every ``interval`` seconds a task sleeps for ``interval`` and notes how much later than asked it woke up:
    that lateness is time in which the loop ran nothing else (a blocking call, a long CPU slice, a flood of
    callbacks). A stall of ``d`` seconds shows up as a lag of at least ``d - interval``.

    What it exports (per worker ``pid``):

    - ``watchdog_guard_loop_lag_seconds``: the lag at the latest heartbeat, or of a stall in progress: when the
      heartbeat is overdue, the overdue time is the lag, so a loop blocked right now is seen while it is blocked
      (in multiprocess mode, the publisher thread reports it; in one process, a scrape served from another
      thread does).
    - ``watchdog_guard_loop_lag_max_seconds``: the largest lag of the trailing ``window`` (between ``window``
      and twice ``window`` seconds, kept in two slots), so a 300 ms stall between two scrapes is not lost.

    Why a window and not "the maximum since the last scrape": the sidecar and Prometheus both scrape, and each
    scrape would reset what the other has not yet seen; under gunicorn the scrape runs in whichever worker
    serves ``/metrics`` and reads the others' files, so a worker cannot even tell it was scraped. Keep
    ``window`` at least as long as the slowest scrape interval.

    Run it for the life of the process (the ``monitor()`` helper does, with ``SpinSentinel``); asyncio and trio.

    Args:
        interval: seconds between heartbeats (0.1: ten cheap wake-ups a second, well under 1 % of a core).
        window: seconds the maximum is kept (at least; see above).
        warn_after: log a warning for every single lag of at least this many seconds; None: never.
        registry: where metrics go (``"default"``, a ``CollectorRegistry``, or None).
        clock: a monotonic clock in seconds (tests inject one).
    """

    def __init__(
        self,
        *,
        interval: float = 0.1,
        window: float = 60.0,
        warn_after: float | None = 1.0,
        registry: RegistryArg = "default",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (interval > 0 and math.isfinite(interval)):
            raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
        if not (window > 0 and math.isfinite(window)):
            raise ValueError(f"window must be a positive number of seconds, not {window!r}")
        self.interval = interval
        self.window = window
        self.warn_after = warn_after
        self._clock = clock
        self._last = 0.0
        self._current = 0.0  # the worst lag of the slot that began at _slot_start
        self._previous = 0.0  # the worst lag of the slot before
        self._slot_start = clock()
        self._due: float | None = None  # when the running heartbeat should wake up
        self._ticks = 0
        self._hub = _metrics.hub_for(registry)
        self._cold = self._hub is not None and self._hub.multiprocess
        if self._hub is not None:
            self._hub.add("lag monitor", "loop", self)

    async def run(self) -> NoReturn:
        """Beat until cancelled."""
        if self._hub is not None:
            self._cold = False
            self._hub.activate(self)
        clock, interval = self._clock, self.interval
        try:
            while True:
                due = self._due = clock() + interval
                await anyio.sleep(interval)
                self.record(max(0.0, clock() - due))
        finally:
            self._due = None

    def record(self, lag: float, now: float | None = None) -> None:
        """Account one heartbeat's lateness (``run`` calls this; tests may too)."""
        now = self._clock() if now is None else now
        age = now - self._slot_start
        if age >= self.window:
            self._previous = self._current if age < 2 * self.window else 0.0
            self._current = 0.0
            self._slot_start = now
        self._current = max(self._current, lag)
        self._last = lag
        self._ticks += 1
        if self.warn_after is not None and lag >= self.warn_after:
            logger.warning("event loop lag %.3f s: the loop ran nothing else for that long", lag)

    def statistics(self) -> LagStatistics:
        now = self._clock()
        due = self._due
        stalled = max(0.0, now - due) if due is not None else 0.0
        age = now - self._slot_start
        if age >= 2 * self.window:
            window_max = 0.0
        elif age >= self.window:
            window_max = self._current
        else:
            window_max = max(self._current, self._previous)
        return LagStatistics(max(self._last, stalled), max(window_max, stalled), self._ticks)

    def _retire(self) -> None:
        """Stop exporting (its owner is done with it); another one may take its place."""
        if self._hub is not None:
            self._hub.remove("lag monitor", "loop", self)

    def _metric_samples(self) -> Iterable[Sample]:
        stats = self.statistics()
        return ((_metrics.LOOP_LAG, (), stats.lag), (_metrics.LOOP_LAG_MAX, (), stats.max_lag))
