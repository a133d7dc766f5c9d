"""The result of a diagnosis, and its JSON form (the schema in ``schema.json`` describes ``to_dict``'s output).

``DiagnoseReport.to_dict()`` is the stable, documented interface: the CLI's ``--json`` prints it, the sidecar
attaches it to the actions it takes. Bump ``SCHEMA_VERSION`` on any change that is not purely additive.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from watchdog._version import __version__
from watchdog.diagnose.evidence import ProcessEvidence
from watchdog.diagnose.verdicts import Verdict, main_view, thread_views
from watchdog.signals.process import Role

SCHEMA_VERSION = 1
EXIT_OK, EXIT_PROBLEM, EXIT_CANNOT_INSPECT = 0, 1, 3
_TOP_STACKS = 5
_MAX_FRAMES = 40


@dataclass(frozen=True)
class ProcessReport:
    """One process's diagnosis: who (``pid``, ``role``, its ``master_pid`` for a worker), the ``verdicts``, the
    ``evidence`` they rest on, version ``warnings``, and ``error`` when it could not be inspected (then there is
    no evidence and no verdict)."""

    pid: int
    role: Role
    verdicts: tuple[Verdict, ...] = ()
    evidence: ProcessEvidence | None = None
    warnings: tuple[str, ...] = ()
    error: str | None = None
    master_pid: int | None = None
    server: str | None = None
    cmdline: tuple[str, ...] = ()

    @property
    def problems(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.is_problem]

    @property
    def state(self) -> Verdict | None:
        return self.verdicts[0] if self.verdicts else None


@dataclass(frozen=True)
class DiagnoseReport:
    """A whole diagnosis: the pid asked about, when, how it sampled, and one ``ProcessReport`` per process (the
    master first, then its workers; or the one process)."""

    target_pid: int
    started_at: float
    wall_s: float
    duration_s: float
    rate_hz: int
    nonblocking: bool
    processes: tuple[ProcessReport, ...]
    metrics_url: str | None = None
    metrics_error: str | None = None

    @property
    def problem_found(self) -> bool:
        return any(p.problems for p in self.processes)

    @property
    def exit_code(self) -> int:
        """0 nothing wrong found, 1 a problem found, 3 some process could not be inspected (and none had a
        problem)."""
        if self.problem_found:
            return EXIT_PROBLEM
        if any(p.error for p in self.processes):
            return EXIT_CANNOT_INSPECT
        return EXIT_OK

    def process(self, pid: int) -> ProcessReport | None:
        return next((p for p in self.processes if p.pid == pid), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "watchdog_version": __version__,
            "target_pid": self.target_pid,
            "started_at": dt.datetime.fromtimestamp(self.started_at, dt.timezone.utc).isoformat(),
            "wall_s": round(self.wall_s, 3),
            "sampling": {
                "duration_s": self.duration_s,
                "rate_hz": self.rate_hz,
                "mode": "nonblocking" if self.nonblocking else "blocking",
            },
            "metrics": None if self.metrics_url is None else {"url": self.metrics_url, "error": self.metrics_error},
            "problem_found": self.problem_found,
            "exit_code": self.exit_code,
            "processes": [_process_dict(p) for p in self.processes],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def verdict_dict(v: Verdict) -> dict[str, Any]:
    return {
        "kind": v.kind,
        "severity": v.severity,
        "confidence": v.confidence,
        "summary": v.summary,
        "evidence": list(v.evidence),
        "advice": list(v.advice),
        "data": dict(v.data),
        "culprit": v.culprit.to_dict() if v.culprit is not None else None,
    }


def _process_dict(p: ProcessReport) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pid": p.pid,
        "role": p.role,
        "master_pid": p.master_pid,
        "server": p.server,
        "cmdline": list(p.cmdline),
        "error": p.error,
        "warnings": list(p.warnings),
        "verdicts": [verdict_dict(v) for v in p.verdicts],
        "python": None,
        "facts": None,
        "stacks": None,
    }
    ev = p.evidence
    if ev is None:
        return out
    if ev.interpreter is not None:
        out["python"] = {
            "version": ev.interpreter.python_version,
            "executable": ev.interpreter.executable,
            "packages": dict(sorted(ev.interpreter.packages.items())),
            "site_packages": list(ev.interpreter.site_packages),
        }
    first, last = ev.first, ev.last
    cg = ev.cgroup
    out["facts"] = {
        "uptime_s": round(ev.info.uptime_s, 1),
        "window_s": round(ev.window_s, 3),
        "cpu_percent": round(ev.cpu_percent, 1),
        "rss_bytes": {"start": first.rss_bytes, "end": last.rss_bytes},
        "rss_series": [[round(q.t, 3), q.rss_bytes] for q in ev.polls],
        "fds": {"start": first.num_fds, "end": last.num_fds},
        "fd_series": [[round(q.t, 3), q.num_fds] for q in ev.polls],
        "threads": last.num_threads,
        "sockets": dict(sorted(last.sockets.items())),
        "client_connections": last.client_connections,
        "ctx_switches": {
            "voluntary": last.ctx_voluntary - first.ctx_voluntary,
            "involuntary": last.ctx_involuntary - first.ctx_involuntary,
        },
        "children": list(last.children),
        "cgroup": None
        if cg is None
        else {"version": cg.version, "path": cg.path, "limit_bytes": cg.limit_bytes, "usage_bytes": cg.usage_bytes},
        "in_flight": ev.in_flight,
    }
    views = thread_views(ev)
    main = main_view(views, p.pid)
    threads = []
    for v in sorted(views, key=lambda v: (v is not main, -v.cpu, v.tid)):
        states = ev.thread_state_counts(v.tid)
        threads.append(
            {
                "tid": v.tid,
                "name": v.name or ev.thread_names.get(v.tid, ""),
                "cpu_percent": round(v.cpu, 1),
                "event_loop": v.runs_loop,
                "kernel_state": states.most_common(1)[0][0] if states else None,
                "samples": v.samples,
                "top_stacks": [
                    {
                        "count": s.count,
                        "share": round(s.count / v.samples, 4) if v.samples else 0.0,
                        "frames": [str(f) for f in s.frames[:_MAX_FRAMES]],
                    }
                    for s in v.stacks[:_TOP_STACKS]
                ],
            }
        )
    st = ev.stacks
    out["stacks"] = {
        "duration_s": st.duration_s,
        "rate_hz": st.rate_hz,
        "mode": "nonblocking" if st.nonblocking else "blocking",
        "samples": st.samples,
        "errors": st.errors,
        "threads": threads,
    }
    return out


def schema() -> dict[str, Any]:
    """The JSON Schema of ``DiagnoseReport.to_dict()`` (shipped as package data, ``watchdog/diagnose/schema.json``)."""
    text = resources.files("watchdog.diagnose").joinpath("schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded
