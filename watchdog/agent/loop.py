"""The sidecar's main loop: discover workers, sample signals, and let the judge and the actuator do the rest.

One anyio task group runs a round per signal source (discovery and process facts in a thread, metrics scrapes,
py-spy stack looks on suspicion, probes), the notifier, a heartbeat, and one task per action request. The agent
keeps the schedule; ``world`` holds what is known, ``judge`` turns rule transitions into events and requests,
``watchdog.actions.actuator`` acts, ``status`` reports. Everything that touches the outside world is injected
(clocks, discovery, process table, stack sampler, prober, diagnoser, signal sender): tests/agent/test_loop.py
drives the loop with fakes in about a second.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anyio
from anyio.abc import TaskGroup

from watchdog.actions.actuator import Actuator, Diagnoser
from watchdog.actions.notify import Notifier
from watchdog.actions.recycle import RecyclePlan, Recycler
from watchdog.actions.state import PauseSwitch, StateFile
from watchdog.agent import sources
from watchdog.agent.alerting import Alerting, act_on_alert
from watchdog.agent.events import EventLog
from watchdog.agent.heartbeat import Heartbeat
from watchdog.agent.judge import Judge
from watchdog.agent.metrics import AgentMetrics
from watchdog.agent.replacement import await_replacement
from watchdog.agent.status import status_document
from watchdog.agent.world import Prober, ProbeRun, Scanner, StackSampler, TargetState, WorkerState, World
from watchdog.config import Config
from watchdog.discovery import Discovery, TargetView, WorkerId
from watchdog.errors import ProcessGone
from watchdog.rules import LoadedRules, RuleEngine

log = logging.getLogger("watchdog.agent")

__all__ = ["Agent", "Diagnoser", "ProbeRun", "Prober", "StackSampler"]


class Agent:
    def __init__(
        self,
        cfg: Config,
        rules: LoadedRules,
        *,
        metrics: AgentMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        discovery: Scanner | None = None,
        read_process: Callable[[WorkerId, float], sources.ProcessReading | None] = sources.read_process,
        memory_limit: Callable[[int], int | None] = sources.cgroup_memory_limit,
        recycler: Recycler | None = None,
        notifier: Notifier | None = None,
        stack_sampler: StackSampler | None = None,
        prober: Prober | None = None,
        diagnoser: Diagnoser | None = None,
    ) -> None:
        self.cfg = cfg
        self.rules = RuleEngine(rules.rules)
        self.metrics = metrics or AgentMetrics()
        self.clock = clock
        self.started = clock()
        self.events = EventLog(wall=wall)
        self.discovery = discovery or Discovery(cfg.targets)
        self.read_process = read_process
        self.memory_limit = memory_limit
        self.world = World(cfg, self.rules)
        self.targets = self.world.targets
        self.stack_sampler = stack_sampler
        self.prober = prober
        state = StateFile(cfg.state_dir) if cfg.state_dir else None
        self.alerting = Alerting(cfg, self.metrics)  # alerts: out to Alertmanager, and in from it (webhook or pull)
        notifier = self.alerting.notifier(cfg.notify.webhooks, notifier)  # budget refusals etc. become alerts
        self.actuator = Actuator(
            cfg, self, events=self.events, metrics=self.metrics, recycler=recycler, notifier=notifier,
            diagnoser=diagnoser, wall=wall, state=state, pause=PauseSwitch(cfg.pause_file),
        )  # fmt: skip
        self.judge = Judge(self.world, self.actuator, events=self.events, metrics=self.metrics)
        self.judge.listeners.append(self.alerting.transition)  # rule firing/resolved -> Alertmanager
        self._http: aiohttp.ClientSession | None = None
        self._stack_limit, self._news = anyio.CapacityLimiter(2), anyio.Event()
        self.heart = Heartbeat(clock, on_beat=lambda: self.metrics.paused.set(1 if self.actuator.pause.paused() else 0))

    # ---- running -------------------------------------------------------------------------------------------
    async def run(self, *, ready: Callable[[], None] | None = None) -> None:
        """Run until cancelled. ``ready`` is called once the first discovery and process round is done."""
        unfinished = self.actuator.restore()
        async with sources.http_session() as http, anyio.create_task_group() as tg:
            self.act_in(tg, http)
            await self.process_round()
            for target, worker, ago in unfinished:
                tg.start_soon(self.actuator.resume, target, worker, ago)
            tg.start_soon(self.actuator.notifier.run, http)
            tg.start_soon(self.alerting.run, http, lambda request: act_on_alert(self, request))
            tg.start_soon(self._every, self.cfg.intervals.process, self.process_round)
            tg.start_soon(self._every, self.cfg.intervals.metrics, self.metrics_round)
            if self.stack_sampler is not None and self.cfg.stacks.enabled:
                tg.start_soon(self._after_rounds, self.stacks_round)
            if self.prober is not None:
                tg.start_soon(self._every, self.cfg.intervals.probes, self.probes_round)
            tg.start_soon(self.heart.run)
            if ready is not None:
                ready()

    def act_in(self, tg: TaskGroup, http: aiohttp.ClientSession | None = None) -> None:
        """Where action requests run (``run`` calls this; tests drive the rounds themselves)."""
        self.judge.tg, self._http, self.actuator.http = tg, http, http

    async def _round(self, fn: Callable[[], Awaitable[None]]) -> None:
        try:
            await fn()
        except Exception:  # a bug in one round must not take the watchdog down; it is logged loudly
            log.exception("round %s failed", getattr(fn, "__name__", fn))
            self.metrics.sampling_errors.labels("agent", "internal").inc()

    async def _every(self, interval: float, fn: Callable[[], Awaitable[None]]) -> None:
        while True:
            start = self.clock()
            await self._round(fn)
            self._news.set()
            await anyio.sleep(max(0.0, interval - (self.clock() - start)))

    async def _after_rounds(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Runs ``fn`` after each round that read something (what makes a stack look due is read there), with no
        timer of its own: each timer is a wake-up of the sidecar, and under load each cost it a cold cache."""
        while True:
            await self._news.wait()
            self._news = anyio.Event()
            await self._round(fn)

    # ---- process: discovery + psutil ----------------------------------------------------------------------
    async def process_round(self) -> None:
        now = self.clock()
        views, readings = await anyio.to_thread.run_sync(self._scan_and_read, now)  # one trip to a thread
        for view in views:
            self._sync_workers(self.targets[view.name], view)
        for ts in self.targets.values():
            for key, ws in list(ts.workers.items()):
                reading = readings.get(key)
                if reading is None:
                    continue
                values = sources.process_signals(
                    ws.store, ws.reading, reading, memory_limit=ws.memory_limit,
                    memory_window=self.cfg.windows.memory, fd_window=self.cfg.windows.fds,
                )  # fmt: skip
                if reading.denied != ws.process_error:
                    if reading.denied is not None:
                        self.metrics.sampling_errors.labels("process", "permission").inc()
                        self.judge.event("process_unreadable", ts, ws, reading.denied, severity="warning")
                    ws.process_error = reading.denied
                ws.reading = reading
                self._record(ts, ws, now, values, stale_after=3 * self.cfg.intervals.process)
                self.judge.worker(ts, ws, now)
            self.judge.target(ts, now)

    def _scan_and_read(self, now: float) -> tuple[list[TargetView], dict[str, sources.ProcessReading]]:
        """Discovery's views and a reading of every worker in them (the new ones too), in a worker thread."""
        views = self.discovery.scan()
        out = {}
        for view in views:
            for wid in view.workers:
                r = self.read_process(wid, now)
                if r is not None:
                    out[wid.key] = r
        return views, out

    def _sync_workers(self, ts: TargetState, view: TargetView) -> None:
        previous_problem = ts.view.problem if ts.view is not None else None
        name = ts.cfg.name
        self.metrics.target_up.labels(name).set(0 if view.problem and not view.workers else 1)
        if view.problem and view.problem != previous_problem:
            self.judge.event("target_problem", ts, None, view.problem, severity="warning")
        gone, new = self.world.sync(ts, view, self.memory_limit)
        for ws in gone:
            states = self.rules.forget(ws.id.key)
            self.judge.gone(ts, ws, states)
            for st in states:  # a dead worker's series go too, not just to zero
                self.metrics.remove_series(self.metrics.rule_state, name, st.rule, str(ws.id.pid))
            for signal_name in ws.exported:
                self.metrics.remove_series(self.metrics.signal, name, str(ws.id.pid), signal_name)
            self.judge.event("worker_gone", ts, ws, "exited")
            self.alerting.worker_gone(name, ws.id.pid)  # its alerts resolve
        for ws in new:
            self.judge.event("worker_new", ts, ws, "watching")
        self.metrics.workers.labels(name).set(len(ts.workers))

    def _record(
        self, ts: TargetState, ws: WorkerState, now: float, values: dict[str, float | None], *, stale_after: float
    ) -> None:
        ws.store.record(now, values, stale_after=stale_after)
        for name, v in values.items():
            if v is not None and math.isfinite(v):
                self.metrics.signal.labels(ts.cfg.name, str(ws.id.pid), name).set(v)
                ws.exported.add(name)

    # ---- metrics ------------------------------------------------------------------------------------------
    async def metrics_round(self) -> None:
        assert self._http is not None
        timeout = min(5.0, self.cfg.intervals.metrics)
        for ts in [t for t in self.targets.values() if t.cfg.metrics_url is not None]:
            assert ts.cfg.metrics_url is not None
            result = await sources.scrape(self._http, ts.cfg.metrics_url, timeout, max_bytes=ts.cfg.metrics_max_body)
            if result.error:
                self.metrics.sampling_errors.labels("metrics", "scrape").inc()
                if ts.scrape is None or not ts.scrape.error:
                    self.judge.event("metrics_down", ts, None, result.error, severity="warning")
            ts.scrape, ts.scraped_at = result, self.clock()
            now = self.clock()
            for ws in ts.workers.values():
                self.judge.worker(ts, ws, now)

    # ---- stacks -------------------------------------------------------------------------------------------
    async def stacks_round(self) -> None:
        due = self.world.due_looks(self.clock(), skip=self.actuator.recycling)
        for why, _, _ in due:
            self.metrics.stack_looks.labels(why).inc()
        if due:
            async with anyio.create_task_group() as tg:
                for _, ts, ws in due:
                    tg.start_soon(self._look, ts, ws)

    async def _look(self, ts: TargetState, ws: WorkerState) -> None:
        assert self.stack_sampler is not None
        async with self._stack_limit:
            start = self.clock()
            fresh = ts.scrape is not None and not ts.scrape.error
            in_flight = ts.scrape.in_flight(ws.id.pid) if fresh and ts.scrape is not None else None
            try:
                look = await self.stack_sampler.look(
                    ws.id, self.cfg.stacks.duration, self.cfg.stacks.rate, in_flight=in_flight or None, kin=ts.cfg.name
                )
            except ProcessGone:
                return  # the worker exited (or was recycled) mid-look: discovery reports that, not a sampling fault
            except Exception as exc:  # noqa: BLE001 - every sampler failure is a visible state, never a crash
                message = str(exc) or type(exc).__name__
                self.metrics.sampling_errors.labels("stacks", type(exc).__name__).inc()
                if message != ws.stack_error:
                    self.judge.event("stacks_unavailable", ts, ws, message, severity="warning")
                ws.stack_error = message
                return
            finally:
                self.metrics.stack_seconds.inc(self.clock() - start)
        ws.stack_error, ws.verdict = None, look.verdict
        self.metrics.looked(look.locals_cpu_s)
        now = self.clock()
        ws.looks.looked(now, look.verdict.get("kind"), cpu=ws.heat(now), sockets=ws.store.current("sockets", now))
        # a look stays current until the next one is due at the latest (the baseline), so rules can cross it
        # with the process signals sampled in between
        stale_after = self.cfg.stacks.baseline + 2 * self.cfg.stacks.duration
        self._record(ts, ws, now, look.signals, stale_after=stale_after)
        self.judge.worker(ts, ws, now)

    # ---- probes -------------------------------------------------------------------------------------------
    async def probes_round(self) -> None:
        assert self.prober is not None
        for ts in self.targets.values():
            if not ts.cfg.probes or not ts.workers:
                continue
            try:
                run = await self.prober(ts.cfg, self._http)
            except Exception as exc:
                self.metrics.sampling_errors.labels("probes", type(exc).__name__).inc()
                log.exception("probe of %s raised", ts.cfg.name)
                run = ProbeRun(False, None, f"the probe raised {type(exc).__name__}: {exc}", None)
            now = self.clock()
            owner, values = self.world.record_probe(ts, run)
            if owner is not None:
                self._record(ts, owner, now, values, stale_after=3 * self.cfg.intervals.probes)
            for ws in ts.workers.values():
                self.judge.worker(ts, ws, now)
            self.judge.target(ts, now)

    # ---- what the actuator asks of the world (WorldView) ---------------------------------------------------
    def healthy_others(self, target: str, worker: WorkerId) -> int:
        return self.world.healthy_others(target, worker)

    def worker_pids(self, target: str) -> frozenset[int]:
        ts = self.targets[target]
        return frozenset(w.pid for w in ts.view.workers) if ts.view else frozenset()

    async def replacement(
        self, target: str, old: WorkerId, plan: RecyclePlan, before: frozenset[int]
    ) -> tuple[int | None, str]:
        ts = self.targets[target]
        return await await_replacement(
            self.discovery.scan, self.prober, ts, old, plan.replacement_timeout, before=before, clock=self.clock
        )

    def status(self) -> dict[str, Any]:
        return status_document(self)
