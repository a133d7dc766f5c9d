"""Collect the evidence for a diagnosis from real processes, concurrently, and hand it to the verdict engine.

``diagnose(pid)`` is the one entry point (the CLI and the sidecar's ``diagnose`` action both call it). For a
gunicorn master or ``uvicorn --workers`` supervisor every worker is diagnosed at the same time as the master,
each with its own py-spy (bounded by ``max_concurrency``) while psutil looks at it every ``poll_interval``.
Blocking psutil and /proc reads run in worker threads, so the caller's event loop never stalls.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import anyio.to_thread

from watchdog.diagnose import knowledge
from watchdog.diagnose.evidence import Poll, ProcessEvidence
from watchdog.diagnose.findings import evaluate
from watchdog.diagnose.report import DiagnoseReport, ProcessReport
from watchdog.diagnose.spin import LOCALS_READ, enough_seen, scope_evidence
from watchdog.diagnose.verdicts import Thresholds, main_view, state_verdict, thread_views
from watchdog.errors import InspectError, MetricsUnavailable, ProcessGone
from watchdog.signals import metrics as prom
from watchdog.signals.cgroup import read_cgroup_memory
from watchdog.signals.interpreter import Interpreter, read_interpreter
from watchdog.signals.process import ProcessInfo, describe, snapshot, thread_names, thread_state, workers_of
from watchdog.signals.stacks import (
    Keep,
    LocalsSeries,
    StackSamples,
    check_supported,
    dump_locals,
    find_py_spy,
    sample_stacks,
)

DEFAULT_DURATION = 2.5
DEFAULT_RATE = 100
# py-spy dump --locals after a window that looks like a spin: at most this many dumps, for at most this long
# (the series stops early once one scope is seen re-delivered often enough, or three different scopes)
DEFAULT_LOCALS_DUMPS = 40
DEFAULT_LOCALS_SECONDS = 2.0
Progress = Callable[[str], None]


@dataclass
class _Collected:
    evidence: ProcessEvidence | None = None
    error: InspectError | None = None


def _poll(pid: int, create_time: float, t0: float) -> Poll:
    import psutil

    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > 0.01 or proc.status() == psutil.STATUS_ZOMBIE:
            raise ProcessGone(pid, "while it was being sampled")
        with proc.oneshot():
            rss = proc.memory_info().rss
            fds = proc.num_fds()
            tids = [t.id for t in proc.threads()]
    except psutil.NoSuchProcess:
        raise ProcessGone(pid, "while it was being sampled") from None
    states = {tid: " ".join(x for x in thread_state(pid, tid) if x) for tid in tids}
    return Poll(time.monotonic() - t0, rss, fds, states)


async def with_locals(
    ev: ProcessEvidence,
    *,
    py_spy: str,
    limiter: anyio.CapacityLimiter,
    nonblocking: bool = False,
    count: int = DEFAULT_LOCALS_DUMPS,
    seconds: float = DEFAULT_LOCALS_SECONDS,
    thresholds: Thresholds = Thresholds(),
    rounds: int = 1,
    give_up_after: int = 12,
) -> ProcessEvidence:
    """``ev`` plus a series of ``py-spy dump --locals`` when its window looks like a spin (only then: healthy
    windows pay nothing), so the verdict can see whether one cancel scope is re-delivered. Up to ``rounds`` series
    are taken while at most one scope shows, too rarely to decide; a series gives up after ``give_up_after`` dumps
    without a single cancel delivery. A failure to read locals is kept in
    ``locals_error``; it never fails the diagnosis."""
    main = main_view(thread_views(ev), ev.info.pid)
    if main is None or count <= 0 or state_verdict(ev, thresholds).kind != "spin":
        return ev
    series: LocalsSeries | None = None
    for _ in range(max(1, rounds)):
        try:
            more = await dump_locals(ev.info.pid, count=count, max_seconds=seconds, nonblocking=nonblocking,
                                     py_spy=py_spy, limiter=limiter, on_target_cpu=main.tid,
                                     keep=Keep(main.tid, LOCALS_READ),
                                     enough=enough_seen(main.tid, give_up_after=give_up_after))  # fmt: skip
        except InspectError as exc:
            if series is None:
                return dataclasses.replace(ev, locals_error=str(exc))
            break
        series = more if series is None else joined(series, more)
        se = scope_evidence(series, main.tid)
        # another round only while at most one scope was seen, too few times to decide (a spin, seen too rarely)
        if se is None or se.decision() != "unknown" or len(se.scopes) > 1:
            break
    assert series is not None
    error = None if series.dumps else (series.error or "every py-spy dump failed")
    return dataclasses.replace(ev, locals=series, locals_error=error)


def joined(a: LocalsSeries, b: LocalsSeries) -> LocalsSeries:
    """Two dump series of one process as one (``b``'s times shifted after ``a``'s)."""
    shifted = tuple(dataclasses.replace(d, t=d.t + a.duration_s) for d in b.dumps)
    return LocalsSeries(a.dumps + shifted, a.asked + b.asked, a.failed + b.failed, b.error or a.error,
                        round(a.duration_s + b.duration_s, 3), round(a.cpu_s + b.cpu_s, 4))  # fmt: skip


async def _collect(
    info: ProcessInfo,
    *,
    duration: float,
    rate: float,
    nonblocking: bool,
    py_spy: str,
    limiter: anyio.CapacityLimiter,
    poll_interval: float,
    in_flight: Callable[[], tuple[dict[str, float] | None, str | None]],
    interpreter: Interpreter | None = None,
    first_connections: bool = True,
    locals_dumps: int = DEFAULT_LOCALS_DUMPS,
    locals_seconds: float = DEFAULT_LOCALS_SECONDS,
    thresholds: Thresholds = Thresholds(),
    locals_rounds: int = 2,
    locals_give_up: int = DEFAULT_LOCALS_DUMPS,
) -> ProcessEvidence:
    pid, ct = info.pid, info.create_time
    if interpreter is not None:
        interp0 = interpreter
    else:
        interp0 = await anyio.to_thread.run_sync(lambda: read_interpreter(pid, exe=info.exe, argv0=info.cmdline[0]))
    check_supported(pid, interp0.python_version)
    first = await anyio.to_thread.run_sync(lambda: snapshot(pid, ct, connections=first_connections))
    t0 = first.at
    polls = [Poll(0.0, first.rss_bytes, first.num_fds, {t: " ".join(s) for t, s in first.thread_states.items()})]
    result: dict[str, StackSamples | BaseException] = {}
    done = anyio.Event()

    async def run_stacks() -> None:
        try:
            result["stacks"] = await sample_stacks(pid, duration=duration, rate=rate, nonblocking=nonblocking,
                                                   py_spy=py_spy, limiter=limiter)  # fmt: skip
        except InspectError as exc:
            result["stacks"] = exc
        finally:
            done.set()

    gone = False
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_stacks)
        while not done.is_set():
            with anyio.move_on_after(poll_interval):
                await done.wait()
            if done.is_set() or gone:
                continue
            try:
                polls.append(await anyio.to_thread.run_sync(_poll, pid, ct, t0))
            except ProcessGone:
                gone = True
    stacks = result["stacks"]
    if isinstance(stacks, BaseException):
        raise stacks
    assert isinstance(stacks, StackSamples)
    try:
        last = await anyio.to_thread.run_sync(snapshot, pid, ct)
    except ProcessGone:
        gone = True
    if gone:
        raise ProcessGone(pid, f"during sampling (after {time.monotonic() - t0:.1f} s of a {duration:g} s window)")
    polls.append(
        Poll(last.at - t0, last.rss_bytes, last.num_fds, {t: " ".join(s) for t, s in last.thread_states.items()})
    )
    if interpreter is not None:
        interp = interpreter
    else:
        interp = await anyio.to_thread.run_sync(
            lambda: read_interpreter(pid, exe=info.exe, argv0=info.cmdline[0], files=sorted(stacks.files()))
        )
    cgroup = await anyio.to_thread.run_sync(read_cgroup_memory, pid)
    names = await anyio.to_thread.run_sync(thread_names, pid)
    flight, flight_error = in_flight()
    ev = ProcessEvidence(info, first, last, tuple(polls), stacks, interp, cgroup, names, flight, flight_error)
    return await with_locals(ev, py_spy=py_spy, limiter=limiter, nonblocking=nonblocking, count=locals_dumps,
                             seconds=locals_seconds, thresholds=thresholds, rounds=locals_rounds,
                             give_up_after=locals_give_up)  # fmt: skip


async def collect_evidence(
    pid: int,
    *,
    create_time: float | None = None,
    duration: float = DEFAULT_DURATION,
    rate: float = DEFAULT_RATE,
    nonblocking: bool = False,
    py_spy: str | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    poll_interval: float = 0.2,
    in_flight: dict[str, float] | None = None,
    interpreter: Interpreter | None = None,
    first_connections: bool = True,
    locals_dumps: int = DEFAULT_LOCALS_DUMPS,
    locals_seconds: float = DEFAULT_LOCALS_SECONDS,
) -> ProcessEvidence:
    """The evidence for one process over one window, for callers that judge it themselves (the sidecar judges
    each worker with ``state_verdict`` exactly as ``diagnose`` does). ``create_time``, when given, must match:
    a reused pid raises ``ProcessGone``. ``in_flight`` is the worker's in-flight gauges, if the caller has them.

    For a caller that looks at the same process again and again: ``interpreter`` (from an earlier look's
    evidence) skips reading its site-packages, and ``first_connections=False`` skips the socket table at the
    window's start (the state verdict reads connections at the end only; the fd-growth finding would need both).
    ``locals_dumps`` and ``locals_seconds`` bound the ``py-spy dump --locals`` series taken when the window looks
    like a spin (0 dumps: none, and a spin verdict stays at low confidence); one series per window here (the
    sidecar builds on its previous look instead), where ``diagnose`` takes a second series while undecided.
    Windows shaped like timeout churn (samples entering and cancelling scopes) are not suspects and take none.
    """
    info = await anyio.to_thread.run_sync(describe, pid)
    if create_time is not None and abs(info.create_time - create_time) > 0.01:
        raise ProcessGone(pid, "and its pid now belongs to another process")
    exe = find_py_spy(py_spy, pid=pid)
    return await _collect(
        info, duration=duration, rate=rate, nonblocking=nonblocking, py_spy=exe,
        limiter=limiter or anyio.CapacityLimiter(1), poll_interval=poll_interval,
        in_flight=lambda: (in_flight, None), interpreter=interpreter, first_connections=first_connections,
        locals_dumps=locals_dumps, locals_seconds=locals_seconds, locals_rounds=1, locals_give_up=locals_dumps,
    )  # fmt: skip


async def diagnose(
    pid: int,
    *,
    duration: float = DEFAULT_DURATION,
    rate: float = DEFAULT_RATE,
    nonblocking: bool = False,
    py_spy: str | None = None,
    metrics_url: str | None = None,
    max_concurrency: int = 8,
    poll_interval: float = 0.2,
    thresholds: Thresholds = Thresholds(),
    progress: Progress | None = None,
) -> DiagnoseReport:
    """Diagnose ``pid``: a Python process, or a gunicorn/uvicorn master and all its workers at once.

    Samples for ``duration`` seconds at ``rate`` Hz (``nonblocking`` asks py-spy not to pause the target).
    ``metrics_url``, when given, is scraped once for in-flight gauges carrying each worker's pid.

    Raises ``InspectError`` subclasses when the process asked about cannot be inspected: ``ProcessGone`` (no
    such pid, or it exited mid-window), ``NotPython``, ``UnsupportedPython``, ``PtraceDenied``,
    ``PySpyMissing``, ``SamplerFailed``. For a master, a worker that cannot be inspected (one recycled
    mid-window) is reported in its ``ProcessReport.error`` instead, and the others are still diagnosed.
    """
    started_at, t0 = time.time(), time.monotonic()
    say = progress or (lambda _msg: None)
    info = await anyio.to_thread.run_sync(describe, pid)
    exe = find_py_spy(py_spy, pid=pid)
    targets = [info]
    if info.role == "master":
        for w in await anyio.to_thread.run_sync(workers_of, pid):
            try:
                targets.append(await anyio.to_thread.run_sync(describe, w))
            except ProcessGone:
                continue
        say(f"{info.server} master {pid} with {len(targets) - 1} workers: {', '.join(str(t.pid) for t in targets[1:])}")

    flight_samples: list[prom.MetricSample] | None = None
    metrics_error: str | None = None

    def in_flight_for(p: int) -> Callable[[], tuple[dict[str, float] | None, str | None]]:
        def get() -> tuple[dict[str, float] | None, str | None]:
            if metrics_url is None:
                return None, None
            if flight_samples is None:
                return None, metrics_error or "not scraped"
            return prom.by_pid(flight_samples, prom.IN_FLIGHT).get(p, {}), None

        return get

    limiter = anyio.CapacityLimiter(max(1, max_concurrency))
    collected = {t.pid: _Collected() for t in targets}

    async def one(t: ProcessInfo) -> None:
        try:
            collected[t.pid].evidence = await _collect(
                t, duration=duration, rate=rate, nonblocking=nonblocking, py_spy=exe, limiter=limiter,
                poll_interval=poll_interval, in_flight=in_flight_for(t.pid), thresholds=thresholds,
            )  # fmt: skip
        except InspectError as exc:
            collected[t.pid].error = exc

    async def scrape() -> None:
        nonlocal flight_samples, metrics_error
        assert metrics_url is not None
        try:
            flight_samples = await prom.scrape(metrics_url)
        except MetricsUnavailable as exc:
            metrics_error = exc.reason

    async def tick() -> None:
        while True:
            await anyio.sleep(0.5)
            say(f"sampling {len(targets)} process{'es' if len(targets) > 1 else ''}: "
                f"{min(duration, time.monotonic() - t0):.1f} / {duration:g} s")  # fmt: skip

    async with anyio.create_task_group() as tg:
        if metrics_url:
            tg.start_soon(scrape)
        if progress is not None:
            tg.start_soon(tick)
        async with anyio.create_task_group() as work:
            for t in targets:
                work.start_soon(one, t)
        tg.cancel_scope.cancel()

    first_error = collected[pid].error
    if first_error is not None and info.role != "master":
        raise first_error
    if all(c.error is not None for c in collected.values()):
        raise next(c.error for c in collected.values() if c.error is not None)

    reports = []
    for t in targets:
        c = collected[t.pid]
        if c.evidence is None:
            reports.append(ProcessReport(t.pid, t.role, error=str(c.error), master_pid=t.master_pid,
                                         server=t.server, cmdline=t.cmdline))  # fmt: skip
            continue
        ev = c.evidence
        verdicts = evaluate(ev, thresholds)
        warnings = knowledge.version_warnings(ev.interpreter.packages) if ev.interpreter else []
        reports.append(ProcessReport(t.pid, t.role, tuple(verdicts), ev, tuple(warnings), None, t.master_pid,
                                     t.server, t.cmdline))  # fmt: skip
    return DiagnoseReport(
        target_pid=pid,
        started_at=started_at,
        wall_s=time.monotonic() - t0,
        duration_s=duration,
        rate_hz=max(1, round(rate)),
        nonblocking=nonblocking,
        processes=tuple(reports),
        metrics_url=metrics_url,
        metrics_error=metrics_error,
    )
