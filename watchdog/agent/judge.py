"""Rules into consequences: each transition becomes metrics, an event, and, when due, an action request.

The judge evaluates a worker's (or a target's) rules against the world, records what changed, and hands due
actions to the actuator as ``ActionRequest``s, one chain at a time per rule and subject. The evidence a request
carries is what the rule saw plus the worker's latest stack look, so acting never waits for evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anyio.abc import TaskGroup

from watchdog.actions.actuator import ActionRequest, Actuator, Origin
from watchdog.agent.events import Event, EventLog
from watchdog.agent.metrics import AgentMetrics
from watchdog.agent.world import TargetState, WorkerState, World
from watchdog.rules import Rule, RuleState, Transition
from watchdog.signals.catalog import format_value


class Judge:
    def __init__(self, world: World, actuator: Actuator, *, events: EventLog, metrics: AgentMetrics) -> None:
        self.world = world
        self.rules = world.rules
        self.actuator = actuator
        self.events = events
        self.metrics = metrics
        self.tg: TaskGroup | None = None  # where action chains run; none until the agent runs
        self.chains: set[tuple[str, str]] = set()
        # firing rules whose notification went out (or will, when their chain ends): what "resolved" closes
        self.opened: dict[tuple[str, str], ActionRequest] = {}
        self.resolve_after: set[tuple[str, str]] = set()  # resolved while their chain still ran
        self.listeners: list[Callable[[str, int | None, Rule, str, dict[str, float | None]], None]] = []
        """Told of every state change: (target, pid or None, rule, new state, values). Alerting listens."""

    def worker(self, ts: TargetState, ws: WorkerState, now: float) -> None:
        lookup = self.world.lookup(ts, ws, now)
        for tr in self.rules.evaluate(ws.id.key, self.rules.worker_rules(), lookup, now):
            self._on_transition(ts, ws, tr)

    def target(self, ts: TargetState, now: float) -> None:
        lookup = self.world.lookup(ts, None, now)
        for tr in self.rules.evaluate(f"target:{ts.cfg.name}", self.rules.target_rules(), lookup, now):
            self._on_transition(ts, None, tr)

    def _on_transition(self, ts: TargetState, ws: WorkerState | None, tr: Transition) -> None:
        rule, pid = tr.rule, (ws.id.pid if ws is not None else None)
        evidence: dict[str, Any] = {"signals": tr.values}
        if ws is not None and ws.verdict is not None:
            evidence["stack_verdict"] = ws.verdict  # the look that fired (or the latest): evidence without delay
        origin = Origin("rule", rule.name, rule.severity, rule.description, rule.advice, rule.grace)
        request = ActionRequest(origin, ts.cfg.name, ws.id if ws is not None else None, tuple(rule.actions), evidence)
        if tr.after != tr.before:
            self.metrics.rule_transitions.labels(rule.name, tr.after).inc()
            self.metrics.rule_state.labels(ts.cfg.name, rule.name, str(pid or "")).set(tr.after == "firing")
            if tr.after in ("firing", "resolved"):
                values = ", ".join(f"{k} {format_value(k, v)}" for k, v in tr.values.items())
                self.event(
                    f"rule_{tr.after}", ts, ws, f"{rule.name} {tr.after}: {values}", rule=rule.name,
                    severity=rule.severity if tr.after == "firing" else "info", evidence={"signals": tr.values},
                )  # fmt: skip
            for listen in self.listeners:
                listen(ts.cfg.name, pid, rule, tr.after, tr.values)
            if tr.after == "resolved":
                self._resolve((rule.name, tr.subject), "the rule's conditions no longer hold", evidence)
        key = (rule.name, tr.subject)
        if tr.actions_due and key not in self.chains and self.tg is not None:
            self.chains.add(key)
            if "notify" in rule.actions:
                self.opened.setdefault(key, request)
            self.tg.start_soon(self._act, request, key)

    def gone(self, ts: TargetState, ws: WorkerState, states: list[RuleState]) -> None:
        """A worker exited (recycled, or on its own): what fired on it is resolved, so receivers can close it."""
        for st in states:
            if st.state == "firing":
                self._resolve((st.rule, st.subject), f"worker {ws.id.pid} is gone", {"signals": st.values})

    def _resolve(self, key: tuple[str, str], why: str, evidence: dict[str, Any]) -> None:
        if key not in self.opened:
            return
        if key in self.chains:  # its own notification has not gone out yet: resolve right after it
            self.resolve_after.add(key)
            return
        request = self.opened.pop(key)
        self.actuator.notify(request, "resolved", {**evidence, "resolved_because": why})

    async def _act(self, request: ActionRequest, key: tuple[str, str]) -> None:
        try:
            await self.actuator.handle(request)
        finally:
            self.chains.discard(key)
            if key in self.resolve_after:
                self.resolve_after.discard(key)
                self._resolve(key, "resolved while its actions ran", {})

    def event(
        self, kind: str, ts: TargetState, ws: WorkerState | None, message: str, *,
        rule: str | None = None, severity: str = "info", evidence: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        who = f"worker {ws.id.pid}" if ws is not None else "target"
        self.events.add(
            Event(
                kind, f"{ts.cfg.name}: {who}: {message}", target=ts.cfg.name, worker=ws.id.pid if ws else None,
                rule=rule, severity=severity, evidence=evidence or {},
            )
        )  # fmt: skip
