"""The blast-radius budget: every recycle asks here first, and a refusal is itself an alert.

Per target: at most one recycle at a time; at most ``max_recycles`` within a sliding ``window``; never leave
fewer than ``min_healthy_workers`` healthy workers; and per worker a ``cooldown`` between recycles. The budget
takes the time as an argument, so it is tested with plain numbers; the actuator gives it wall-clock seconds, so
its ledger (``to_json``/``restore``) survives a restart of the watchdog.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Policy:
    max_recycles: int
    window: float
    cooldown: float
    min_healthy_workers: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    busy: bool = False  # refused only because another recycle of the target is under way: worth waiting for

    def __bool__(self) -> bool:
        return self.allowed


@dataclass
class _TargetBudget:
    in_progress: str | None = None
    recent: deque[float] = field(default_factory=deque)
    last_by_worker: dict[str, float] = field(default_factory=dict)


class Budget:
    """Grants or refuses recycles. ``grant`` reserves the single per-target slot; ``release`` frees it."""

    def __init__(self, policies: dict[str, Policy]) -> None:
        self.policies = policies
        self._state = {name: _TargetBudget() for name in policies}

    def check(self, target: str, worker: str, *, healthy_others: int, now: float) -> Decision:
        """Would a recycle of ``worker`` be allowed now? ``healthy_others``: healthy workers besides it."""
        p = self.policies[target]
        s = self._state[target]
        self._expire(s, p, now)
        if s.in_progress is not None:
            return Decision(
                False, f"a recycle of worker {s.in_progress} is already in progress on this target", busy=True
            )
        if len(s.recent) >= p.max_recycles:
            oldest = s.recent[0]
            return Decision(
                False,
                f"{len(s.recent)} recycles in the last {p.window:g} s already (max {p.max_recycles}); "
                f"the next is allowed in {oldest + p.window - now:.0f} s",
            )
        last = s.last_by_worker.get(worker)
        if last is not None and now - last < p.cooldown:
            return Decision(False, f"worker recycled {now - last:.0f} s ago (cooldown {p.cooldown:g} s)")
        if healthy_others < p.min_healthy_workers:
            return Decision(
                False,
                f"recycling would leave {healthy_others} healthy worker(s), below the minimum of "
                f"{p.min_healthy_workers}; when every worker fails, the fault is likely downstream",
            )
        return Decision(True, "within budget")

    def grant(self, target: str, worker: str, *, healthy_others: int, now: float) -> Decision:
        """Check and, if allowed, reserve: the caller must ``release`` when the recycle is over."""
        d = self.check(target, worker, healthy_others=healthy_others, now=now)
        if d:
            s = self._state[target]
            s.in_progress = worker
            s.recent.append(now)
            s.last_by_worker[worker] = now
        return d

    def release(self, target: str) -> None:
        self._state[target].in_progress = None

    def in_progress(self, target: str) -> str | None:
        return self._state[target].in_progress

    def to_json(self) -> dict[str, dict[str, object]]:
        """The ledger per target (recycle times, last recycle per worker), for the state file."""
        return {
            name: {"recent": list(s.recent), "last_by_worker": dict(s.last_by_worker)}
            for name, s in self._state.items()
        }

    def restore(self, saved: dict[str, object], now: float) -> int:
        """Take back a saved ledger for the targets still configured (anything malformed is skipped).

        Returns how many recycles it brought back within their windows.
        """
        n = 0
        for name, entry in saved.items():
            s, p = self._state.get(name), self.policies.get(name)
            if s is None or p is None or not isinstance(entry, dict):
                continue
            recent = entry.get("recent")
            if isinstance(recent, list):
                s.recent.extend(sorted(float(t) for t in recent if isinstance(t, int | float) and t <= now))
            last = entry.get("last_by_worker")
            if isinstance(last, dict):
                s.last_by_worker.update({str(w): float(t) for w, t in last.items() if isinstance(t, int | float)})
            self._expire(s, p, now)
            n += len(s.recent)
        return n

    def used(self, target: str, now: float) -> int:
        s = self._state[target]
        self._expire(s, self.policies[target], now)
        return len(s.recent)

    @staticmethod
    def _expire(s: _TargetBudget, p: Policy, now: float) -> None:
        while s.recent and now - s.recent[0] >= p.window:
            s.recent.popleft()
        for w, t in list(s.last_by_worker.items()):
            if now - t >= max(p.cooldown, p.window):
                del s.last_by_worker[w]
