"""What the agent knows of the world right now: targets, their workers, each worker's signals and looks.

The world is plain state with a few pure readings of it (``lookup`` for the rules, ``healthy_others`` for the
budget). It never samples and never acts; the loop feeds it and the actuator asks it questions.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from watchdog.agent.history import HISTORY_SIGNALS
from watchdog.agent.sources import ProcessReading, Scrape
from watchdog.agent.stacks import LookSchedule, StackLook
from watchdog.config import Config, Target
from watchdog.discovery import TargetView, WorkerId
from watchdog.guard import _metrics as guard_metrics  # the guard's metric names, declared once there
from watchdog.rules import RuleEngine
from watchdog.signals.catalog import SignalRef, parse_ref
from watchdog.signals.series import SignalStore

log = logging.getLogger("watchdog.agent")

HISTORY = frozenset({*HISTORY_SIGNALS, "rss_bytes", "open_fds"})
"""The signals whose past is read: the memory and fd slopes (``sources``) and the status page's charts; every
other signal keeps only its latest points."""
_SENTINEL = parse_ref(f"metric:{guard_metrics.CANCEL_SPIN_SCOPES.name}")


@dataclass(frozen=True)
class ProbeRun:
    """One round of a target's probes: the verdict, the worker that answered (if the answer names it)."""

    ok: bool
    worker_pid: int | None
    reason: str
    latency: float | None
    detail: dict[str, Any] = field(default_factory=dict)


Prober = Callable[[Target, aiohttp.ClientSession | None], Awaitable[ProbeRun]]
"""Runs a target's probes; on the given session (reused connections), or on fresh connections when None."""


class StackSampler(Protocol):
    """Takes one look at a worker's stacks (``watchdog.agent.stacks.StackLooker`` is the real one)."""

    async def look(
        self,
        worker: WorkerId,
        duration: float,
        rate: int,
        in_flight: dict[str, float] | None = None,
        *,
        kin: str | None = None,
    ) -> StackLook: ...


class Scanner(Protocol):
    """Finds each target's workers (``watchdog.discovery.Discovery`` is the real one)."""

    def scan(self) -> list[TargetView]: ...


@dataclass
class WorkerState:
    id: WorkerId
    target: str
    store: SignalStore = field(default_factory=lambda: SignalStore(history=HISTORY))
    reading: ProcessReading | None = None
    looks: LookSchedule = field(default_factory=lambda: LookSchedule(5.0, 60.0))
    stack_error: str | None = None
    process_error: str | None = None
    probe_streak: int = 0
    probe_ok: bool | None = None
    memory_limit: int | None = None
    exported: set[str] = field(default_factory=set)
    verdict: dict[str, Any] | None = None  # the latest stack look's verdict, with its evidence

    def heat(self, now: float) -> float | None:
        """How hot the worker is: the CPU it got or what its loop wanted (runnable), whichever is more. The look
        schedule reads this one figure both when it decides and when it records a look: mixing the two once made
        every look on a crowded machine a "CPU jump" and cost 17 % of a core."""
        heat = [self.store.current(n, now) for n in ("cpu_percent", "loop_runnable_percent")]
        return max((h for h in heat if h is not None), default=None)


@dataclass
class TargetState:
    cfg: Target
    view: TargetView | None = None
    workers: dict[str, WorkerState] = field(default_factory=dict)
    scrape: Scrape | None = None
    scraped_at: float = -math.inf
    probe_streak: int = 0
    last_probe: ProbeRun | None = None
    signals: dict[str, float] = field(default_factory=dict)

    def worker(self, pid: int) -> WorkerState | None:
        return next((ws for ws in self.workers.values() if ws.id.pid == pid), None)


class World:
    def __init__(self, cfg: Config, rules: RuleEngine) -> None:
        self.cfg = cfg
        self.rules = rules
        self.targets = {t.name: TargetState(t) for t in cfg.targets}

    def sync(
        self, ts: TargetState, view: TargetView, memory_limit: Callable[[int], int | None]
    ) -> tuple[list[WorkerState], list[WorkerState]]:
        """Take discovery's view of a target: the workers that are gone, and the new ones (now watched)."""
        ts.view = view
        current = {w.key: w for w in view.workers}
        gone = [ts.workers.pop(k) for k in [k for k in ts.workers if k not in current]]
        new = []
        for key, wid in current.items():
            if key not in ts.workers:
                looks = LookSchedule(self.cfg.intervals.stacks, self.cfg.stacks.baseline)
                limit = ts.cfg.memory_limit or memory_limit(wid.pid)
                ts.workers[key] = WorkerState(wid, ts.cfg.name, memory_limit=limit, looks=looks)
                new.append(ts.workers[key])
        ts.signals["target_workers"] = float(len(ts.workers))
        return gone, new

    def due_looks(self, now: float, *, skip: Callable[[WorkerId], bool]) -> list[tuple[str, TargetState, WorkerState]]:
        """The workers due for a stack look now, and why; each is claimed (the next round will not start a
        second look meanwhile). ``skip``: workers not to look at (one being recycled)."""
        due = []
        hot_at = self.cfg.stacks.hot_cpu_percent
        for ts in self.targets.values():
            for ws in ts.workers.values():
                cpu, sockets = ws.heat(now), ws.store.current("sockets", now)
                sentinel = self.lookup(ts, ws, now)(_SENTINEL)
                stalled = (
                    ws.store.current("loop_wait_outside_selector", now) == 1.0
                    or ws.probe_streak > 0
                    or (sentinel is not None and sentinel >= 1)
                )
                why = ws.looks.due(
                    now, cpu=cpu, sockets=sockets, stalled=stalled,
                    hot=cpu is not None and cpu >= hot_at, cool=cpu is not None and cpu < hot_at / 2,
                )  # fmt: skip
                if why is not None and not skip(ws.id):
                    log.debug("stack look at %s worker %d: %s (heat %s %%, gap %.0f s)", ts.cfg.name, ws.id.pid, why,
                              "-" if cpu is None else f"{cpu:.0f}", ws.looks.gap)  # fmt: skip
                    ws.looks.last = now
                    due.append((why, ts, ws))
        return due

    def lookup(self, ts: TargetState, ws: WorkerState | None, now: float) -> Callable[[SignalRef], float | None]:
        """How rules read signals for ``ws`` (or for the target as a whole when None) at ``now``."""
        scrape_fresh = (
            ts.scrape is not None and not ts.scrape.error and now - ts.scraped_at <= 3 * self.cfg.intervals.metrics
        )

        def lookup(ref: SignalRef) -> float | None:
            if ref.source == "target":
                return ts.signals.get(ref.name)
            if ws is None:
                return None
            if ref.source == "metrics":
                if not scrape_fresh or ts.scrape is None:
                    return None
                if ref.name == "guard_limiter_saturation":  # derived from two guard gauges per limiter
                    return ts.scrape.guard_saturation(ws.id.pid)
                return ts.scrape.value(ref, ws.id.pid)
            return ws.store.current(ref.name, now)

        return lookup

    def healthy_others(self, target: str, worker: WorkerId) -> int:
        """Workers of ``target`` besides ``worker`` that no rule above ``info`` fires on and whose probe passes."""
        severity = {r.name: r.severity for r in self.rules.rules}
        n = 0
        for other in self.targets[target].workers.values():
            if other.id == worker:
                continue
            bad = [s for s in self.rules.firing(other.id.key) if severity.get(s.rule, "warning") != "info"]
            if not bad and other.probe_ok is not False:
                n += 1
        return n

    def worst_worker(self, target: str, now: float) -> WorkerState | None:
        """The worker most likely at fault: the most rules firing, then the hottest (for requests naming none)."""
        workers = list(self.targets[target].workers.values())
        if not workers:
            return None
        return max(
            workers, key=lambda w: (len(self.rules.firing(w.id.key)), w.store.current("cpu_percent", now) or 0.0)
        )

    def record_probe(self, ts: TargetState, run: ProbeRun) -> tuple[WorkerState | None, dict[str, float | None]]:
        """Record a probe round on the target; return the worker it can honestly be pinned on, and its signals.

        A failure is pinned on a worker only when the answer names it, or when there is only one worker: with
        a shared listening socket a probe cannot choose its worker, and a blocked worker never even accepts, so
        other failures belong to the target as a whole.
        """
        ts.last_probe = run
        ts.probe_streak = 0 if run.ok else ts.probe_streak + 1
        ts.signals["target_probe_consecutive_failures"] = float(ts.probe_streak)
        owner = ts.worker(run.worker_pid) if run.worker_pid is not None else None
        if owner is None and run.worker_pid is None and len(ts.workers) == 1:
            owner = next(iter(ts.workers.values()))
        values: dict[str, float | None] = {}
        if owner is not None:
            owner.probe_streak = 0 if run.ok else owner.probe_streak + 1
            owner.probe_ok = run.ok
            values = {
                "probe_ok": 1.0 if run.ok else 0.0,
                "probe_consecutive_failures": float(owner.probe_streak),
                "probe_latency_seconds": run.latency if run.ok else None,
            }
        judged = [ws for ws in ts.workers.values() if ws.probe_ok is not None]
        if judged:
            ts.signals["target_probe_failing_ratio"] = sum(not ws.probe_ok for ws in judged) / len(judged)
        return owner, values
