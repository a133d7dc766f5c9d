"""The watchdog's own Prometheus metrics (``watchdog_*``), on a registry of its own."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(namespace="watchdog", registry=r)
        self.workers = Gauge("watchdog_workers", "Live workers per target.", ["target"], registry=r)
        self.target_up = Gauge(
            "watchdog_target_discovered",
            "1 if the target's process was found on the last scan.",
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

    @staticmethod
    def remove_series(metric: Gauge, *labels: str) -> None:
        """Drop one labelled series (a worker that is gone), if it exists."""
        with contextlib.suppress(KeyError):
            metric.remove(*labels)
