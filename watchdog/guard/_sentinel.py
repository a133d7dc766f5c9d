"""The spin sentinel: sees, from inside, an anyio cancel scope re-delivering cancellation for seconds."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

import anyio

from watchdog.guard import _anyio_internals as internals
from watchdog.guard import _metrics
from watchdog.guard._metrics import RegistryArg, Sample

logger = logging.getLogger("watchdog.guard")

UNSUPPORTED = -1
"""The value of ``watchdog_guard_cancel_spin_scopes`` when the sentinel cannot inspect this process."""


@dataclass(frozen=True)
class SpinningScope:
    """One cancel scope found re-delivering cancellation: for how long, and the tasks that will not finish."""

    scope_id: int
    seconds: float
    tasks: tuple[str, ...]


class SpinSentinel:
    """Detects the anyio cancel-delivery spin (anyio #695, seed 001) from inside the process, cheaply.

    The spin: a task in a cancelled scope catches the cancellation and awaits again; anyio re-delivers the
    cancellation on every loop iteration, forever, and the worker burns a core while its health check stays
    green. The event loop still turns, so the lag monitor sees nothing: the loop is busy, not blocked.

    Every ``interval`` seconds the sentinel looks at the cancel scopes of the tasks anyio knows and notes each
    scope that has a cancel delivery scheduled. A healthy cancellation is delivered within a loop iteration or
    two, so it is almost never seen twice; a scope seen at every check for ``threshold`` seconds is spinning.
    It then exports ``watchdog_guard_cancel_spin_scopes`` (how many; -1 when this process cannot be inspected)
    and ``watchdog_guard_cancel_spin_seconds`` (for how long), and logs once per scope which tasks keep it
    spinning, with their coroutine stacks. It only reads: on a healthy loop it changes nothing. A busy loop
    (CPU work in slices) or many short cancellations do not trip it.

    asyncio backend only (it reads anyio's asyncio internals; tested on anyio 4.16). On trio, or an anyio whose
    internals differ, it logs one warning and exports -1 instead of guessing. Each check walks the scope
    chains of the tasks anyio tracks: microseconds for a few hundred tasks.

    What to do about a spin: recycle the worker (the sidecar does, gracefully), then fix the task that swallows
    cancellation. ``patch_cancel_delivery`` is the opt-in last resort that stops the spin in place.

    Args:
        interval: seconds between checks.
        threshold: seconds of continuous re-delivery that make a scope count as spinning.
        registry: where metrics go (``"default"``, a ``CollectorRegistry``, or None).
        clock: a monotonic clock in seconds (tests inject one).
    """

    def __init__(
        self,
        *,
        interval: float = 0.5,
        threshold: float = 2.0,
        registry: RegistryArg = "default",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (interval > 0 and math.isfinite(interval)):
            raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
        if not (threshold > 0 and math.isfinite(threshold)):
            raise ValueError(f"threshold must be a positive number of seconds, not {threshold!r}")
        self.interval = interval
        self.threshold = threshold
        self._clock = clock
        self._tracking: dict[int, tuple[Any, float]] = {}  # scope id -> (scope, first seen pending)
        self._logged: set[int] = set()
        self._spinning: tuple[SpinningScope, ...] = ()
        self._checks = 0
        self._deliveries_seen = 0
        self._unsupported: str | None = None
        self._hub = _metrics.hub_for(registry)
        self._cold = self._hub is not None and self._hub.multiprocess
        if self._hub is not None:
            self._hub.add("spin sentinel", "loop", self)

    async def run(self) -> NoReturn:
        """Check every ``interval`` seconds until cancelled (or, when unsupported, say so once and wait)."""
        if self._hub is not None:
            self._cold = False
            self._hub.activate(self)
        why = self._why_unsupported()
        if why is not None:
            self._unsupported = why
            logger.warning("spin sentinel disabled: %s; watchdog_guard_cancel_spin_scopes reads -1", why)
            await anyio.sleep_forever()
            raise AssertionError("unreachable")  # pragma: no cover
        while True:
            await anyio.sleep(self.interval)
            self.check()

    @staticmethod
    def _why_unsupported() -> str | None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return "it reads anyio's asyncio backend, and this task runs on another event loop (trio?)"
        return internals.supported()

    def check(self) -> tuple[SpinningScope, ...]:
        """Look once (``run`` calls this every ``interval``); returns the scopes spinning now. In the loop only."""
        now = self._clock()
        tracking: dict[int, tuple[Any, float]] = {}
        for sid, scope in internals.pending_scopes().items():
            seen = self._tracking.get(sid)
            since = seen[1] if seen is not None and seen[0] is scope else now
            tracking[sid] = (scope, since)
        self._tracking = tracking
        self._checks += 1
        self._deliveries_seen += len(tracking)
        spinning = []
        for sid, (scope, since) in tracking.items():
            if now - since < self.threshold:
                continue
            tasks = tuple(internals.describe_task(t) for t in internals.stuck_tasks(scope))
            spinning.append(SpinningScope(sid, now - since, tasks))
            if sid not in self._logged:
                self._logged.add(sid)
                logger.error(
                    "event loop spinning: anyio cancel scope %x has re-delivered cancellation for %.1f s "
                    "(anyio #695). Tasks in it that do not finish when cancelled:\n  %s",
                    sid,
                    now - since,
                    "\n  ".join(tasks) or "(none found)",
                )
        self._logged &= tracking.keys()
        self._spinning = tuple(spinning)
        return self._spinning

    @property
    def spinning(self) -> tuple[SpinningScope, ...]:
        """What the latest check found."""
        return self._spinning

    @property
    def checks(self) -> int:
        """Checks made so far."""
        return self._checks

    @property
    def deliveries_seen(self) -> int:
        """Cancel deliveries in progress that checks came across (healthy ones, almost always), in total."""
        return self._deliveries_seen

    def _retire(self) -> None:
        """Stop exporting (its owner is done with it); another one may take its place."""
        if self._hub is not None:
            self._hub.remove("spin sentinel", "loop", self)

    def _metric_samples(self) -> Iterable[Sample]:
        if self._unsupported is not None:
            return ((_metrics.CANCEL_SPIN_SCOPES, (), UNSUPPORTED), (_metrics.CANCEL_SPIN_SECONDS, (), 0.0))
        spinning = self._spinning
        longest = max((s.seconds for s in spinning), default=0.0)
        return ((_metrics.CANCEL_SPIN_SCOPES, (), len(spinning)), (_metrics.CANCEL_SPIN_SECONDS, (), longest))
