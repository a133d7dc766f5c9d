"""What diagnose collects about one process over its window: the input of the verdict engine, and nothing else.

``ProcessEvidence`` is plain data (frozen dataclasses from ``watchdog.signals``), so verdicts are pure functions
of it and tests can build it from recorded samples without starting anything. ``collect`` fills it from a real
process.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from watchdog.signals.cgroup import CgroupMemory
from watchdog.signals.interpreter import Interpreter
from watchdog.signals.process import ProcessInfo, Snapshot, cpu_percent, thread_cpu_percent, thread_demand_percent
from watchdog.signals.stacks import LocalsSeries, StackSamples


@dataclass(frozen=True)
class Poll:
    """A light look taken every fraction of a second during the window: seconds since the window began,
    RSS bytes, open fds, and each thread's kernel state and wait channel (``"S hrtimer_nanosleep"``)."""

    t: float
    rss_bytes: int
    num_fds: int
    thread_states: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProcessEvidence:
    """Everything seen of one process: who it is, snapshots at the window's start and end, the polls between,
    py-spy's samples, the interpreter and packages, its memory cgroup, and (when a metrics URL was given) the
    in-flight gauges carrying its pid (``in_flight``; None when not asked, ``metrics_error`` when asked and
    unavailable). ``locals`` is a series of ``py-spy dump --locals`` taken when the window looked like a spin
    (None when not taken; ``locals_error`` says why they could not be read)."""

    info: ProcessInfo
    first: Snapshot
    last: Snapshot
    polls: tuple[Poll, ...]
    stacks: StackSamples
    interpreter: Interpreter | None
    cgroup: CgroupMemory | None
    thread_names: dict[int, str] = field(default_factory=dict)
    in_flight: dict[str, float] | None = None
    metrics_error: str | None = None
    locals: LocalsSeries | None = None
    locals_error: str | None = None

    @property
    def window_s(self) -> float:
        return max(0.0, self.last.at - self.first.at)

    @property
    def cpu_percent(self) -> float:
        return cpu_percent(self.first, self.last)

    def thread_cpu_percent(self) -> dict[int, float]:
        return thread_cpu_percent(self.first, self.last)

    def thread_demand_percent(self) -> dict[int, float]:
        return thread_demand_percent(self.first, self.last)

    def thread_state_counts(self, tid: int) -> Counter[str]:
        """How often each kernel state/wait channel was seen for ``tid`` across the polls."""
        return Counter(p.thread_states[tid] for p in self.polls if tid in p.thread_states)
