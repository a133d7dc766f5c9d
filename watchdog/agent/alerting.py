"""Alerting wired to the agent: rule states out to Alertmanager, Alertmanager's webhook in as requests to act.

``Alerting`` owns the ``AlertSink`` (out) and the ``AlertInbox`` (in). The agent tells it what happened (a rule
firing or resolved, a worker gone); the actuator's notifications pass through ``AlertingNotifier``, which turns
a budget refusal or a failed recycle into an alert too. The HTTP server hands inbound requests to the inbox,
which queues them for ``act_on_alert``: the webhook is answered at once, and every action goes through the
actuator (budget, identity check, dry run, pause), as a rule's would.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from watchdog.actions.actuator import ActionRequest, Origin
from watchdog.actions.alertmanager import AlertSink, alert_key, make_alert
from watchdog.actions.inbound import AlertRequest, Inbound
from watchdog.actions.notify import Notifier
from watchdog.agent.events import Event
from watchdog.agent.metrics import AgentMetrics
from watchdog.config import Config, Webhook
from watchdog.rules import Rule
from watchdog.signals.catalog import format_value

if TYPE_CHECKING:
    from watchdog.agent.loop import Agent

log = logging.getLogger("watchdog.alerting")

Handler = Callable[[AlertRequest], Awaitable[None]]


def instance_name(cfg: Config) -> str:
    """What the watchdog calls itself in alerts: ``external_labels.instance``, else the host (pod) name."""
    return cfg.notify.external_labels.get("instance") or os.uname().nodename


def generator_url(cfg: Config) -> str:
    if cfg.notify.generator_url:
        return cfg.notify.generator_url
    host, _, port = cfg.server.listen.rpartition(":")
    if host in ("0.0.0.0", "[::]", "::", ""):
        host = os.uname().nodename
    return f"http://{host}:{port}/v1/status"


def export_zeros(metrics: AgentMetrics, targets: list[str]) -> None:
    """Serve at 0, from the start, the counter series ``deploy/prometheus/mcp-watchdog.rules.yml`` reads:
    ``increase()`` over a series that first appears at 1 sees nothing, so the first event would be missed. The
    target gauges are there too, at 0 until the first scan (a scrape can come before it; the missing-target alert
    waits a minute)."""
    for name in targets:
        metrics.budget_denied.labels(name)
        metrics.target_up.labels(name).set(0)
        metrics.workers.labels(name).set(0)
    for outcome in ("recycled", "failed"):
        metrics.actions.labels("recycle", outcome)
    for outcome in ("sent", "failed"):
        metrics.notifications.labels(outcome)


class AlertInbox:
    """A bounded queue between the webhook handler (``submit``, never blocks) and the agent (``run``)."""

    def __init__(
        self,
        inbound: Inbound,
        token: str,
        *,
        count: Callable[[str, int], None] | None = None,
        maxsize: int = 64,
        parallel: int = 4,
    ) -> None:
        self.inbound = inbound
        self.token = token
        self.count = count or (lambda outcome, n: None)
        """Counts requests and alerts by outcome (``watchdog_alertmanager_inbound_total``)."""
        self._send: MemoryObjectSendStream[AlertRequest]
        self._recv: MemoryObjectReceiveStream[AlertRequest]
        self._send, self._recv = anyio.create_memory_object_stream[AlertRequest](maxsize)
        self._limit = anyio.CapacityLimiter(parallel)

    def submit(self, request: AlertRequest) -> bool:
        """Queue ``request``; False (and logged) when the queue is full."""
        try:
            self._send.send_nowait(request)
        except anyio.WouldBlock:
            log.warning("inbound alert queue full; not acting on %s", request.summary)
            return False
        return True

    async def run(self, handler: Handler) -> None:
        """Hand every queued request to ``handler``, a few at a time, until cancelled."""
        async with anyio.create_task_group() as tg:
            async for request in self._recv:
                tg.start_soon(self._one, handler, request)

    async def _one(self, handler: Handler, request: AlertRequest) -> None:
        async with self._limit:
            try:
                await handler(request)
            except Exception:  # one failed action must not stop the inbox
                log.exception("acting on %s failed", request.summary)


class Alerting:
    """The agent's alerting: what to tell Alertmanager, and the inbox of what Alertmanager asks."""

    def __init__(self, cfg: Config, metrics: AgentMetrics) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.instance = instance_name(cfg)
        self.sink = AlertSink(
            cfg.notify.alertmanagers,
            resend_interval=cfg.notify.resend_interval,
            external_labels=cfg.notify.external_labels,
            generator_url=generator_url(cfg),
            metrics=metrics.alertmanager,
        )
        export_zeros(metrics, [t.name for t in cfg.targets])
        self.inbox: AlertInbox | None = None
        self.webhook = bool(cfg.server.alertmanager_webhook and cfg.server.token)
        self.pull_interval = cfg.notify.pull_interval if cfg.notify.alertmanagers else None
        if self.webhook or self.pull_interval is not None:
            names = {self.instance, os.uname().nodename, cfg.server.listen, cfg.notify.external_labels.get("pod", "")}
            self.inbox = AlertInbox(
                Inbound([t.name for t in cfg.targets], names),
                cfg.server.token or "",
                count=lambda outcome, n: metrics.alertmanager.inbound.labels(outcome).inc(n),
            )

    @property
    def webhook_inbox(self) -> AlertInbox | None:
        """The inbox ``POST /v1/alertmanager`` feeds, when the endpoint is on (the HTTP server's argument)."""
        return self.inbox if self.webhook else None

    async def run(self, http: aiohttp.ClientSession, handler: Handler | None) -> None:
        """The sink's sender, the inbox's consumer (when there is a handler) and the pull loop, until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.sink.run, http)
            if self.inbox is not None and handler is not None:
                tg.start_soon(self.inbox.run, handler)
                if self.pull_interval is not None:
                    tg.start_soon(self._pull, http, self.inbox, self.pull_interval)

    async def _pull(self, http: aiohttp.ClientSession, inbox: AlertInbox, interval: float) -> None:
        """Pull mode: the active alerts meant for this pod, read from Alertmanager's API like webhook alerts (the
        dedupe by fingerprint and startsAt makes each one a single action, however often it is seen)."""
        pod = self.cfg.notify.external_labels["pod"]  # required by the config with pull_interval
        filters = ['watchdog_action=~"diagnose|recycle"', f'pod="{pod}"']
        while True:
            alerts = await self.sink.fetch(http, filters)
            payload = {
                "receiver": "pull",
                "alerts": [
                    {
                        "status": "firing",
                        "labels": a.get("labels") or {},
                        "annotations": a.get("annotations") or {},
                        "startsAt": str(a.get("startsAt", "")),
                        "fingerprint": str(a.get("fingerprint", "")),
                    }
                    for a in alerts
                ],
            }
            accepted, skipped = inbox.inbound.requests(payload)
            for outcome, n in skipped.items():
                if outcome != "duplicate":  # every poll sees an alert again: that is not news
                    inbox.count(outcome, n)
            for request in accepted:
                inbox.count("accepted" if inbox.submit(request) else "overflow", 1)
            await anyio.sleep(interval)

    def rule(
        self,
        *,
        name: str,
        state: str,
        target: str,
        pid: int | None,
        severity: str,
        description: str,
        advice: str,
        evidence: str,
    ) -> None:
        """A rule changed state on a worker (or target): fire its alert, or resolve it."""
        key = alert_key(name, target, pid)
        if state != "firing":
            self.sink.resolve(key)
            for alertname in ("WatchdogBudgetRefused", "WatchdogRecycleFailed"):
                self.sink.resolve(alert_key(f"{alertname}:{name}", target, pid))
            return
        on = f"worker {pid}" if pid is not None else "the target"
        self.sink.fire(
            key,
            make_alert(
                alertname=name,
                severity=severity,
                target=target,
                worker=pid,
                instance=self.instance,
                summary=f"{name} on {target} {on}",
                description=description,
                advice=advice,
                evidence=evidence,
            ),
        )

    def transition(
        self, target: str, pid: int | None, rule: Rule, state: str, values: Mapping[str, float | None]
    ) -> None:
        """The agent's hook: a rule went ``firing`` or ``resolved`` on a worker (or the target, ``pid=None``)."""
        if state not in ("firing", "resolved"):
            return
        evidence = ", ".join(f"{k} {format_value(k, v)}" for k, v in values.items())
        self.rule(
            name=rule.name, state=state, target=target, pid=pid, severity=rule.severity,
            description=rule.description, advice=rule.advice, evidence=evidence,
        )  # fmt: skip

    def problem(self, kind: str, *, target: str, pid: int | None, rule: str, reason: str) -> None:
        """A budget refusal (``kind='budget_denied'``) or a failed recycle (``'recycle_failed'``): an alert that
        stays active until the worker is gone or the rule resolves."""
        alertname = {"budget_denied": "WatchdogBudgetRefused", "recycle_failed": "WatchdogRecycleFailed"}[kind]
        self.sink.fire(
            alert_key(f"{alertname}:{rule}", target, pid),
            make_alert(
                alertname=alertname,
                severity="critical",
                target=target,
                worker=pid,
                instance=self.instance,
                summary=f"{rule} on {target} worker {pid}: {reason}",
                description="The watchdog did not recycle a worker a rule asked it to recycle.",
                advice="Look at the worker by hand (watchdog diagnose PID); the budget protects the fleet.",
                evidence=reason,
            ),
        )

    def worker_gone(self, target: str, pid: int) -> None:
        """A worker exited or was recycled: every alert about it resolves."""
        self.sink.resolve_where(lambda key: key.endswith(f"/{target}/{pid}"))

    def notification(self, payload: Mapping[str, Any]) -> None:
        """An actuator notification: a budget refusal, or a recycle that failed, becomes an alert as well."""
        target, pid, rule = str(payload.get("target")), payload.get("worker"), str(payload.get("rule"))
        evidence = payload.get("evidence") or {}
        if payload.get("status") == "budget_denied":
            self.problem("budget_denied", target=target, pid=pid, rule=rule, reason=str(evidence.get("budget", "")))
            return
        recycle = evidence.get("recycle") or {}
        if payload.get("status") == "firing" and recycle.get("outcome") == "failed":
            steps = recycle.get("steps") or [{}]
            self.problem("recycle_failed", target=target, pid=pid, rule=rule, reason=str(steps[-1].get("detail", "")))

    def notifier(self, webhooks: list[Webhook], inner: Notifier | None = None) -> Notifier:
        """The actuator's notifier (``inner``, else one for ``webhooks``), with every notification shown to
        ``notification`` first."""
        if inner is None:
            inner = Notifier(webhooks, on_result=lambda url, outcome: self.metrics.notifications.labels(outcome).inc())
        return AlertingNotifier(inner, self)


class AlertingNotifier(Notifier):
    """Wraps the actuator's ``Notifier``: each notification goes to ``Alerting.notification`` (alerts from budget
    refusals and failed recycles) and then on."""

    def __init__(self, inner: Notifier, alerting: Alerting) -> None:
        super().__init__([])
        self.inner = inner
        self.alerting = alerting

    def submit(self, payload: dict[str, Any]) -> None:
        try:
            self.alerting.notification(payload)
        except Exception:  # an alert that cannot be built must not stop the webhook
            log.exception("turning a notification into an alert failed")
        self.inner.submit(payload)

    async def run(self, http: aiohttp.ClientSession) -> None:
        await self.inner.run(http)


async def act_on_alert(agent: Agent, request: AlertRequest) -> None:
    """Carry out an inbound alert's request through the actuator: on the named worker, else the worst worker
    (a recycle) or every worker (a diagnose); the outcome is an ``alert_acted`` event naming the alert."""
    ts = agent.targets[request.target]
    if request.pid is not None:
        chosen = [ws for ws in ts.workers.values() if ws.id.pid == request.pid]
    elif request.action == "recycle":
        worst = agent.world.worst_worker(request.target, agent.clock())
        chosen = [worst] if worst is not None else []
    else:
        chosen = list(ts.workers.values())
    severity = request.labels.get("severity", "warning")
    summary = request.annotations.get("summary", "") or request.annotations.get("description", "")
    origin = Origin("alert", request.alertname or "alert", severity, summary)
    evidence = {
        "alert": {
            "labels": dict(request.labels),
            "annotations": dict(request.annotations),
            "fingerprint": request.fingerprint,
            "startsAt": request.starts_at,
            "receiver": request.receiver,
        }
    }
    if not chosen:
        what = f"no worker {request.pid}" if request.pid is not None else "no worker"
        agent.events.add(
            Event(
                "alert_acted", f"{request.summary}: {what} on {request.target}; nothing done", target=request.target,
                rule=request.alertname, severity="warning", evidence=evidence,
            )
        )  # fmt: skip
        return
    async with anyio.create_task_group() as tg:
        for ws in chosen:
            tg.start_soon(_act_one, agent, ActionRequest(origin, request.target, ws.id, (request.action, "notify"),
                                                         evidence), request)  # fmt: skip


async def _act_one(agent: Agent, action: ActionRequest, request: AlertRequest) -> None:
    outcome = await agent.actuator.handle(action)
    result = outcome.results.get(request.action, {})
    said = result.get("outcome") or (f"failed: {result['error']}" if result.get("error") else "done")
    assert action.worker is not None
    agent.events.add(
        Event(
            "alert_acted",
            f"{request.summary}: worker {action.worker.pid}: {request.action} {said}",
            target=request.target, worker=action.worker.pid, rule=request.alertname,
            severity="info", evidence={**action.evidence, request.action: result},
        )
    )  # fmt: skip
