"""The one front door for actions: every diagnose, recycle and notification passes here, whoever asked.

A rule that fires, and later an inbound alert, hands the actuator an ``ActionRequest``: who asked (``Origin``),
the worker, the actions, the evidence. The actuator owns what makes acting safe and honest:

- the blast-radius **budget** (one recycle at a time per target, a maximum per window, a minimum of healthy
  workers, a cooldown per worker), asked before any signal is sent; a refusal is an event and an alert;
- **dry run** and the **pause switch**: everything runs, recycles are recorded as "would have";
- **one fault, one action, one alert**: a request for a worker whose recycle is already under way *joins* that
  recycle (its evidence is attached to it) instead of being refused; the one notification at the end carries
  every joined rule's evidence;
- **evidence before action, without delay**: the evidence the request brings (the stack look that fired) is
  attached as it is; a fuller diagnosis runs concurrently with the drain, never before the SIGTERM;
- **state that survives a restart**: the budget's ledger, recent events and a recycle in progress are written
  to the state file, so a restarted watchdog neither forgets its budget nor leaves a half-recycled worker.

The actuator never decides *whether* something is wrong (rules do) and never samples (the agent does); what it
needs of the world, it asks through ``WorldView``.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import aiohttp
import anyio

from watchdog._version import __version__
from watchdog.actions.budget import Budget, Policy
from watchdog.actions.notify import Notifier
from watchdog.actions.recycle import RecyclePlan, Recycler
from watchdog.actions.state import PauseSwitch, SavedState, StateFile
from watchdog.agent.events import Event, EventLog
from watchdog.agent.metrics import AgentMetrics
from watchdog.config import Config, Target
from watchdog.discovery import WorkerId

log = logging.getLogger("watchdog.actions")
_WAIT_FOR_TURN = 120.0
"""How long a recycle waits for another recycle of the same target to end before the budget refuses it."""

Action = Literal["log", "diagnose", "recycle", "notify"]
Diagnoser = Callable[[WorkerId], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Origin:
    """What asked for the actions: a rule of a rule pack, or an inbound alert."""

    kind: Literal["rule", "alert"]
    name: str
    severity: str = "warning"
    description: str = ""
    advice: str = ""
    grace: float | None = None  # the rule's own grace period, overriding the target's


@dataclass(frozen=True)
class ActionRequest:
    origin: Origin
    target: str
    worker: WorkerId | None
    actions: tuple[str, ...]
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ActionOutcome:
    """What came of a request: each action's result, and whether it joined a recycle already under way."""

    request: ActionRequest
    results: dict[str, Any] = field(default_factory=dict)
    joined: bool = False


class WorldView(Protocol):
    """What the actuator asks of the agent's picture of the world."""

    def healthy_others(self, target: str, worker: WorkerId) -> int: ...

    def worker_pids(self, target: str) -> frozenset[int]: ...

    async def replacement(
        self, target: str, old: WorkerId, plan: RecyclePlan, before: frozenset[int]
    ) -> tuple[int | None, str]: ...


@dataclass
class _Recycle:
    """A recycle under way: the requests that joined it, and an event set when it is over."""

    worker: WorkerId
    joined: list[ActionRequest] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)
    result: dict[str, Any] = field(default_factory=dict)


def recycle_plan(target: Target, origin: Origin) -> RecyclePlan:
    """How to recycle a worker of ``target`` for ``origin``: the one place config and rule meet."""
    rc = target.recycle
    return RecyclePlan(
        drain_signal=None if rc.drain_signal is None else int(getattr(signal, rc.drain_signal)),
        drain_url=rc.drain_url,
        drain_token=rc.drain_token,
        drain_wait=rc.drain_wait,
        grace=origin.grace if origin.grace is not None else rc.grace,
        replacement_timeout=rc.replacement_timeout,
    )


class Actuator:
    def __init__(
        self,
        cfg: Config,
        world: WorldView,
        *,
        events: EventLog,
        metrics: AgentMetrics,
        recycler: Recycler | None = None,
        notifier: Notifier | None = None,
        diagnoser: Diagnoser | None = None,
        wall: Callable[[], float] = time.time,
        state: StateFile | None = None,
        pause: PauseSwitch | None = None,
    ) -> None:
        self.cfg = cfg
        self.world = world
        self.events = events
        self.metrics = metrics
        self.targets = {t.name: t for t in cfg.targets}
        self.budget = Budget(
            {
                t.name: Policy(cfg.budget.max_recycles, cfg.budget.window, cfg.budget.cooldown, t.min_healthy_workers)
                for t in cfg.targets
            }
        )
        self.recycler = recycler or Recycler()
        self.notifier = notifier or Notifier(
            cfg.notify.webhooks, on_result=lambda url, outcome: metrics.notifications.labels(outcome).inc()
        )
        self.diagnoser = diagnoser
        self.wall = wall
        self.state = state
        self.pause = pause or PauseSwitch(None)
        self.http: aiohttp.ClientSession | None = None
        self._recycles: dict[str, _Recycle] = {}
        self._finished = {t.name: anyio.Event() for t in cfg.targets}  # set when a recycle of the target ends
        self._unfinished: dict[str, dict[str, Any]] = {}  # worker key -> what the state file says of its recycle

    # ---- the front door -----------------------------------------------------------------------------------
    @property
    def dry_run(self) -> bool:
        """Acting as in dry run: configured so, or paused by the pause switch right now."""
        return self.cfg.dry_run or self.pause.paused()

    async def handle(self, req: ActionRequest) -> ActionOutcome:
        """Carry out ``req``'s actions in order; never raises (a failure is that action's recorded outcome)."""
        out = ActionOutcome(req)
        evidence: dict[str, Any] = dict(req.evidence)
        wants = set(req.actions)
        try:
            if "log" in wants:
                self.metrics.actions.labels("log", "ok").inc()
            if "recycle" in wants and req.worker is not None:
                current = self._recycles.get(req.worker.key)
                if current is not None:
                    await self._join(current, req, out)
                    return out
                evidence["recycle"] = out.results["recycle"] = await self._recycle(
                    req, evidence, diagnose="diagnose" in wants
                )
                if out.results["recycle"].get("outcome") == "denied":
                    return out  # the refusal was the alert
            elif "diagnose" in wants and req.worker is not None:
                evidence["diagnosis"] = out.results["diagnose"] = await self._diagnose(req.worker)
            if "notify" in wants:
                self._notify(req, "firing", evidence)
        except Exception as exc:  # a bug in one action must not take the watchdog down: counted and logged
            self.metrics.actions.labels("internal", "failed").inc()
            log.exception("actions of %s %s failed", req.origin.kind, req.origin.name)
            out.results["error"] = str(exc) or type(exc).__name__
        return out

    def notify(self, req: ActionRequest, status: str, evidence: Mapping[str, Any]) -> None:
        """Send a notification for ``req`` outside an action chain (a rule resolving, say)."""
        self._notify(req, status, dict(evidence))

    def recycling(self, worker: WorkerId) -> bool:
        return worker.key in self._recycles

    # ---- actions ------------------------------------------------------------------------------------------
    async def _join(self, current: _Recycle, req: ActionRequest, out: ActionOutcome) -> None:
        current.joined.append(req)
        out.joined = True
        self.metrics.actions.labels("recycle", "joined").inc()
        self.events.add(
            Event(
                "recycle_joined",
                f"{req.target}: {req.origin.name} also fires on worker {current.worker.pid}, whose recycle is "
                "already under way: its evidence joins that recycle",
                target=req.target,
                worker=current.worker.pid,
                rule=req.origin.name,
                severity="info",
                evidence=dict(req.evidence),
            )
        )
        await current.done.wait()
        out.results["recycle"] = {"outcome": "joined", **current.result}

    async def _diagnose(self, worker: WorkerId) -> dict[str, Any]:
        if self.diagnoser is None:
            self.metrics.actions.labels("diagnose", "unavailable").inc()
            return {"error": "diagnose is not available in this build"}
        try:
            with anyio.fail_after(30):
                result = await self.diagnoser(worker)
        except Exception as exc:  # noqa: BLE001 - evidence capture failing must not stop the recycle
            self.metrics.actions.labels("diagnose", "failed").inc()
            return {"error": str(exc) or type(exc).__name__}
        self.metrics.actions.labels("diagnose", "ok").inc()
        return result

    async def _recycle(self, req: ActionRequest, evidence: dict[str, Any], *, diagnose: bool) -> dict[str, Any]:
        assert req.worker is not None
        worker, name = req.worker, req.target
        healthy, dry = self.world.healthy_others(name, worker), self.dry_run
        # a dry run asks the budget without spending it: shadow mode must not block the real thing later
        ask = self.budget.check if dry else self.budget.grant
        decision = ask(name, worker.key, healthy_others=healthy, now=self.wall())
        with anyio.move_on_after(_WAIT_FOR_TURN):
            while decision.busy:  # one recycle at a time per target: wait for our turn, then ask again
                await self._finished[name].wait()
                healthy = self.world.healthy_others(name, worker)
                decision = ask(name, worker.key, healthy_others=healthy, now=self.wall())
        if not decision:
            self.metrics.budget_denied.labels(name).inc()
            self.metrics.actions.labels("recycle", "denied").inc()
            self.events.add(
                Event(
                    "budget_denied",
                    f"{name}: not recycling worker {worker.pid} for {req.origin.name}: {decision.reason}",
                    target=name,
                    worker=worker.pid,
                    rule=req.origin.name,
                    severity="critical",
                    evidence={"reason": decision.reason},
                )
            )
            self._notify(req, "budget_denied", {**evidence, "budget": decision.reason})
            return {"outcome": "denied", "reason": decision.reason}
        current = self._recycles[worker.key] = _Recycle(worker)
        plan = recycle_plan(self.targets[name], req.origin)
        self.events.add(
            Event(
                "recycle_started",
                f"{name}: {'would recycle' if dry else 'recycling'} worker {worker.pid} ({req.origin.name})"
                + (" [paused]" if dry and not self.cfg.dry_run else ""),
                target=name,
                worker=worker.pid,
                rule=req.origin.name,
                severity=req.origin.severity,
            )
        )
        self._remember(worker, {"target": name, "origin": req.origin.name, "started": self.wall()})
        # the workers before the SIGTERM: any other is the replacement, even one discovery has already taken in
        before = self.world.worker_pids(name)
        try:
            async with anyio.create_task_group() as tg:
                if diagnose:  # concurrently with the drain: evidence never delays the SIGTERM

                    async def diagnosis() -> None:
                        evidence["diagnosis"] = await self._diagnose(worker)

                    tg.start_soon(diagnosis)
                outcome = await self.recycler.recycle(
                    worker,
                    plan,
                    dry_run=dry,
                    replacement=lambda old: self.world.replacement(name, old, plan, before),
                    http=self.http,
                    on_signal=lambda sig: self._signalled(worker, sig),
                )
            current.result = outcome.to_json()
        except anyio.get_cancelled_exc_class():
            log.warning(
                "stopping: the recycle of worker %d (%s) was carried through its signals; its replacement was "
                "not awaited",
                worker.pid,
                name,
            )
            raise
        finally:
            if not dry:
                self.budget.release(name)
            del self._recycles[worker.key]
            current.done.set()
            self._finished[name].set()
            self._finished[name] = anyio.Event()
            self._forget(worker)
        self.metrics.actions.labels("recycle", outcome.outcome).inc()
        if current.joined:
            evidence["joined"] = [
                {"rule": j.origin.name, "severity": j.origin.severity, **dict(j.evidence)} for j in current.joined
            ]
        self.events.add(
            Event(
                "recycle",
                f"{name}: worker {worker.pid} {outcome.outcome}"
                + (f", replacement {outcome.replacement}" if outcome.replacement else ""),
                target=name,
                worker=worker.pid,
                rule=req.origin.name,
                severity="info" if outcome.outcome in ("recycled", "dry_run") else "critical",
                evidence={"recycle": current.result, "joined": [j.origin.name for j in current.joined]},
            )
        )
        self.save()
        return current.result

    def _notify(self, req: ActionRequest, status: str, evidence: dict[str, Any]) -> None:
        self.notifier.submit(_default_payload(req, status, evidence, dry_run=self.dry_run))
        self.metrics.actions.labels("notify", "queued").inc()

    # ---- state that survives a restart --------------------------------------------------------------------
    def _signalled(self, worker: WorkerId, sig: str) -> None:
        if sig == "SIGTERM":
            entry = self._unfinished.get(worker.key)
            if entry is not None:
                entry["term_sent"] = self.wall()
                self.save()

    def _remember(self, worker: WorkerId, entry: dict[str, Any]) -> None:
        if self.dry_run:
            return
        self._unfinished[worker.key] = {"pid": worker.pid, "create_time": worker.create_time, **entry}
        self.save()

    def _forget(self, worker: WorkerId) -> None:
        if self._unfinished.pop(worker.key, None) is not None:
            self.save()

    def save(self) -> None:
        if self.state is None:
            return
        events = [e.to_json() for e in self.events.recent()]
        self.state.save(SavedState(self.budget.to_json(), events, dict(self._unfinished)))

    def restore(self) -> list[tuple[str, WorkerId, float | None]]:
        """Read the state file: the budget's ledger and recent events come back; returns the recycles a
        previous run left unfinished (target, worker, seconds since its SIGTERM or None) for ``resume``."""
        if self.state is None:
            return []
        saved = self.state.load()
        now = self.wall()
        kept = self.budget.restore(saved.budget, now)
        self.events.restore(saved.events)
        unfinished = []
        for entry in saved.recycles.values():
            try:
                target, worker = str(entry["target"]), WorkerId(int(entry["pid"]), float(entry["create_time"]))
                term = entry.get("term_sent")
                ago = None if term is None else max(0.0, now - float(term))
            except (KeyError, TypeError, ValueError):
                continue
            if target in self.targets:
                unfinished.append((target, worker, ago))
        if kept or saved.events or unfinished:
            log.info(
                "state restored from %s: %d recycle(s) in the budget's windows, %d event(s), %d unfinished recycle(s)",
                self.state.path,
                kept,
                len(saved.events),
                len(unfinished),
            )
        return unfinished

    async def resume(self, target: str, worker: WorkerId, term_sent_ago: float | None) -> None:
        """Finish a recycle that a previous run began, if that very worker (pid + create time) is still there."""
        plan = recycle_plan(self.targets[target], Origin("rule", "resumed"))
        self._unfinished[worker.key] = {"pid": worker.pid, "create_time": worker.create_time, "target": target}
        try:
            outcome = await self.recycler.resume(worker, plan, term_sent_ago=term_sent_ago)
        finally:
            self._unfinished.pop(worker.key, None)
        done = outcome.outcome == "recycled"
        self.events.add(
            Event(
                "recycle_resumed",
                f"{target}: the previous run left the recycle of worker {worker.pid} unfinished: "
                + ("finished it" if done else outcome.steps[-1].detail if outcome.steps else outcome.outcome),
                target=target,
                worker=worker.pid,
                severity="warning" if done else "info",
                evidence={"recycle": outcome.to_json()},
            )
        )
        self.save()


def _default_payload(req: ActionRequest, status: str, evidence: dict[str, Any], *, dry_run: bool) -> dict[str, Any]:
    """The generic webhook's JSON: who asked, about which worker, with what evidence."""
    return {
        "source": "mcp-watchdog",
        "version": __version__,
        "status": status,
        "dry_run": dry_run,
        "target": req.target,
        "worker": req.worker.pid if req.worker else None,
        "host": os.uname().nodename,
        "rule": req.origin.name,
        "origin": req.origin.kind,
        "severity": req.origin.severity if status != "resolved" else "info",
        "description": req.origin.description,
        "advice": req.origin.advice,
        "evidence": evidence,
    }
