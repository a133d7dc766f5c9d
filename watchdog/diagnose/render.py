"""The terminal report: what each process is doing, the evidence, and what to do, readable at 4 AM.

Processes with a problem come out in full (evidence, advice, hottest stacks); healthy ones in two lines.
"""

from __future__ import annotations

from watchdog.diagnose.report import DiagnoseReport, ProcessReport
from watchdog.diagnose.verdicts import MiB, Verdict, main_view, thread_views

_FRAMES_SHOWN = 6
_STACKS_SHOWN = 3


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _verdict_line(v: Verdict) -> str:
    return f"{v.kind.upper()} ({v.severity}, {v.confidence} confidence): {v.summary}"


def _facts(p: ProcessReport) -> list[str]:
    ev = p.evidence
    if ev is None:
        return []
    out = []
    if ev.interpreter is not None:
        pk = ev.interpreter.packages
        names = [n for n in ("anyio", "mcp", "uvicorn", "gunicorn", "starlette", "trio") if n in pk]
        out.append(f"Python {ev.interpreter.python_version}" + "".join(f", {n} {pk[n]}" for n in names))
    rss0, rss1 = ev.first.rss_bytes / MiB, ev.last.rss_bytes / MiB
    socks = ", ".join(f"{s} {n}" for s, n in sorted(ev.last.sockets.items(), key=lambda x: -x[1])) or "none"
    cg = ev.cgroup
    mem = f"RSS {rss1:.0f} MiB ({rss1 - rss0:+.1f} in window)"
    if cg is not None:
        limit = f"{cg.limit_bytes / MiB:.0f} MiB" if cg.limit_bytes is not None else "no limit"
        used = f", {cg.usage_bytes / MiB:.0f} MiB used" if cg.usage_bytes is not None else ""
        mem += f"; cgroup {cg.version} {limit}{used}"
    out.append(
        f"uptime {_duration(ev.info.uptime_s)}; CPU {ev.cpu_percent:.0f} %; {mem}; "
        f"fds {ev.first.num_fds} -> {ev.last.num_fds}; threads {ev.last.num_threads}"
    )
    dv = ev.last.ctx_voluntary - ev.first.ctx_voluntary
    di = ev.last.ctx_involuntary - ev.first.ctx_involuntary
    out.append(
        f"sockets: {socks}; client connections {ev.last.client_connections}; "
        f"context switches {dv} voluntary, {di} involuntary; children {len(ev.last.children)}"
    )
    if ev.in_flight is not None:
        gauges = ", ".join(f"{k} = {v:g}" for k, v in sorted(ev.in_flight.items())) or "no gauge with this pid"
        out.append(f"in flight (metrics): {gauges}")
    elif ev.metrics_error:
        out.append(f"in flight (metrics): unknown, {ev.metrics_error}")
    return out


def _stacks(p: ProcessReport) -> list[str]:
    ev = p.evidence
    if ev is None:
        return []
    views = thread_views(ev)
    main = main_view(views, p.pid)
    shown = [v for v in views if v is main or v.cpu >= 20]
    out = []
    st = ev.stacks
    mode = "nonblocking" if st.nonblocking else "blocking"
    out.append(f"stacks: {st.samples} samples in {st.duration_s:g} s at {st.rate_hz} Hz ({mode}, {st.errors} errors)")
    for v in shown:
        out.append(f"  thread {v.name or '?'} {v.tid}: CPU {v.cpu:.0f} %, {v.samples} samples"
                   + (", event loop" if v.runs_loop else ""))  # fmt: skip
        for s in v.stacks[:_STACKS_SHOWN]:
            share = 100.0 * s.count / v.samples if v.samples else 0.0
            frames = [str(f) for f in s.frames[:_FRAMES_SHOWN]]
            more = f" <- ... ({len(s.frames) - _FRAMES_SHOWN} more)" if len(s.frames) > _FRAMES_SHOWN else ""
            out.append(f"    {share:4.0f} %  " + " <- ".join(frames) + more)
    return out


def render_process(p: ProcessReport) -> str:
    who = f"{p.role} {p.pid}" + (f" ({p.server})" if p.server and p.role == "master" else "")
    if p.error is not None:
        return f"CANNOT INSPECT  {who}: {p.error}"
    lines = []
    mark = "PROBLEM" if p.problems else "ok"
    # the headline is the worst verdict: a leak in an idle worker is headed by the leak
    ordered = sorted(p.verdicts, key=lambda v: not v.is_problem)
    state = ordered[0] if ordered else None
    lines.append(f"{mark:<8}{who}: {_verdict_line(state) if state else 'no verdict'}")
    if p.cmdline:
        lines.append(f"  cmdline: {' '.join(p.cmdline)[:160]}")
    for v in ordered:
        if v is not state:
            lines.append(f"  also: {_verdict_line(v)}")
    for v in ordered:
        if v.culprit is not None:
            lines.append(f"  CULPRIT: {v.culprit.summary()}")
    detailed = [v for v in p.verdicts if v.is_problem or v.kind in ("busy", "blocked")]
    for v in detailed or p.verdicts[:1]:
        lines.append(f"  {v.kind} evidence:")
        lines += [f"    - {e}" for e in v.evidence]
        if v.advice:
            lines.append(f"  {v.kind} advice:")
            lines += [f"    - {a}" for a in v.advice]
    for w in p.warnings:
        lines.append(f"  WARNING: {w}")
    lines += [f"  {f}" for f in _facts(p)]
    if detailed:
        lines += [f"  {s}" for s in _stacks(p)]
    return "\n".join(lines)


def render_text(report: DiagnoseReport) -> str:
    """The whole report as text for a terminal."""
    first = report.processes[0] if report.processes else None
    n_workers = sum(1 for p in report.processes if p.role == "worker")
    what = f"{first.server} master with {n_workers} workers" if first and first.role == "master" else "process"
    mode = "nonblocking" if report.nonblocking else "blocking"
    head = (
        f"watchdog diagnose {report.target_pid}: {what}; sampled {report.duration_s:g} s at {report.rate_hz} Hz "
        f"({mode}), took {report.wall_s:.1f} s"
    )
    blocks = [head, ""]
    for p in report.processes:
        blocks.append(render_process(p))
        blocks.append("")
    problems = [(p, v) for p in report.processes for v in p.problems]
    if problems:
        blocks.append(
            f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found: "
            + "; ".join(f"{p.role} {p.pid} {v.kind}" for p, v in problems)
        )
    elif any(p.error for p in report.processes):
        blocks.append("some processes could not be inspected; nothing wrong found in the others")
    else:
        blocks.append("nothing wrong found")
    return "\n".join(blocks)
