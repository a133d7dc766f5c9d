"""The sidecar's main loop: discover workers, sample signals, judge rules, act through the budget, report.

Everything runs in one anyio task group: a process loop (discovery and psutil facts, in a thread), a metrics
loop (scrapes), a stacks loop (py-spy, when a worker looks hot and on a slow baseline), a probes loop, the
notifier, a heartbeat, and one task per running action chain. Nothing here blocks the event loop: psutil runs in
threads, py-spy and HTTP are async with timeouts.

Collaborators that touch the outside world are injected (the clock, the signal sender, the stack sampler, the
prober, the diagnoser), so the logic is tested without sleeps and the real thing is tested end to end.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import anyio
from anyio.abc import TaskGroup

from watchdog._version import __version__
from watchdog.actions.budget import Budget, Policy
from watchdog.actions.notify import Notifier
from watchdog.actions.recycle import RecyclePlan, Recycler, SignalSender
from watchdog.agent.events import Event, EventLog
from watchdog.agent.metrics import AgentMetrics
from watchdog.agent.sources import ProcessReading, Scrape, cgroup_memory_limit, process_signals, read_process, scrape
from watchdog.agent.stacks import LookSchedule, StackLook
from watchdog.config import Config, Target
from watchdog.discovery import Discovery, TargetView, WorkerId
from watchdog.errors import ProcessGone
from watchdog.rules import LoadedRules, Rule, RuleEngine, Transition
from watchdog.signals.catalog import SignalRef, format_value, parse_ref
from watchdog.signals.series import SignalStore

log = logging.getLogger("watchdog.agent")
_SENTINEL = parse_ref("metric:watchdog_guard_cancel_spin_scopes")


class StackSampler(Protocol):
    """Takes one look at a worker's stacks (``watchdog.agent.stacks.StackLooker`` is the real one)."""

    async def look(
        self, worker: WorkerId, duration: float, rate: int, in_flight: dict[str, float] | None = None
    ) -> StackLook: ...


@dataclass(frozen=True)
class ProbeRun:
    ok: bool
    worker_pid: int | None
    reason: str
    latency: float | None
    detail: dict[str, Any] = field(default_factory=dict)


Prober = Callable[[Target, aiohttp.ClientSession | None], Awaitable[ProbeRun]]
"""Runs a target's probes; on the given session (reused connections), or on fresh connections when None."""
Diagnoser = Callable[[WorkerId], Awaitable[dict[str, Any]]]


@dataclass
class WorkerState:
    id: WorkerId
    target: str
    store: SignalStore = field(default_factory=SignalStore)
    reading: ProcessReading | None = None
    looks: LookSchedule = field(default_factory=lambda: LookSchedule(5.0, 60.0))
    stack_error: str | None = None
    probe_streak: int = 0
    probe_ok: bool | None = None
    memory_limit: int | None = None
    exported: set[str] = field(default_factory=set)
    verdict: dict[str, Any] | None = None
    process_error: str | None = None


@dataclass
class TargetState:
    cfg: Target
    view: TargetView | None = None
    workers: dict[str, WorkerState] = field(default_factory=dict)
    scrape: Scrape | None = None
    scraped_at: float = -math.inf
    probe_streak: int = 0
    last_probe: ProbeRun | None = None
    signals: dict[str, float] = field(default_factory=dict)


class Agent:
    def __init__(
        self,
        cfg: Config,
        rules: LoadedRules,
        *,
        metrics: AgentMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        send: SignalSender | None = None,
        stack_sampler: StackSampler | None = None,
        prober: Prober | None = None,
        diagnoser: Diagnoser | None = None,
    ) -> None:
        self.cfg = cfg
        self.rules = RuleEngine(rules.rules)
        self.metrics = metrics or AgentMetrics()
        self.clock = clock
        self.started = clock()
        self.events = EventLog()
        self.discovery = Discovery(cfg.targets)
        self.targets = {t.name: TargetState(t) for t in cfg.targets}
        self.budget = Budget(
            {
                t.name: Policy(cfg.budget.max_recycles, cfg.budget.window, cfg.budget.cooldown, t.min_healthy_workers)
                for t in cfg.targets
            }
        )
        self.recycler = Recycler(send=send) if send is not None else Recycler()
        self.notifier = Notifier(
            cfg.notify.webhooks, on_result=lambda url, outcome: self.metrics.notifications.labels(outcome).inc()
        )
        self.stack_sampler = stack_sampler
        self.prober = prober
        self.diagnoser = diagnoser
        self._chains: set[tuple[str, str]] = set()
        self._tg: TaskGroup | None = None
        self._http: aiohttp.ClientSession | None = None
        self.last_beat = clock()
        self.max_lag = 0.0  # since the last /metrics scrape (reset there)
        self.lags: deque[tuple[float, float]] = deque(maxlen=64)  # (when, lag) of recent late beats, for /healthz
        self._stack_limit = anyio.CapacityLimiter(2)

    # ---- running -------------------------------------------------------------------------------------------
    async def run(self, *, ready: Callable[[], None] | None = None) -> None:
        """Run until cancelled. ``ready`` is called once the first discovery and process round is done."""
        async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
            self._tg, self._http = tg, http
            await self._process_round()
            tg.start_soon(self.notifier.run, http)
            tg.start_soon(self._every, self.cfg.intervals.process, self._process_round)
            tg.start_soon(self._every, self.cfg.intervals.metrics, self._metrics_round)
            if self.stack_sampler is not None and self.cfg.stacks.enabled:
                tg.start_soon(self._every, min(0.5, self.cfg.intervals.stacks), self._stacks_round)
            if self.prober is not None:
                tg.start_soon(self._every, self.cfg.intervals.probes, self._probes_round)
            tg.start_soon(self._heartbeat)
            if ready is not None:
                ready()

    async def _every(self, interval: float, fn: Callable[[], Awaitable[None]]) -> None:
        while True:
            start = self.clock()
            try:
                await fn()
            except Exception:  # a bug in one round must not take the watchdog down; it is logged loudly
                log.exception("round %s failed", getattr(fn, "__name__", fn))
                self.metrics.sampling_errors.labels("agent", "internal").inc()
            await anyio.sleep(max(0.0, interval - (self.clock() - start)))

    async def _heartbeat(self) -> None:
        period = 0.25
        while True:
            before = self.clock()
            await anyio.sleep(period)
            lag = max(0.0, self.clock() - before - period)
            self.max_lag = max(self.max_lag, lag)
            self.last_beat = self.clock()
            if lag > 0.05:
                self.lags.append((self.last_beat, lag))

    def recent_lag(self, window: float = 10.0) -> float:
        """The worst lag of the own event loop within the last ``window`` seconds."""
        since = self.clock() - window
        return max((lag for t, lag in self.lags if t >= since), default=0.0)

    # ---- process: discovery + psutil ----------------------------------------------------------------------
    async def _process_round(self) -> None:
        views = await anyio.to_thread.run_sync(self.discovery.scan)
        now = self.clock()
        for view in views:
            ts = self.targets[view.name]
            self._sync_workers(ts, view, now)
        readings = await anyio.to_thread.run_sync(self._read_all, now)
        for ts in self.targets.values():
            for key, ws in list(ts.workers.items()):
                reading = readings.get(key)
                if reading is None:
                    continue
                values = process_signals(
                    ws.store,
                    ws.reading,
                    reading,
                    memory_limit=ws.memory_limit,
                    memory_window=self.cfg.windows.memory,
                    fd_window=self.cfg.windows.fds,
                )
                if reading.denied != ws.process_error:
                    if reading.denied is not None:
                        self.metrics.sampling_errors.labels("process", "permission").inc()
                        self.events.add(
                            Event(
                                "process_unreadable",
                                f"{ts.cfg.name}: worker {ws.id.pid}: {reading.denied}",
                                target=ts.cfg.name,
                                worker=ws.id.pid,
                                severity="warning",
                            )
                        )
                    ws.process_error = reading.denied
                ws.reading = reading
                ws.store.record(now, values, stale_after=3 * self.cfg.intervals.process)
                self._export(ts, ws, values)
                self._judge_worker(ts, ws, now)
            self._judge_target(ts, now)

    def _read_all(self, now: float) -> dict[str, ProcessReading]:
        out = {}
        for ts in self.targets.values():
            for key, ws in ts.workers.items():
                r = read_process(ws.id, now)
                if r is not None:
                    out[key] = r
        return out

    def _sync_workers(self, ts: TargetState, view: TargetView, now: float) -> None:
        previous_problem = ts.view.problem if ts.view is not None else None
        ts.view = view
        self.metrics.target_up.labels(ts.cfg.name).set(0 if view.problem and not view.workers else 1)
        if view.problem and view.problem != previous_problem:
            self.events.add(
                Event("target_problem", f"{ts.cfg.name}: {view.problem}", target=ts.cfg.name, severity="warning")
            )
        current = {w.key: w for w in view.workers}
        for key in list(ts.workers):
            if key not in current:
                ws = ts.workers.pop(key)
                for st in self.rules.forget(key):
                    self.metrics.rule_state.labels(ts.cfg.name, st.rule, str(ws.id.pid)).set(0)
                for name in ws.exported:
                    self.metrics.signal.remove(ts.cfg.name, str(ws.id.pid), name)
                self.events.add(
                    Event(
                        "worker_gone", f"{ts.cfg.name}: worker {ws.id.pid} exited", target=ts.cfg.name, worker=ws.id.pid
                    )
                )
        for key, wid in current.items():
            if key not in ts.workers:
                limit = ts.cfg.memory_limit or cgroup_memory_limit(wid.pid)
                looks = LookSchedule(self.cfg.intervals.stacks, self.cfg.stacks.baseline)
                ts.workers[key] = WorkerState(wid, ts.cfg.name, memory_limit=limit, looks=looks)
                self.events.add(
                    Event("worker_new", f"{ts.cfg.name}: watching worker {wid.pid}", target=ts.cfg.name, worker=wid.pid)
                )
        self.metrics.workers.labels(ts.cfg.name).set(len(ts.workers))
        ts.signals["target_workers"] = float(len(ts.workers))

    def _export(self, ts: TargetState, ws: WorkerState, values: dict[str, float | None]) -> None:
        for name, v in values.items():
            if v is not None and math.isfinite(v):
                self.metrics.signal.labels(ts.cfg.name, str(ws.id.pid), name).set(v)
                ws.exported.add(name)

    # ---- metrics ------------------------------------------------------------------------------------------
    async def _metrics_round(self) -> None:
        assert self._http is not None
        for ts in self.targets.values():
            url = ts.cfg.metrics_url
            if url is None:
                continue
            result = await scrape(self._http, url, timeout=min(5.0, self.cfg.intervals.metrics))
            if result.error:
                self.metrics.sampling_errors.labels("metrics", "scrape").inc()
                if ts.scrape is None or not ts.scrape.error:
                    self.events.add(
                        Event("metrics_down", f"{ts.cfg.name}: {result.error}", target=ts.cfg.name, severity="warning")
                    )
            ts.scrape = result
            ts.scraped_at = self.clock()
            now = self.clock()
            for ws in ts.workers.values():
                self._judge_worker(ts, ws, now)

    # ---- stacks -------------------------------------------------------------------------------------------
    async def _stacks_round(self) -> None:
        now = self.clock()
        due: list[tuple[TargetState, WorkerState]] = []
        for ts in self.targets.values():
            for ws in ts.workers.values():
                cpu = ws.store.current("cpu_percent", now)
                sockets = ws.store.current("sockets", now)
                spin_sentinel = self._lookup(ts, ws, now)(_SENTINEL)
                stalled = (
                    ws.store.current("loop_wait_outside_selector", now) == 1.0
                    or ws.probe_streak > 0
                    or (spin_sentinel is not None and spin_sentinel >= 1)
                )
                hot = cpu is not None and cpu >= self.cfg.stacks.hot_cpu_percent
                cool = cpu is not None and cpu < self.cfg.stacks.hot_cpu_percent / 2
                why = ws.looks.due(now, cpu=cpu, sockets=sockets, hot=hot, stalled=stalled, cool=cool)
                if why is not None:
                    self.metrics.stack_looks.labels(why).inc()
                    ws.looks.last = now  # claimed: the next round must not start a second look meanwhile
                    due.append((ts, ws))
        if due:
            async with anyio.create_task_group() as tg:
                for ts, ws in due:
                    tg.start_soon(self._sample_stacks, ts, ws)

    async def _sample_stacks(self, ts: TargetState, ws: WorkerState) -> None:
        assert self.stack_sampler is not None
        async with self._stack_limit:
            start = self.clock()
            fresh = ts.scrape is not None and not ts.scrape.error
            in_flight = ts.scrape.in_flight(ws.id.pid) if fresh and ts.scrape is not None else None
            try:
                look = await self.stack_sampler.look(
                    ws.id, self.cfg.stacks.duration, self.cfg.stacks.rate, in_flight=in_flight or None
                )
            except ProcessGone:
                return  # the worker exited (or was recycled) mid-look: discovery reports that, not a sampling fault
            except Exception as exc:  # noqa: BLE001 - every sampler failure is a visible state, never a crash
                message = str(exc) or type(exc).__name__
                self.metrics.sampling_errors.labels("stacks", type(exc).__name__).inc()
                if message != ws.stack_error:
                    self.events.add(
                        Event(
                            "stacks_unavailable",
                            f"{ts.cfg.name}: worker {ws.id.pid}: {message}",
                            target=ts.cfg.name,
                            worker=ws.id.pid,
                            severity="warning",
                        )
                    )
                ws.stack_error = message
                return
            finally:
                self.metrics.stack_seconds.inc(self.clock() - start)
        ws.stack_error = None
        ws.verdict = look.verdict
        now = self.clock()
        ws.looks.looked(
            now, look.verdict.get("kind"), cpu=ws.store.current("cpu_percent", now),
            sockets=ws.store.current("sockets", now),
        )  # fmt: skip
        values = look.signals
        # a look stays current until the next one is due at the latest (the baseline), so rules can cross it
        # with the process signals sampled in between
        ws.store.record(now, values, stale_after=self.cfg.stacks.baseline + 2 * self.cfg.stacks.duration)
        self._export(ts, ws, values)
        self._judge_worker(ts, ws, now)

    # ---- probes -------------------------------------------------------------------------------------------
    async def _probes_round(self) -> None:
        assert self.prober is not None
        assert self._http is not None
        for ts in self.targets.values():
            if not ts.cfg.probes or not ts.workers:
                continue
            try:
                run = await self.prober(ts.cfg, self._http)
            except Exception as exc:
                self.metrics.sampling_errors.labels("probes", type(exc).__name__).inc()
                log.exception("probe of %s raised", ts.cfg.name)
                continue
            self._record_probe(ts, run)

    def _record_probe(self, ts: TargetState, run: ProbeRun) -> None:
        now = self.clock()
        ts.last_probe = run
        ts.probe_streak = 0 if run.ok else ts.probe_streak + 1
        ts.signals["target_probe_consecutive_failures"] = float(ts.probe_streak)
        # A failure is pinned on a worker only when the answer names it, or when there is only one worker:
        # with a shared listening socket a probe cannot choose its worker, and a blocked worker never even
        # accepts, so other failures belong to the target as a whole.
        owner = next((ws for ws in ts.workers.values() if ws.id.pid == run.worker_pid), None)
        if owner is None and run.worker_pid is None and len(ts.workers) == 1:
            owner = next(iter(ts.workers.values()))
        if owner is not None:
            owner.probe_streak = 0 if run.ok else owner.probe_streak + 1
            owner.probe_ok = run.ok
            values: dict[str, float | None] = {
                "probe_ok": 1.0 if run.ok else 0.0,
                "probe_consecutive_failures": float(owner.probe_streak),
                "probe_latency_seconds": run.latency if run.ok else None,
            }
            owner.store.record(now, values, stale_after=3 * self.cfg.intervals.probes)
            self._export(ts, owner, values)
        judged = [ws for ws in ts.workers.values() if ws.probe_ok is not None]
        if judged:
            ts.signals["target_probe_failing_ratio"] = sum(not ws.probe_ok for ws in judged) / len(judged)
        for ws in ts.workers.values():
            self._judge_worker(ts, ws, now)
        self._judge_target(ts, now)

    # ---- rules --------------------------------------------------------------------------------------------
    def _lookup(self, ts: TargetState, ws: WorkerState | None, now: float) -> Callable[[SignalRef], float | None]:
        scrape_fresh = (
            ts.scrape is not None and not ts.scrape.error and now - ts.scraped_at <= 3 * self.cfg.intervals.metrics
        )

        def lookup(ref: SignalRef) -> float | None:
            if ref.source == "target":
                return ts.signals.get(ref.name)
            if ws is None:
                return None
            if ref.source == "metrics":
                if not scrape_fresh or ts.scrape is None:
                    return None
                if ref.name == "guard_limiter_saturation":  # derived from two guard gauges per limiter
                    return ts.scrape.guard_saturation(ws.id.pid)
                return ts.scrape.value(ref, ws.id.pid)
            return ws.store.current(ref.name, now)

        return lookup

    def _judge_worker(self, ts: TargetState, ws: WorkerState, now: float) -> None:
        for tr in self.rules.evaluate(ws.id.key, self.rules.worker_rules(), self._lookup(ts, ws, now), now):
            self._on_transition(ts, ws, tr)

    def _judge_target(self, ts: TargetState, now: float) -> None:
        for tr in self.rules.evaluate(
            f"target:{ts.cfg.name}", self.rules.target_rules(), self._lookup(ts, None, now), now
        ):
            self._on_transition(ts, None, tr)

    def _on_transition(self, ts: TargetState, ws: WorkerState | None, tr: Transition) -> None:
        pid = ws.id.pid if ws is not None else None
        who = f"worker {pid}" if pid is not None else "the target"
        if tr.after != tr.before:
            self.metrics.rule_transitions.labels(tr.rule.name, tr.after).inc()
            self.metrics.rule_state.labels(ts.cfg.name, tr.rule.name, str(pid or "")).set(tr.after == "firing")
            if tr.after in ("firing", "resolved"):
                self.events.add(
                    Event(
                        f"rule_{tr.after}",
                        f"{tr.rule.name} {tr.after} on {ts.cfg.name} {who}: {_evidence_text(tr.values)}",
                        target=ts.cfg.name,
                        worker=pid,
                        rule=tr.rule.name,
                        severity=tr.rule.severity if tr.after == "firing" else "info",
                        evidence={"signals": tr.values},
                    )
                )
        if tr.actions_due and (tr.rule.name, tr.subject) not in self._chains and self._tg is not None:
            self._chains.add((tr.rule.name, tr.subject))
            self._tg.start_soon(self._run_actions, ts, ws, tr)

    # ---- actions ------------------------------------------------------------------------------------------
    async def _run_actions(self, ts: TargetState, ws: WorkerState | None, tr: Transition) -> None:
        rule = tr.rule
        pid = ws.id.pid if ws is not None else None
        evidence: dict[str, Any] = {"signals": tr.values}
        if ws is not None and ws.verdict is not None and any(k.startswith("stack_") for k in tr.values):
            evidence["stack_verdict"] = ws.verdict
        try:
            for action in rule.actions:
                if action == "log":
                    self.metrics.actions.labels("log", "ok").inc()
                elif action == "diagnose" and ws is not None:
                    evidence["diagnosis"] = await self._diagnose(ws)
                elif action == "recycle" and ws is not None:
                    evidence["recycle"] = await self._recycle(ts, ws, rule, evidence)
                elif action == "notify":
                    self.notifier.submit(self._payload(ts, pid, rule, "firing", evidence))
                    self.metrics.actions.labels("notify", "queued").inc()
        finally:
            self._chains.discard((rule.name, tr.subject))

    async def _diagnose(self, ws: WorkerState) -> dict[str, Any]:
        if self.diagnoser is None:
            self.metrics.actions.labels("diagnose", "unavailable").inc()
            return {"error": "diagnose is not available in this build"}
        try:
            with anyio.fail_after(30):
                result = await self.diagnoser(ws.id)
        except Exception as exc:  # noqa: BLE001 - evidence capture failing must not stop the recycle decision
            self.metrics.actions.labels("diagnose", "failed").inc()
            return {"error": str(exc) or type(exc).__name__}
        self.metrics.actions.labels("diagnose", "ok").inc()
        return result

    def _healthy_others(self, ts: TargetState, ws: WorkerState) -> int:
        n = 0
        for other in ts.workers.values():
            if other is ws:
                continue
            bad = [s for s in self.rules.firing(other.id.key) if self._severity(s.rule) != "info"]
            if not bad and other.probe_ok is not False:
                n += 1
        return n

    def _severity(self, rule_name: str) -> str:
        return next((r.severity for r in self.rules.rules if r.name == rule_name), "warning")

    async def _recycle(self, ts: TargetState, ws: WorkerState, rule: Rule, evidence: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        decision = self.budget.grant(ts.cfg.name, ws.id.key, healthy_others=self._healthy_others(ts, ws), now=now)
        if not decision:
            self.metrics.budget_denied.labels(ts.cfg.name).inc()
            self.metrics.actions.labels("recycle", "denied").inc()
            self.events.add(
                Event(
                    "budget_denied",
                    f"{ts.cfg.name}: not recycling worker {ws.id.pid} for {rule.name}: {decision.reason}",
                    target=ts.cfg.name,
                    worker=ws.id.pid,
                    rule=rule.name,
                    severity="critical",
                    evidence={"reason": decision.reason},
                )
            )
            self.notifier.submit(
                self._payload(ts, ws.id.pid, rule, "budget_denied", {**evidence, "budget": decision.reason})
            )
            return {"outcome": "denied", "reason": decision.reason}
        rc = ts.cfg.recycle
        plan = RecyclePlan(
            drain_signal=_signum(rc.drain_signal),
            drain_url=rc.drain_url,
            drain_token=rc.drain_token,
            drain_wait=rc.drain_wait,
            grace=rule.grace if rule.grace is not None else rc.grace,
            replacement_timeout=rc.replacement_timeout,
        )
        verb = "would recycle" if self.cfg.dry_run else "recycling"
        self.events.add(
            Event(
                "recycle_started",
                f"{ts.cfg.name}: {verb} worker {ws.id.pid} ({rule.name})",
                target=ts.cfg.name,
                worker=ws.id.pid,
                rule=rule.name,
                severity=rule.severity,
            )
        )
        try:
            outcome = await self.recycler.recycle(
                ws.id,
                plan,
                dry_run=self.cfg.dry_run,
                replacement=lambda old: self._replacement(ts, old, plan),
                http=self._http,
            )
        finally:
            self.budget.release(ts.cfg.name)
        self.metrics.actions.labels("recycle", outcome.outcome).inc()
        result = outcome.to_json()
        self.events.add(
            Event(
                "recycle",
                f"{ts.cfg.name}: worker {ws.id.pid} {outcome.outcome}"
                + (f", replacement {outcome.replacement}" if outcome.replacement else ""),
                target=ts.cfg.name,
                worker=ws.id.pid,
                rule=rule.name,
                severity="info" if outcome.outcome in ("recycled", "dry_run") else "critical",
                evidence={"recycle": result},
            )
        )
        return result

    async def _replacement(self, ts: TargetState, old: WorkerId, plan: RecyclePlan) -> tuple[int | None, str]:
        """Wait for a new worker on the target, then (if probes are configured) for a passing probe."""
        before = {w.pid for w in (ts.view.workers if ts.view else [])}
        deadline = self.clock() + plan.replacement_timeout
        new_pid: int | None = None
        while self.clock() < deadline:
            views = await anyio.to_thread.run_sync(self.discovery.scan)
            view = next(v for v in views if v.name == ts.cfg.name)
            fresh = [w.pid for w in view.workers if w.pid not in before and w.pid != old.pid]
            if fresh:
                new_pid = fresh[0]
                break
            await anyio.sleep(0.2)
        if new_pid is None:
            return None, f"no replacement worker appeared within {plan.replacement_timeout:g} s"
        if self.prober is None or not ts.cfg.probes:
            return new_pid, f"replacement worker {new_pid} is up"
        # Probe on fresh connections (the kernel spreads them over the workers) until the replacement itself
        # answers; if the answers never name a worker, a passing probe of the target is what can be said.
        last, passed_elsewhere = "", 0
        while self.clock() < deadline:
            run = await self.prober(ts.cfg, None)
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
                f"other workers within {plan.replacement_timeout:g} s"
            )
        return None, f"replacement worker {new_pid} is up but the probe did not pass: {last}"

    def _payload(
        self, ts: TargetState, pid: int | None, rule: Rule, status: str, evidence: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "source": "mcp-watchdog",
            "version": __version__,
            "status": status,
            "dry_run": self.cfg.dry_run,
            "target": ts.cfg.name,
            "worker": pid,
            "host": os.uname().nodename,
            "rule": rule.name,
            "severity": rule.severity,
            "description": rule.description,
            "advice": rule.advice,
            "evidence": evidence,
        }

    # ---- status -------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        now = self.clock()
        targets = []
        for ts in self.targets.values():
            workers = []
            for ws in ts.workers.values():
                workers.append(
                    {
                        "pid": ws.id.pid,
                        "create_time": ws.id.create_time,
                        "signals": {k: _finite(v) for k, v in ws.store.snapshot(now).items()},
                        "stack_error": ws.stack_error,
                        "process_error": ws.process_error,
                        "stack_verdict": ws.verdict,
                        "rules": [s.to_json() for s in self.rules.states(ws.id.key) if s.state != "inactive"],
                    }
                )
            targets.append(
                {
                    "name": ts.cfg.name,
                    "problem": ts.view.problem if ts.view else None,
                    "metrics_error": ts.scrape.error if ts.scrape else None,
                    "signals": ts.signals,
                    "last_probe": None
                    if ts.last_probe is None
                    else {
                        "ok": ts.last_probe.ok,
                        "worker": ts.last_probe.worker_pid,
                        "reason": ts.last_probe.reason,
                        "latency": ts.last_probe.latency,
                        **ts.last_probe.detail,
                    },
                    "budget": {
                        "recycles_in_window": self.budget.used(ts.cfg.name, now),
                        "max_recycles": self.cfg.budget.max_recycles,
                    },
                    "workers": workers,
                    "rules": [s.to_json() for s in self.rules.states(f"target:{ts.cfg.name}") if s.state != "inactive"],
                }
            )
        return {
            "version": __version__,
            "dry_run": self.cfg.dry_run,
            "uptime_seconds": round(now - self.started, 3),
            "rules": [r.name for r in self.rules.rules],
            "targets": targets,
            "events": [e.to_json() for e in self.events.recent()],
        }


def _finite(v: float) -> float | str:
    return v if math.isfinite(v) else ("inf" if v > 0 else "-inf")


def _evidence_text(values: dict[str, float | None]) -> str:
    return ", ".join(f"{k} {format_value(k, v)}" for k, v in values.items())


def _signum(name: str | None) -> int | None:
    import signal

    return None if name is None else int(getattr(signal, name))
