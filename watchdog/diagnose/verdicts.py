"""The verdict engine: pure functions from a process's evidence to named findings with evidence and advice.

One *state* verdict says what the process's main work (its event loop thread, else its hottest thread) is
doing: ``spin``, ``spin_suspect``, ``busy``, ``blocked``, ``idle`` or ``active``. *Findings* may be added:
``memory_growth`` and ``fd_growth``. No verdict rests on one number. A spin *suspect* needs the loop thread hot
**and** its samples either in anyio's ``_deliver_cancellation`` or, failing that, all in the loop's own machinery
with no application work (on Python 3.12 and 3.13 most samples of a spinning loop land in the selector). Samples
cannot tell a spin from healthy timeout churn, so a suspect is a ``spin`` of medium or high confidence only when
``py-spy --locals`` shows the same cancel scope re-delivered again and again (``watchdog.diagnose.spin``); one
that shows many scopes is churn (``active``/``busy``), too few deliveries leave a ``spin_suspect``, and no
locals at all a ``spin`` of low confidence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from watchdog.diagnose import knowledge as k
from watchdog.diagnose.evidence import ProcessEvidence
from watchdog.diagnose.spin import Culprit, ScopeEvidence, dump_stacks, find_culprit, lifecycle_share, scope_evidence
from watchdog.signals.stacks import Frame, Stack, ThreadStacks

Severity = Literal["critical", "warning", "info"]
Confidence = Literal["high", "medium", "low"]
PROBLEM_SEVERITIES = ("critical", "warning")
MiB = 1 << 20


@dataclass(frozen=True)
class Thresholds:
    """The numbers verdicts compare against, in one place (tests and the sidecar may pass their own)."""

    hot_cpu: float = 50.0  # % of a core: a thread this busy is doing something
    very_hot_cpu: float = 80.0
    idle_cpu: float = 10.0
    spin_min_hits: int = 2  # samples in _deliver_cancellation that make a hot loop a spin suspect
    lifecycle_min_samples: int = 40  # samples needed before "no scope entered or left in any" means anything
    spin_same_min: int = 3  # locals samples showing one scope re-delivered: a spin (medium)
    spin_high_same: int = 5  # ... this many (in one look or consecutive looks): high
    spin_same_share: float = 0.8  # share of the delivery samples that one scope must hold
    churn_lifecycle: float = 0.2  # share of samples entering/cancelling scopes that marks timeout churn
    machinery_share: float = 0.7  # share of samples in loop machinery that makes a hot loop a spin suspect
    busy_app_share: float = 0.3
    blocked_share: float = 0.6  # share of samples in one non-waiting frame for a blocked loop
    rss_min_growth: int = 4 * MiB
    rss_min_slope: float = 1.0 * MiB  # bytes/s
    fd_min_growth: int = 5
    fd_min_slope: float = 1.0  # fds/s


@dataclass(frozen=True)
class Verdict:
    """One finding: its ``kind``, how bad (``severity``), how sure (``confidence``), a one-line ``summary``, the
    ``evidence`` sentences it rests on, the ``advice``, and the numbers behind it in ``data``; for a spin, the
    ``culprit`` named; for any window that was a spin suspect, the ``scopes`` its locals dumps saw delivered (or
    the earlier look's evidence that stood in for them)."""

    kind: str
    severity: Severity
    confidence: Confidence
    summary: str
    evidence: tuple[str, ...]
    advice: tuple[str, ...] = ()
    data: dict[str, float | int | str | None] = field(default_factory=dict)
    culprit: Culprit | None = None
    scopes: ScopeEvidence | None = None

    @property
    def is_problem(self) -> bool:
        return self.severity in PROBLEM_SEVERITIES


@dataclass(frozen=True)
class ThreadView:
    """One thread's samples sorted into what they show: hits in the spin frame, the loop waiting in its
    selector, loop machinery (waiting included), application work, and its CPU over the window."""

    tid: int
    name: str
    cpu: float
    samples: int
    demand: float
    spin_hits: int
    waiting: int
    machinery: int
    runs_loop: bool
    stacks: tuple[Stack, ...]

    @property
    def app(self) -> int:
        return self.samples - self.machinery

    def share(self, n: int) -> float:
        return n / self.samples if self.samples else 0.0


def view_thread(t: ThreadStacks, cpu: float, demand: float | None = None) -> ThreadView:
    def leaf_is(pred: Callable[[Frame], bool]) -> int:
        return t.count(lambda s: bool(s.frames) and pred(s.frames[0]))

    return ThreadView(
        tid=t.tid,
        name=t.name,
        cpu=cpu,
        samples=t.samples,
        demand=max(cpu, demand if demand is not None else cpu),
        spin_hits=t.count_frame(k.SPIN_FRAME),
        waiting=leaf_is(k.is_waiting),
        machinery=leaf_is(k.is_machinery),
        runs_loop=t.count_frame(k.LOOP_FRAME) > 0,
        stacks=t.stacks,
    )


def thread_views(ev: ProcessEvidence) -> list[ThreadView]:
    cpu = ev.thread_cpu_percent()
    demand = ev.thread_demand_percent()
    return [view_thread(t, cpu.get(t.tid, 0.0), demand.get(t.tid)) for t in ev.stacks.threads]


def main_view(views: list[ThreadView], pid: int) -> ThreadView | None:
    """The thread that matters most: the event loop thread with the most samples, else the hottest thread,
    else the main thread."""
    loops = [v for v in views if v.runs_loop]
    if loops:
        return max(loops, key=lambda v: (v.samples, v.cpu))
    if views:
        return max(views, key=lambda v: (v.cpu, v.tid == pid))
    return None


def hot_frames(v: ThreadView, n: int = 3) -> list[tuple[str, int]]:
    """The innermost application frames of the thread's non-waiting samples, with counts, hottest first.

    For each sample the innermost frame that is not loop machinery is taken (the code that was running or
    that made the call), so time in ``json.dumps`` called from a handler is named after where it was called
    only when ``json`` is not on the stack as its own frame.
    """
    c: Counter[str] = Counter()
    for s in v.stacks:
        if s.frames and k.is_waiting(s.frames[0]):
            continue
        frame = next((f for f in s.frames if not k.is_machinery(f)), s.frames[0] if s.frames else None)
        if frame is not None:
            c[str(frame)] += s.count
    return c.most_common(n)


def _pct(n: int, d: int) -> str:
    return f"{n} of {d} samples"


def _in_flight_note(ev: ProcessEvidence) -> tuple[str | None, bool | None]:
    """A sentence about work in flight, and whether it is zero (None when unknown)."""
    parts = []
    zero: bool | None = None
    if ev.in_flight is not None and ev.in_flight:
        total = sum(ev.in_flight.values())
        parts.append(", ".join(f"{n} = {v:g}" for n, v in sorted(ev.in_flight.items())))
        zero = total == 0
    elif ev.metrics_error:
        parts.append(f"in-flight gauges unknown ({ev.metrics_error})")
    clients = ev.last.client_connections
    if ev.last.sockets.get("LISTEN"):
        parts.append(f"{clients} client connection{'s' if clients != 1 else ''} open")
        zero = (clients == 0) if zero is None else (zero and clients == 0)
    if not parts:
        return None, None
    prefix = "no requests in flight" if zero else "work in flight"
    return f"{prefix} ({'; '.join(parts)})", zero


def spin_suspect(main: ThreadView, thread_cpu: float, flight_zero: bool | None, t: Thresholds) -> bool:
    """Whether the samples alone make the loop thread a spin suspect (hot, and either the anyio frame seen or
    nothing but loop machinery with no work in flight): then the scope's identity must decide."""
    if not main.runs_loop or thread_cpu < t.hot_cpu:
        return False
    if main.spin_hits >= t.spin_min_hits:
        return True
    return main.share(main.machinery) >= t.machinery_share and thread_cpu >= t.very_hot_cpu and flight_zero is not False


def advancing(main: ThreadView, t: Thresholds = Thresholds()) -> bool:
    """Whether application work advanced on the loop thread over the window (its share of the samples): with too
    few cancel deliveries seen to tell a spin from timeout churn, such a window is not judged a spin."""
    return main.share(main.app) >= t.busy_app_share


def stands_for(settled: ScopeEvidence, main: ThreadView, t: Thresholds = Thresholds()) -> bool:
    """Whether an earlier series' evidence may judge this window, which took no series of its own. One that decided
    churn, where this window's samples show a scope entered, cancelled or left (a spin makes none: 0 % of samples
    in every spin recorded, and a 3.13 spin on a quiet VM shows its deliveries in only 5 %, as few as churn does) or
    its application work advancing; one that decided nothing, only where the work advances (``advancing``: its
    samples alone then judge it not a spin). Never anything else."""
    decided = settled.decision(t.spin_same_min, t.spin_same_share, t.spin_high_same, t.churn_lifecycle)
    if decided == "churn":
        return advancing(main, t) or lifecycle_share(main.stacks, main.samples) > 0
    return decided == "unknown" and advancing(main, t)


def _culprit(main: ThreadView, ev: ProcessEvidence, scopes: ScopeEvidence | None) -> Culprit | None:
    """The culprit in the recording's samples; where they name none or only with low confidence, the one in the
    locals dumps' stacks (one sample each) when those saw more of it. On a quiet VM a 3.12/3.13 recording lands
    mostly at the loop's system calls, which dilutes the culprit's share there (5-9 % of the samples, against
    15-40 % of the dumps, taken from the target's CPU: ``watchdog.signals.affinity``)."""
    found = find_culprit(main.stacks, main.samples, ev.locals, main.tid, scopes)
    if (found is None or found.confidence == "low") and ev.locals is not None and ev.locals.dumps:
        stacks = dump_stacks(ev.locals, main.tid)
        dumped = find_culprit(stacks, len(stacks), ev.locals, main.tid, scopes)
        if dumped is not None and (found is None or dumped.share > found.share):
            found = dumped
    return found


def spin_advice(pid: int, culprit: Culprit | None) -> tuple[str, ...]:
    advice = [a.format(pid=pid) for a in k.ADVICE_SPIN]
    if culprit is not None:
        advice.insert(1, culprit.advice())
    return tuple(advice)


def state_verdict(
    ev: ProcessEvidence,
    t: Thresholds = Thresholds(),
    earlier: ScopeEvidence | None = None,
    settled: ScopeEvidence | None = None,
) -> Verdict:
    """What the process's main thread is doing over the window: spin, spin_suspect, busy, blocked, idle or active.

    ``earlier`` is the scope evidence of the previous look at the same process (the sidecar's): a spin keeps its
    scope, so evidence builds across looks. ``settled`` is an earlier look's evidence that decided timeout churn,
    for a window the caller took no locals of because it looked like that one (the sidecar's): it can only make
    this window churn, never a spin; it stands in only where ``stands_for`` says it may.
    """
    views = thread_views(ev)
    main = main_view(views, ev.info.pid)
    cpu = ev.cpu_percent
    window = f"{ev.window_s:.1f} s"
    if main is None or main.samples == 0:
        return Verdict("unknown", "info", "low", "no stack samples were taken", (f"CPU {cpu:.0f} % over {window}",))
    who = f"{main.name or 'thread'} {main.tid}" + (" (event loop)" if main.runs_loop else "")
    # how hot the thread is: the share of the window it was runnable, so a spin on a CPU-starved machine
    # (on a core 40 % of the time, waiting in the run queue the rest) still counts as hot
    thread_cpu = main.demand
    base = [f"CPU {cpu:.0f} % over {window} (thread {who}: {main.cpu:.0f} %)"]
    if main.demand - main.cpu >= 10:
        base.append(f"thread {main.tid} runnable {main.demand:.0f} % of the window (waiting for a CPU "
                    f"{main.demand - main.cpu:.0f} %: the machine is short of CPU)")  # fmt: skip
    flight, flight_zero = _in_flight_note(ev)
    data: dict[str, float | int | str | None] = {
        "cpu_percent": round(cpu, 1),
        "thread_cpu_percent": round(main.cpu, 1),
        "thread_runnable_percent": round(main.demand, 1),
        "thread_id": main.tid,
        "samples": main.samples,
        "spin_hits": main.spin_hits,
        "waiting_samples": main.waiting,
        "machinery_samples": main.machinery,
    }
    hot = hot_frames(main)
    hot_text = "; ".join(f"{name}: {_pct(n, main.samples)}" for name, n in hot)

    # spin: hot loop thread, and the anyio frame seen, or nothing but loop machinery; then confirmed (or not) by
    # the identity of the scope re-delivered (py-spy --locals), which healthy timeout churn cannot fake
    churn_line: str | None = None
    scopes: ScopeEvidence | None = None  # a spin suspect's scopes ride on the verdict, whatever it comes to
    if spin_suspect(main, thread_cpu, flight_zero, t):
        hits = main.spin_hits
        ev_lines = [*base]
        if hits >= t.spin_min_hits:
            ev_lines.append(f"{_pct(hits, main.samples)} in anyio CancelScope._deliver_cancellation")
        else:
            ev_lines.append("anyio's _deliver_cancellation itself was not caught in a sample")
        ev_lines.append(
            f"{_pct(main.machinery, main.samples)} in event-loop machinery "
            f"({main.waiting} in the selector), {main.app} in application code"
        )
        if flight:
            ev_lines.append(flight)
        lifecycle = lifecycle_share(main.stacks, main.samples)
        scopes = scope_evidence(ev.locals, main.tid, lifecycle)
        scopes = scopes.merged(earlier) if scopes is not None else None
        if scopes is None and ev.locals is None and settled is not None and stands_for(settled, main, t):
            scopes = settled
        decision = (scopes.decision(t.spin_same_min, t.spin_same_share, t.spin_high_same, t.churn_lifecycle)
                    if scopes is not None else None)  # fmt: skip
        if scopes is not None:
            scope_top = scopes.top or (None, 0)
            data.update({"scope": scope_top[0], "scope_samples": scope_top[1], "locals_samples": scopes.dumps,
                         "distinct_scopes": len(scopes.scopes), "looks": scopes.looks,
                         "scope_lifecycle_share": round(scopes.lifecycle, 3)})  # fmt: skip
        if scopes is None and lifecycle >= t.churn_lifecycle:
            why = ev.locals_error or "no locals were read"
            churn_line = (f"py-spy --locals could not be read ({why}); scopes entered or cancelled in {lifecycle:.0%} "
                          "of samples: timeout churn, not a spin")  # fmt: skip
        elif decision == "churn":
            assert scopes is not None
            churn_line = (f"{scopes.sentence()}; scopes entered or cancelled in {scopes.lifecycle:.0%} of samples: "
                          "timeouts firing in healthy work, not a spin")  # fmt: skip
        elif decision == "same" or scopes is None:
            culprit = _culprit(main, ev, scopes)
            advice = spin_advice(ev.info.pid, culprit)
            if culprit is not None:
                ev_lines.append(f"culprit: {culprit.summary()}")
            elif main.samples:
                ev_lines.append("culprit: none named (no frame dominates the samples beneath a cancelled await; "
                                "watchdog.guard's spin sentinel sees the tasks from inside)")  # fmt: skip
            summary = "event loop spinning in anyio _deliver_cancellation" + (
                f": {culprit.function} at {culprit.where}" if culprit is not None and culprit.application else ""
            )
            if scopes is not None and scopes.top is not None:
                ev_lines.append(scopes.sentence())
                n = scopes.top[1]
                conf: Confidence = "high" if n >= t.spin_high_same and thread_cpu >= t.very_hot_cpu else "medium"
                return Verdict("spin", "critical", conf, summary, tuple(ev_lines), advice, data, culprit, scopes)
            # without the scope's identity a spin cannot be told from timeout churn: never more than low
            why = ev.locals_error or "no locals were read"
            ev_lines.append(f"py-spy --locals could not be read ({why}): the same scope was not confirmed")
            return Verdict("spin", "critical", "low", summary, tuple(ev_lines), advice, data, culprit, scopes)
        elif advancing(main, t) or (scopes is not None and scopes.lifecycle >= t.churn_lifecycle):
            assert scopes is not None  # too few deliveries seen, and work advancing or scopes churning: not a spin
            churn_line = (f"{scopes.sentence()}; scopes entered or cancelled in {scopes.lifecycle:.0%} of samples, "
                          f"application code in {_pct(main.app, main.samples)}: not a spin")  # fmt: skip
        elif (
            scopes is not None
            and scopes.hits == 0
            and hits >= 1
            and main.samples >= t.lifecycle_min_samples
            and lifecycle == 0.0
            and thread_cpu >= t.very_hot_cpu
            and main.share(main.app) < t.busy_app_share
        ):
            # On Python 3.12+ on a quiet VM a blocking py-spy sample taken from another CPU lands in a spinning
            # loop's selector nearly every time (0 deliveries caught in 30 dumps): the stop waits for the target's
            # next system call, and a 3.12+ spin makes only epoll_wait (bench/stop_points.py). The locals dumps run
            # on the target's CPU for that, but where they cannot (another cpuset), the scope's identity is not
            # read. The samples still tell the two apart: timeouts that fire enter, cancel and leave scopes (35-65 % of
            # samples in every churn we measured, 17 % in the least), while a spin delivers the same cancellation
            # over and over and no scope ever enters or leaves (0 % in every spin we measured).
            culprit = _culprit(main, ev, scopes)
            ev_lines.append(
                f"{scopes.sentence()}; but _deliver_cancellation ran in {hits} of {main.samples} samples while no "
                "scope was entered, cancelled or left in any of them: one cancellation delivered over and over, "
                "not timeouts firing"
            )
            if culprit is not None:
                ev_lines.append(f"culprit: {culprit.summary()}")
            return Verdict("spin", "critical", "medium", "event loop spinning in anyio _deliver_cancellation",
                           tuple(ev_lines), spin_advice(ev.info.pid, culprit), data, culprit, scopes)  # fmt: skip
        else:
            assert scopes is not None
            ev_lines.append(f"{scopes.sentence()}: not enough to tell a spin from timeout churn")
            return Verdict("spin_suspect", "info", "low", "hot event loop delivering cancellations; not confirmed "
                           "as a spin (the same cancel scope was not seen re-delivered)", tuple(ev_lines),
                           ("Run watchdog diagnose again, or watch the guard's spin sentinel: a real spin keeps "
                            "one cancel scope for as long as it lasts.",), data, None, scopes)  # fmt: skip

    # busy: a hot thread doing application work
    hottest = max(views, key=lambda v: v.demand)
    if hottest.demand >= t.hot_cpu and hottest.share(hottest.app) >= t.busy_app_share:
        hv = hottest
        frames = "; ".join(f"{name}: {_pct(n, hv.samples)}" for name, n in hot_frames(hv))
        lines = [*base]
        if hv is not main:
            lines.append(f"hottest thread {hv.name or ''} {hv.tid}: CPU {hv.cpu:.0f} %")
        lines.append(f"{_pct(hv.app, hv.samples)} in application code; hottest: {frames}")
        if churn_line:  # a spin suspect on its samples: say why it is not one
            lines.append(churn_line)
        if main.runs_loop:
            lines.append(
                f"the event loop ran its own machinery in {_pct(main.machinery, main.samples)} "
                f"({main.waiting} waiting in its selector)"
            )
        data["hot_thread_id"] = hv.tid
        data["hot_thread_cpu_percent"] = round(hv.cpu, 1)
        top = hot_frames(hv, 1)
        summary = f"CPU-bound in {top[0][0]}" if top else "CPU-bound"
        # Honest work is not a fault by itself (the demo's crunch); the frames say whether it is expected.
        return Verdict("busy", "info", "high" if hv.demand >= t.very_hot_cpu else "medium", summary, tuple(lines),
                       k.ADVICE_BUSY, data, scopes=scopes)  # fmt: skip

    # blocked: the loop thread stuck in one call that is not the selector, not burning CPU
    if main.runs_loop and main.share(main.waiting) <= 0.1 and hot:
        frame, n = hot[0]
        if main.share(n) >= t.blocked_share and thread_cpu < t.hot_cpu:
            states = ev.thread_state_counts(main.tid)
            lines = [*base, f"{_pct(n, main.samples)} in {frame}; the loop never waited in its selector"]
            if states:
                state, seen = states.most_common(1)[0]
                wchan = state.split(" ", 1)[1] if " " in state else ""
                if wchan:
                    lines.append(
                        f"kernel: {k.wchan_meaning(wchan)} ({wchan}) in {seen} of {sum(states.values())} looks"
                    )
            data["blocked_in"] = frame
            conf = "high" if main.share(n) >= 0.8 else "medium"
            return Verdict("blocked", "critical", conf, f"event loop blocked in {frame}", tuple(lines),
                           k.ADVICE_BLOCKED, data)  # fmt: skip

    # idle by the work done (CPU), not by demand: on a machine short of CPU an idle loop's wake-ups wait for a core
    if cpu < t.idle_cpu and main.cpu < t.idle_cpu:
        lines = [*base]
        if main.runs_loop:
            lines.append(f"the event loop waited in its selector in {_pct(main.waiting, main.samples)}")
        if flight:
            lines.append(flight)
        return Verdict("idle", "info", "high", "idle: waiting for work", tuple(lines), (), data)

    lines = [*base]
    if churn_line:
        lines.append(churn_line)
    if hot_text:
        lines.append(f"hottest frames: {hot_text}")
    if flight:
        lines.append(flight)
    summary = (
        "serving: cancel-heavy work, timeouts firing (not a spin)" if churn_line else "serving: nothing wrong seen"
    )
    return Verdict("active", "info", "medium", summary, tuple(lines), (), data, scopes=scopes)
