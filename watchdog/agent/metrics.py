"""The watchdog's own Prometheus metrics (``watchdog_*``), on a registry of its own."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector


class AlertmanagerMetrics:
    """``watchdog_alertmanager_*``: what the Alertmanager sink did (the ``SinkMetrics`` it reports to)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self._sent = Counter(
            "watchdog_alertmanager_alerts_sent_total",
            "Alerts accepted by an Alertmanager.",
            ["alertmanager"],
            registry=r,
        )
        self._failed = Counter(
            "watchdog_alertmanager_alerts_failed_total",
            "Alerts not delivered to an Alertmanager after every retry (active ones go again at the next resend).",
            ["alertmanager"],
            registry=r,
        )
        self._errors = Counter(
            "watchdog_alertmanager_request_errors_total",
            "Failed requests to an Alertmanager (each attempt, retries included).",
            ["alertmanager"],
            registry=r,
        )
        self._dropped = Counter(
            "watchdog_alertmanager_alerts_dropped_total",
            "Alerts dropped from a full send queue (the oldest go first).",
            ["alertmanager"],
            registry=r,
        )
        self._latency = Histogram(
            "watchdog_alertmanager_request_duration_seconds",
            "Duration of requests to an Alertmanager, failed ones included.",
            ["alertmanager"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.active = Gauge("watchdog_alertmanager_active_alerts", "Alerts the watchdog holds active.", registry=r)
        self.inbound = Counter(
            "watchdog_alertmanager_inbound_total",
            "Inbound alerts (POST /v1/alertmanager, or pulled) by outcome: accepted (handed to the actuator), "
            "duplicate, resolved, other_instance, unknown_target, invalid, overflow; and refused requests: "
            "unauthorized, bad_request, too_large, unsupported_media_type.",
            ["outcome"],
            registry=r,
        )

    def sent(self, alertmanager: str, n: int) -> None:
        self._sent.labels(alertmanager).inc(n)

    def failed(self, alertmanager: str, n: int) -> None:
        self._failed.labels(alertmanager).inc(n)

    def dropped(self, alertmanager: str, n: int) -> None:
        self._dropped.labels(alertmanager).inc(n)

    def request(self, alertmanager: str, seconds: float, ok: bool) -> None:
        self._latency.labels(alertmanager).observe(seconds)
        if not ok:
            self._errors.labels(alertmanager).inc()

    def set_active(self, n: int) -> None:
        self.active.set(n)

    def prepare(self, alertmanager: str) -> None:
        """Export every series at 0 from the start, so rules over rates see the first failure."""
        for family in (self._sent, self._failed, self._errors, self._dropped):
            family.labels(alertmanager)
        self._latency.labels(alertmanager)


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(namespace="watchdog", registry=r)
        self.workers = Gauge("watchdog_workers", "Live workers per target.", ["target"], registry=r)
        self.target_up = Gauge(
            "watchdog_target_discovered",
            "1 if the target's process was found on the last scan (0 before the first).",
            ["target"],
            registry=r,
        )
        self.signal = Gauge(
            "watchdog_signal_value", "Latest value of each signal per worker.", ["target", "pid", "signal"], registry=r
        )
        self.rule_state = Gauge(
            "watchdog_rule_firing",
            "1 while a rule fires for a worker (pid) or target (pid='').",
            ["target", "rule", "pid"],
            registry=r,
        )
        self.rule_transitions = Counter(
            "watchdog_rule_transitions_total", "Rule state changes, by new state.", ["rule", "state"], registry=r
        )
        self.actions = Counter(
            "watchdog_actions_total",
            "Actions by kind and outcome (dry_run counts what would have happened).",
            ["action", "outcome"],
            registry=r,
        )
        self.budget_denied = Counter(
            "watchdog_budget_denied_total", "Recycles the safety budget refused.", ["target"], registry=r
        )
        self.sampling_errors = Counter(
            "watchdog_sampling_errors_total", "Failed samples by source and kind.", ["source", "kind"], registry=r
        )
        self.notifications = Counter(
            "watchdog_notifications_total",
            "Webhook deliveries by outcome: sent, failed, dropped (queue full), discarded (unsent at shutdown).",
            ["outcome"],
            registry=r,
        )
        for outcome in ("sent", "failed", "dropped", "discarded"):
            self.notifications.labels(outcome)  # present at 0 from the start: a rate() needs the series to exist
        self.loop_lag = Gauge(
            "watchdog_loop_lag_seconds",
            "Worst lag of the watchdog's own event loop within the last minute (the same for every scraper).",
            registry=r,
        )
        self.http_connections = Gauge(
            "watchdog_http_connections", "Connections open to the watchdog's own HTTP server.", registry=r
        )
        self.http_closed = Counter(
            "watchdog_http_connections_closed_total",
            "Connections the watchdog's server closed to protect itself: evicted (idle at the cap), refused (cap "
            "reached, all busy), header_timeout (no request in time), handler_timeout (no answer in time).",
            ["reason"],
            registry=r,
        )
        self.stack_seconds = Counter(
            "watchdog_stack_sampling_seconds_total", "Wall time spent sampling stacks.", registry=r
        )
        self.paused = Gauge("watchdog_paused", "1 while the pause switch holds every action to a dry run.", registry=r)
        self.stack_looks = Counter(
            "watchdog_stack_looks_total",
            "Stack looks taken, by why (stalled, changed, hot, baseline).",
            ["reason"],
            registry=r,
        )
        self.locals_series = Counter(
            "watchdog_stack_locals_series_total",
            "Series of py-spy dump --locals taken to tell a spin from timeout churn (each costs 0.1-0.4 s of CPU).",
            registry=r,
        )
        self.locals_cpu = Counter(
            "watchdog_stack_locals_cpu_seconds_total", "CPU seconds those series cost (py-spy's).", registry=r
        )
        self.alertmanager = AlertmanagerMetrics(r)

    def looked(self, locals_cpu_s: float) -> None:
        """A stack look ended; ``locals_cpu_s`` is what its ``--locals`` series cost (0.0: none was taken)."""
        if locals_cpu_s:
            self.locals_series.inc()
            self.locals_cpu.inc(locals_cpu_s)

    @staticmethod
    def remove_series(metric: Gauge, *labels: str) -> None:
        """Drop one labelled series (a worker that is gone), if it exists."""
        with contextlib.suppress(KeyError):
            metric.remove(*labels)
