"""The sidecar's look at a worker's stacks: the same evidence and the same verdict engine as ``watchdog diagnose``.

One look samples the worker with py-spy for ``stacks.duration`` while psutil watches it, then judges the window
with ``watchdog.diagnose.verdicts.state_verdict``, so the sidecar and the command can never disagree about what
a worker is doing. The look becomes signals (``stack_*``, see the catalogue) and the verdict is kept as evidence
for the rule that fires on it. Failures (py-spy missing, no ptrace permission, the worker gone) raise the
``InspectError`` that says so; the agent shows it as a state, it never crashes.
"""

from __future__ import annotations

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

    async def look(
        self, worker: WorkerId, duration: float, rate: int, in_flight: dict[str, float] | None = None
    ) -> StackLook:
        ev = await collect_evidence(
            worker.pid, create_time=worker.create_time, duration=duration, rate=rate,
            nonblocking=self.nonblocking, limiter=self.limiter, in_flight=in_flight,
        )  # fmt: skip
        verdict = state_verdict(ev)
        main = main_view(thread_views(ev), worker.pid)
        return StackLook(signals_of(verdict, main), verdict_dict(verdict))


def signals_of(verdict: Verdict, main: Any) -> dict[str, float | None]:
    """The stack signals of one look: shares of the loop thread's samples, and the verdict's confidences."""
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
    return out
