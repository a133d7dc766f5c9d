"""The sidecar's look at a worker's stacks: the same evidence and the same verdict engine as ``watchdog diagnose``.

One look samples the worker with py-spy for ``stacks.duration`` while psutil watches it, then judges the window
with ``watchdog.diagnose.verdicts.state_verdict``, so the sidecar and the command can never disagree about what
a worker is doing. The look becomes signals (``stack_*``, see the catalogue) and the verdict is kept as evidence
for the rule that fires on it. Failures (py-spy missing, no ptrace permission, the worker gone) raise the
``InspectError`` that says so; the agent shows it as a state, it never crashes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from watchdog.diagnose import collect_evidence
from watchdog.diagnose.report import verdict_dict
from watchdog.diagnose.verdicts import Verdict, hot_frames, main_view, state_verdict, thread_views
from watchdog.discovery import WorkerId
from watchdog.signals.catalog import BUILTIN_STACK_PATTERNS
from watchdog.signals.interpreter import Interpreter

CONFIDENCE = {"low": 1.0, "medium": 2.0, "high": 3.0}


@dataclass(frozen=True)
class StackLook:
    signals: dict[str, float | None]
    verdict: dict[str, Any]


class StackLooker:
    """Takes looks at workers, at most ``concurrency`` py-spy processes at a time."""

    def __init__(self, patterns: Mapping[str, str], *, concurrency: int = 2, nonblocking: bool = False) -> None:
        self.patterns = {name: re.compile(p) for name, p in {**BUILTIN_STACK_PATTERNS, **patterns}.items()}
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.nonblocking = nonblocking
        self._interpreters: dict[WorkerId, Interpreter] = {}  # a worker's Python does not change while it lives

    async def look(
        self, worker: WorkerId, duration: float, rate: int, in_flight: dict[str, float] | None = None
    ) -> StackLook:
        ev = await collect_evidence(
            worker.pid, create_time=worker.create_time, duration=duration, rate=rate,
            nonblocking=self.nonblocking, limiter=self.limiter, in_flight=in_flight,
            interpreter=self._interpreters.get(worker), first_connections=False,
        )  # fmt: skip
        if ev.interpreter is not None:
            if len(self._interpreters) > 256:  # workers come and go; keep the cache bounded
                self._interpreters.clear()
            self._interpreters[worker] = ev.interpreter
        verdict = state_verdict(ev)
        main = main_view(thread_views(ev), worker.pid)
        return StackLook(signals_of(verdict, main, self.patterns), verdict_dict(verdict))


def signals_of(verdict: Verdict, main: Any, patterns: Mapping[str, re.Pattern[str]]) -> dict[str, float | None]:
    """The stack signals of one look: shares of the loop thread's samples (``stack_share:NAME`` for each named
    pattern: samples with a frame whose name matches), and the verdict's confidences."""
    conf = CONFIDENCE.get(verdict.confidence, 0.0)
    out: dict[str, float | None] = {
        "stack_spin_confidence": conf if verdict.kind == "spin" else 0.0,
        "stack_blocked_confidence": conf if verdict.kind == "blocked" else 0.0,
        "stack_busy_confidence": conf if verdict.kind == "busy" else 0.0,
    }
    if main is None or main.samples == 0:
        return {**out, "stack_samples": 0.0}
    n = main.samples
    blocked_share = 0.0
    if verdict.kind == "blocked":
        top = hot_frames(main, 1)
        blocked_share = top[0][1] / n if top else 0.0
    out.update(
        {
            "stack_samples": float(n),
            "stack_spin_samples": float(main.spin_hits),
            "stack_spin_ratio": main.spin_hits / n,
            "stack_loop_ratio": main.machinery / n,
            "stack_active_ratio": 1.0 - main.waiting / n,
            "stack_blocked_ratio": blocked_share,
        }
    )
    for name, rx in patterns.items():
        matching = sum(s.count for s in main.stacks if any(rx.search(f.name) for f in s.frames))
        out[f"stack_share:{name}"] = matching / n
    return out


ONSET_GAP = 1.0
"""A worker whose CPU jumps (from below 60 % to 90 % and more) is looked at this soon after its previous look,
whatever the gap: that jump is how a spin begins, and detection time is counted from it."""


@dataclass
class LookSchedule:
    """When to look at one worker's stacks: cheap signals run always, py-spy only on suspicion.

    A stall sign (the loop thread asleep outside its selector, a failing probe, the guard's spin sentinel) gets
    a look at most every ``min_gap``. A hot worker gets one too, but while looks keep finding healthy work
    (busy, serving, idle) the gap doubles up to ``baseline``: under steady load every worker is hot, and
    sampling each every few seconds cost the demo 4.6 % of a core and 3 % of its throughput. The gap snaps back
    when the picture changes in a way that matters: the worker's sockets fall away (load stopped; a spin left
    behind keeps the CPU hot with its clients gone: the war story's "100 % CPU with no requests") or its CPU
    jumps from below 60 % to 90 % and more. Ordinary jitter under load (CPU hovering around the hot threshold,
    a few sockets coming and going) does not count. A worker that cools down (below half the hot threshold) is
    looked at again as soon as it is hot.
    Everything gets a look every ``baseline``.
    """

    min_gap: float
    baseline: float
    last: float = -math.inf
    gap: float = 0.0
    fingerprint: tuple[float, int] | None = None

    def __post_init__(self) -> None:
        self.gap = self.gap or self.min_gap

    @staticmethod
    def _print(cpu: float | None, sockets: float | None) -> tuple[float, int]:
        return (cpu or 0.0, int(sockets or 0))

    def due(
        self, now: float, *, cpu: float | None, sockets: float | None, hot: bool, stalled: bool, cool: bool = False
    ) -> str | None:
        """Why a look is due now (``stalled``, ``changed``, ``hot``, ``baseline``), or None.

        ``cool`` means clearly not hot (well below the hot threshold): a worker hovering around the threshold
        under load keeps its backed-off gap; one that really cooled down is looked at as soon as it is hot again.
        """
        since = now - self.last
        if stalled and since >= self.min_gap:
            return "stalled"
        if cool:
            self.gap = self.min_gap
        elif since >= min(self.min_gap, ONSET_GAP) and self.fingerprint is not None:
            was_cpu, was_sockets = self.fingerprint
            now_cpu, now_sockets = self._print(cpu, sockets)
            clients_left = was_sockets - now_sockets >= 3 and now_sockets <= was_sockets // 2
            if clients_left or (was_cpu < 60.0 and now_cpu >= 90.0):
                self.gap = self.min_gap
                return "changed"
        if hot and since >= self.gap:
            return "hot"
        return "baseline" if since >= self.baseline else None

    def looked(self, now: float, verdict: str | None, *, cpu: float | None, sockets: float | None) -> None:
        """Record a look and what it found: healthy work backs off, anything else keeps watching closely."""
        self.last = now
        self.fingerprint = self._print(cpu, sockets)
        healthy = verdict in ("busy", "active", "idle")
        self.gap = min(self.gap * 2, self.baseline) if healthy else self.min_gap
