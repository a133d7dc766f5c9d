"""Recent points of a few signals per worker, for the status page's small charts (read-only, from the agent).

The agent keeps a bounded ``SignalStore`` per worker for its rules; this reads the last minutes of it without
changing anything, downsampled to a few dozen points per signal so a page of many workers stays small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchdog.agent.loop import Agent

HISTORY_SIGNALS = ("cpu_percent", "rss_bytes", "open_fds")
Points = list[tuple[float, float]]
"""``(seconds before now, value)``, oldest first."""


def downsample(points: Points, limit: int) -> Points:
    """At most ``limit`` points, evenly picked, keeping the first and the last."""
    if limit < 2 or len(points) <= limit:
        return points[-limit:] if limit == 1 else points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def worker_history(
    agent: Agent, *, window: float = 300.0, names: tuple[str, ...] = HISTORY_SIGNALS, limit: int = 60
) -> dict[str, dict[int, dict[str, Points]]]:
    """``{target: {worker pid: {signal: points}}}`` over the last ``window`` seconds."""
    now = agent.clock()
    out: dict[str, dict[int, dict[str, Points]]] = {}
    for name, ts in agent.targets.items():
        per_worker: dict[int, dict[str, Points]] = {}
        for ws in ts.workers.values():
            series: dict[str, Points] = {}
            for signal in names:
                s = ws.store.series(signal)
                if s is None:
                    continue
                pts = [(round(now - p.t, 3), p.value) for p in s.since(now - window)]
                if pts:
                    series[signal] = downsample(pts, limit)
            per_worker[ws.id.pid] = series
        out[name] = per_worker
    return out
