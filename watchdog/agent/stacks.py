"""The sidecar's look at a worker's stacks: the same evidence and the same verdict engine as ``watchdog diagnose``.

One look samples the worker with py-spy for ``stacks.duration`` while psutil watches it (plus a short series of
``py-spy dump --locals`` when the window looks like a spin), then judges the window with
``watchdog.diagnose.verdicts.state_verdict``, so the sidecar and the command can never disagree about what a
worker is doing. The scope evidence of a worker's previous look carries into the next one. The look becomes
signals (``stack_*``, see the catalogue) and the verdict (with the culprit, and a one-line summary) is kept as
evidence for the rule that fires on it. Failures (py-spy missing, no ptrace permission, the worker gone) raise the
``InspectError`` that says so; the agent shows it as a state, it never crashes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from watchdog.diagnose import collect_evidence
from watchdog.diagnose.collect import with_locals
from watchdog.diagnose.report import verdict_dict
from watchdog.diagnose.spin import ScopeEvidence
from watchdog.diagnose.verdicts import (
    ThreadView,
    Verdict,
    advancing,
    hot_frames,
    main_view,
    stands_for,
    state_verdict,
    thread_views,
)
from watchdog.discovery import WorkerId
from watchdog.signals.catalog import BUILTIN_STACK_PATTERNS
from watchdog.signals.interpreter import Interpreter
from watchdog.signals.stacks import StackSamples, find_py_spy

log = logging.getLogger("watchdog.agent")
CONFIDENCE = {"low": 1.0, "medium": 2.0, "high": 3.0}


@dataclass(frozen=True)
class StackLook:
    """One look's result: the ``signals`` rules read; the ``verdict`` (``verdict_dict``: kind, confidence,
    evidence, advice, data, culprit; plus ``look_summary``, the same line as ``summary``); the ``culprit`` alone
    (``Culprit.to_dict()``, None unless a spin named one); ``summary``, one line for notifications and alerts
    ("spin (high); the same CancelScope 0x... re-delivered in 9 of 14 samples over 2 looks; culprit stubborn at
    app.py:134, 41 % of samples"); ``locals_cpu_s``, what this look's ``py-spy dump --locals`` series cost (0.0
    when none was taken: only windows that look like a spin take one)."""

    signals: dict[str, float | None]
    verdict: dict[str, Any]
    samples: StackSamples | None = None  # the raw samples, for a flame graph of the look (watchdog.agent.flames)
    culprit: dict[str, Any] | None = None
    summary: str = ""
    locals_cpu_s: float = 0.0


@dataclass(frozen=True)
class Churn:
    """A series of ``--locals`` dumps that settled a kind of window as no spin: ``when``, the delivery ``share`` of
    its window, its ``scopes`` (which decided timeout churn, or nothing beside advancing application work: see
    ``verdicts.stands_for``), and the ``worker`` it was taken on."""

    when: float
    share: float
    scopes: ScopeEvidence
    worker: WorkerId


def look_summary(v: Verdict) -> str:
    """The one line a notification carries about a look's verdict."""
    head = f"{v.kind} ({v.confidence}): {v.summary}"
    if v.kind != "spin":
        return head
    parts = [f"spin ({v.confidence})"]
    if v.scopes is not None and v.scopes.top is not None:
        parts.append(v.scopes.sentence())
    else:
        parts.append("scope identity not read")
    if v.culprit is not None:
        c = v.culprit
        who = f"{c.function} at {c.where}" + (f" (task {c.task!r})" if c.task else "")
        parts.append(f"culprit {who}, {c.share:.0%} of samples" if c.application else c.summary())
    return "; ".join(parts)


class StackLooker:
    """Takes looks at workers, at most ``concurrency`` py-spy processes at a time.

    A look whose window looks like a spin also takes up to ``locals_dumps`` ``py-spy dump --locals`` within
    ``locals_seconds`` (stopping once decided), and the scope evidence of a worker's last look is kept for
    ``remember`` seconds: a spin keeps its cancel scope, so a second look at the same scope adds to the first.

    A series that decided timeout churn is not repeated for ``churn_memory`` seconds on a window like it (cancel
    deliveries no more than twice as frequent, and under 10 % of samples): a healthy server whose own cancel
    scopes show in a sample or two made every look take a series (0.2-0.4 s of CPU), the larger part of the
    sidecar's cost under load. The decision is shared by a look's ``kin`` (the agent passes the target: its
    workers run the same code under the same load balancer), so one series serves them all. Such a window is
    judged churn on that evidence, and says so; it can never be judged a spin that way. Nor can the decision stand
    for a window whose samples show no scope entered, cancelled or left and no application work advancing
    (``verdicts.stands_for``): a spin's samples, even where they catch few deliveries (5 % for a 3.13 spin on a
    quiet VM, as few as churn shows). What it costs: a spin beside serving work that starts within
    ``churn_memory`` and shows no more deliveries than the churn did waits for the next series.

    A series that decided nothing (a delivery or two caught in 40 dumps) in a window whose application work
    advanced (``verdicts.advancing``: the window is then not a spin, on its samples) is remembered the same way,
    but stands only for a window whose work advances too: the demo's workers under load show a few of anyio's
    own cancellations in one look of three or so, and each such look paid for a series that could not find a
    spin (0.4-0.6 s of CPU), the sidecar's whole steady-state margin. A spin that keeps the application's share
    of the loop at 30 % or more while re-delivering in under a tenth of samples, starting within the memory,
    waits for the next series; but a series of 40 dumps at that rate catches its scope fewer than three times
    as often as not, and then judges it the same way.
    """

    def __init__(
        self,
        patterns: Mapping[str, str],
        *,
        concurrency: int = 2,
        nonblocking: bool = False,
        locals_dumps: int = 40,
        locals_seconds: float = 2.0,
        remember: float = 30.0,
        churn_memory: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.patterns = {name: re.compile(p) for name, p in {**BUILTIN_STACK_PATTERNS, **patterns}.items()}
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.nonblocking = nonblocking
        self.locals_dumps = locals_dumps
        self.locals_seconds = locals_seconds
        self.remember = remember
        self.churn_memory = churn_memory
        self.clock = clock
        self._churn: dict[Hashable, Churn] = {}  # by kin (or worker): the last series that decided churn
        self._advancing: dict[Hashable, Churn] = {}  # ... that decided nothing, beside application work advancing
        self._interpreters: dict[WorkerId, Interpreter] = {}  # a worker's Python does not change while it lives
        self._scopes: dict[WorkerId, tuple[float, ScopeEvidence]] = {}  # the last look's scopes, per worker

    def settled(self, key: Hashable, window: ThreadView | None) -> Churn | None:
        """The last series that settled a window like this one for ``key`` (a kin, or a worker), if recent, if
        this ``window``'s delivery share is no more than twice that series' window's (and under 10 %), and if its
        samples let that evidence stand for it (``verdicts.stands_for``). None: take a series."""
        if window is None:
            return None
        share = delivery_share(window)
        for kept in (self._churn.get(key), self._advancing.get(key)):
            if kept is None or self.clock() - kept.when > self.churn_memory:
                continue
            if share <= 2 * kept.share and share < 0.1 and stands_for(kept.scopes, window):
                return kept
        return None

    def earlier(self, worker: WorkerId) -> ScopeEvidence | None:
        """The scope evidence of ``worker``'s previous look, if recent enough to build on."""
        kept = self._scopes.get(worker)
        return kept[1] if kept is not None and self.clock() - kept[0] <= self.remember else None

    async def look(
        self,
        worker: WorkerId,
        duration: float,
        rate: int,
        in_flight: dict[str, float] | None = None,
        *,
        kin: str | None = None,
    ) -> StackLook:
        ev = await collect_evidence(
            worker.pid, create_time=worker.create_time, duration=duration, rate=rate,
            nonblocking=self.nonblocking, limiter=self.limiter, in_flight=in_flight,
            interpreter=self._interpreters.get(worker), first_connections=False, locals_dumps=0,
        )  # fmt: skip
        if ev.interpreter is not None:
            if len(self._interpreters) > 256:  # workers come and go; keep the caches bounded
                self._interpreters.clear()
            self._interpreters[worker] = ev.interpreter
        main = main_view(thread_views(ev), worker.pid)  # the series below adds locals, never samples: it stands
        share = delivery_share(main)
        key: Hashable = kin if kin is not None else worker
        churn = self.settled(key, main)
        settled = churn.scopes if churn is not None else None
        if settled is None:
            ev = await with_locals(ev, py_spy=find_py_spy(None, pid=worker.pid), limiter=self.limiter,
                                   nonblocking=self.nonblocking, count=self.locals_dumps, seconds=self.locals_seconds,
                                   give_up_after=self.locals_dumps)  # fmt: skip
        verdict = state_verdict(ev, earlier=self.earlier(worker), settled=settled)
        borrowed = churn if churn is not None and verdict.scopes is churn.scopes else None
        if borrowed is not None:
            whose = "this worker's look" if borrowed.worker == worker else f"the look at worker {borrowed.worker.pid}"
            churned = borrowed.scopes.decision() == "churn"
            what = "timeout churn" if churned else "too few deliveries to tell, application work advancing"
            verdict = dataclasses.replace(verdict, evidence=(*verdict.evidence, (
                f"scope identities from {whose} {self.clock() - borrowed.when:.0f} s ago ({what}); this "
                f"window's cancel deliveries ({share:.0%} of samples) are no more frequent, so no new series was "
                "taken")))  # fmt: skip
        elif ev.locals is not None and verdict.scopes is not None:
            decision = verdict.scopes.decision()
            moving = main is not None and advancing(main)
            if decision == "churn" or (decision == "unknown" and moving and verdict.kind in ("busy", "active")):
                kept = self._advancing if decision == "unknown" else self._churn
                if len(kept) > 256:
                    kept.clear()
                kept[key] = Churn(self.clock(), share, verdict.scopes, worker)
        if len(self._scopes) > 256:
            self._scopes.clear()
        # only a look left a spin suspect (or a spin) carries its scopes on to the next; one judged healthy, or on
        # another process's addresses, breaks the chain
        if verdict.kind in ("spin", "spin_suspect") and verdict.scopes is not None and borrowed is None:
            self._scopes[worker] = (self.clock(), verdict.scopes)
        else:
            self._scopes.pop(worker, None)
        culprit = verdict.culprit.to_dict() if verdict.culprit is not None else None
        cost = ev.locals.cpu_s if ev.locals is not None else 0.0
        summary = look_summary(verdict)
        log.debug("stack look at worker %d: %s (--locals series: %.2f s of CPU)", worker.pid, summary, cost)
        # the summary rides in the verdict too, so rule evidence and notifications that attach the verdict carry it
        return StackLook(signals_of(verdict, main, self.patterns), {**verdict_dict(verdict), "look_summary": summary},
                         ev.stacks, culprit, summary, cost)  # fmt: skip


def delivery_share(main: ThreadView | None) -> float:
    """The share of the loop thread's samples in anyio's ``_deliver_cancellation`` (0 without samples)."""
    return main.spin_hits / main.samples if main is not None and main.samples else 0.0


def signals_of(verdict: Verdict, main: Any, patterns: Mapping[str, re.Pattern[str]]) -> dict[str, float | None]:
    """The stack signals of one look: shares of the loop thread's samples (``stack_share:NAME`` for each named
    pattern: samples with a frame whose name matches), and the verdict's confidences."""
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
    for name, rx in patterns.items():
        matching = sum(s.count for s in main.stacks if any(rx.search(f.name) for f in s.frames))
        out[f"stack_share:{name}"] = matching / n
    return out


ONSET_GAP = 1.0
"""A worker whose CPU jumps (from below 60 % to 90 % and more) is looked at this soon after its previous look,
whatever the gap: that jump is how a spin begins, and detection time is counted from it."""


@dataclass
class LookSchedule:
    """When to look at one worker's stacks: cheap signals run always, py-spy only on suspicion.

    A stall sign (the loop thread asleep outside its selector, a failing probe, the guard's spin sentinel) gets
    a look at most every ``min_gap``. A hot worker gets one too, but while looks keep finding healthy work
    (busy, serving, idle) the gap doubles up to ``baseline``: under steady load every worker is hot, and
    sampling each every few seconds cost the demo 4.6 % of a core and 3 % of its throughput. The gap snaps back
    when the picture changes in a way that matters: the worker's sockets fall away (load stopped; a spin left
    behind keeps the CPU hot with its clients gone: the war story's "100 % CPU with no requests") or its CPU
    jumps from below 60 % to 90 % and more. Ordinary jitter under load (CPU hovering around the hot threshold,
    a few sockets coming and going) does not count. A worker that cools down (below half the hot threshold) is
    looked at again as soon as it is hot. Such a snap-back buys one look: if it finds healthy work, the gap the
    worker had earned comes back (a load balancer that idles and wakes workers all the time once cost the demo
    a look every few seconds per worker). A look that left a spin suspect unconfirmed (too few cancel deliveries
    seen to tell a spin from timeout churn) is followed by another after ``suspect_gap``, up to ``suspect_relooks``
    times in a row; after that the worker is backed off like healthy work (a churning worker is not sampled
    without end).
    Everything gets a look every ``baseline``.
    """

    min_gap: float
    baseline: float
    suspect_gap: float = 1.0
    suspect_relooks: int = 2
    suspects: int = 0
    last: float = -math.inf
    gap: float = 0.0
    earned: float = 0.0
    """The gap healthy looks had earned before a snap-back; a healthy look after it restores it."""
    fingerprint: tuple[float, int] | None = None

    def __post_init__(self) -> None:
        self.gap = self.gap or self.min_gap

    @staticmethod
    def _print(cpu: float | None, sockets: float | None) -> tuple[float, int]:
        return (cpu or 0.0, int(sockets or 0))

    def due(
        self, now: float, *, cpu: float | None, sockets: float | None, hot: bool, stalled: bool, cool: bool = False
    ) -> str | None:
        """Why a look is due now (``stalled``, ``changed``, ``hot``, ``baseline``), or None.

        ``cool`` means clearly not hot (well below the hot threshold): a worker hovering around the threshold
        under load keeps its backed-off gap; one that really cooled down is looked at as soon as it is hot again.
        """
        since = now - self.last
        if stalled and since >= self.min_gap:
            return "stalled"
        if cool:
            self._snap_back()
        elif since >= min(self.min_gap, ONSET_GAP) and self.fingerprint is not None:
            was_cpu, was_sockets = self.fingerprint
            now_cpu, now_sockets = self._print(cpu, sockets)
            clients_left = was_sockets - now_sockets >= 3 and now_sockets <= was_sockets // 2
            if clients_left or (was_cpu < 60.0 and now_cpu >= 90.0):
                self._snap_back()
                return "changed"
        if hot and since >= self.gap:
            return "hot"
        return "baseline" if since >= self.baseline else None

    def _snap_back(self) -> None:
        self.earned = max(self.earned, self.gap)
        self.gap = self.min_gap

    def looked(self, now: float, verdict: str | None, *, cpu: float | None, sockets: float | None) -> None:
        """Record a look and what it found: healthy work backs off, anything else keeps watching closely."""
        self.last = now
        self.fingerprint = self._print(cpu, sockets)
        self.suspects = self.suspects + 1 if verdict == "spin_suspect" else 0
        # a few more samples decide a suspect: look again soon (the scope is remembered); a suspect that stays
        # unconfirmed look after look is timeout churn, and is backed off like healthy work
        healthy = verdict in ("busy", "active", "idle") or self.suspects > self.suspect_relooks
        self.gap = max(min(max(self.gap, self.min_gap) * 2, self.baseline), self.earned) if healthy else self.min_gap
        self.earned = 0.0
        if 0 < self.suspects <= self.suspect_relooks:
            self.gap = min(self.min_gap, self.suspect_gap)
