"""Alerting wired to the agent: rule states out to Alertmanager, Alertmanager's webhook in as requests to act.

``Alerting`` owns the ``AlertSink`` (out) and the ``AlertInbox`` (in). The agent tells it what happened (a rule
firing or resolved, a budget refusal, a failed recycle, a worker gone); the HTTP server hands it inbound
requests, which it queues for the agent's handler so that the webhook is answered at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

import aiohttp
import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from watchdog.actions.alertmanager import AlertSink, alert_key, make_alert
from watchdog.actions.inbound import AlertRequest, Inbound
from watchdog.agent.metrics import AgentMetrics
from watchdog.config import Config

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
    ``increase()`` over a series that first appears at 1 sees nothing, so the first event would be missed."""
    for name in targets:
        metrics.budget_denied.labels(name)
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
        if cfg.server.alertmanager_webhook and cfg.server.token:
            names = {self.instance, os.uname().nodename, cfg.server.listen, cfg.notify.external_labels.get("pod", "")}
            self.inbox = AlertInbox(
                Inbound([t.name for t in cfg.targets], names),
                cfg.server.token,
                count=lambda outcome, n: metrics.alertmanager.inbound.labels(outcome).inc(n),
            )

    async def run(self, http: aiohttp.ClientSession, handler: Handler | None) -> None:
        """The sink's sender and the inbox's consumer (when there is a handler), until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.sink.run, http)
            if self.inbox is not None and handler is not None:
                tg.start_soon(self.inbox.run, handler)

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
