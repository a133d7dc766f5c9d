"""The status document (``/v1/status``): targets, workers with their signals and looks, rules, budget, events.

Built from the agent's state at request time; every signal value is JSON-safe (``redact.json_number``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from watchdog._version import __version__
from watchdog.redact import json_number

if TYPE_CHECKING:
    from watchdog.agent.loop import Agent


def status_document(agent: Agent) -> dict[str, Any]:
    now = agent.clock()
    act = agent.actuator
    targets = []
    for ts in agent.targets.values():
        workers = [
            {
                "pid": ws.id.pid,
                "create_time": ws.id.create_time,
                "signals": {k: json_number(v) for k, v in ws.store.snapshot(now).items()},
                "stack_error": ws.stack_error,
                "process_error": ws.process_error,
                "stack_verdict": ws.verdict,
                "recycling": act.recycling(ws.id),
                "rules": [s.to_json() for s in agent.rules.states(ws.id.key) if s.state != "inactive"],
            }
            for ws in ts.workers.values()
        ]
        probe = ts.last_probe
        targets.append(
            {
                "name": ts.cfg.name,
                "problem": ts.view.problem if ts.view else None,
                "matched": ts.view.matched if ts.view else [],  # what a cmdline match adopted, and why
                "metrics_error": ts.scrape.error if ts.scrape else None,
                "signals": {k: json_number(v) for k, v in ts.signals.items()},
                "last_probe": None
                if probe is None
                else {
                    "ok": probe.ok,
                    "worker": probe.worker_pid,
                    "reason": probe.reason,
                    "latency": probe.latency,
                    **probe.detail,
                },
                "budget": {
                    "recycles_in_window": act.budget.used(ts.cfg.name, act.wall()),
                    "max_recycles": agent.cfg.budget.max_recycles,
                    "window_seconds": agent.cfg.budget.window,
                    "in_progress": act.budget.in_progress(ts.cfg.name),
                },
                "workers": workers,
                "rules": [s.to_json() for s in agent.rules.states(f"target:{ts.cfg.name}") if s.state != "inactive"],
            }
        )
    return {
        "version": __version__,
        "dry_run": agent.cfg.dry_run,
        "paused": act.pause.paused(),
        "state_problem": act.state.problem if act.state is not None else None,
        "uptime_seconds": round(now - agent.started, 3),
        "rules": [r.name for r in agent.rules.rules],
        "targets": targets,
        "events": [e.to_json() for e in agent.events.recent()],
    }
