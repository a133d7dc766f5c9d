"""After a recycle: wait for the replacement worker, then for a passing probe, within one time limit."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from watchdog.agent.world import Prober, TargetState
from watchdog.discovery import TargetView, WorkerId


async def await_replacement(
    scan: Callable[[], list[TargetView]],
    prober: Prober | None,
    ts: TargetState,
    old: WorkerId,
    within: float,
    *,
    before: frozenset[int],
    clock: Callable[[], float],
) -> tuple[int | None, str]:
    """The new worker's pid (or None) and what was seen: a worker of the target not among ``before`` (its
    workers when the recycle began) must appear, and, if the target has probes, a probe must pass on it (or, if
    answers never name a worker, on the target).

    ``before`` is taken before the SIGTERM, not here: discovery runs beside the recycle and often takes the
    replacement in before this wait begins (a fresh clone's test run under load missed one that way)."""
    deadline = clock() + within
    new_pid: int | None = None
    while clock() < deadline:
        views = await anyio.to_thread.run_sync(scan)
        view = next((v for v in views if v.name == ts.cfg.name), None)
        fresh = [w.pid for w in (view.workers if view else []) if w.pid not in before and w.pid != old.pid]
        if fresh:
            new_pid = fresh[0]
            break
        await anyio.sleep(0.2)
    if new_pid is None:
        return None, f"no replacement worker appeared within {within:g} s"
    if prober is None or not ts.cfg.probes:
        return new_pid, f"replacement worker {new_pid} is up"
    # Probe on fresh connections (the kernel spreads them over the workers) until the replacement itself
    # answers; if the answers never name a worker, a passing probe of the target is what can be said.
    last, passed_elsewhere = "", 0
    while clock() < deadline:
        run = await prober(ts.cfg, None)
        if run.ok and run.worker_pid in (new_pid, None):
            on = f"on worker {new_pid}" if run.worker_pid == new_pid else "(the answer names no worker)"
            return new_pid, f"replacement worker {new_pid} is up; probe passed {on}"
        if run.ok:
            passed_elsewhere += 1
        else:
            last = run.reason
        await anyio.sleep(0.1 if run.ok else 0.5)
    if passed_elsewhere:
        return new_pid, (
            f"replacement worker {new_pid} is up; {passed_elsewhere} probes passed, all answered by "
            f"other workers within {within:g} s"
        )
    return None, f"replacement worker {new_pid} is up but the probe did not pass: {last}"
