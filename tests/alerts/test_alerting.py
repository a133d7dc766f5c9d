"""What becomes an alert: rule transitions, budget refusals and failed recycles; what resolves them."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from tests.agent import fakes
from watchdog.agent.alerting import Alerting, generator_url
from watchdog.agent.metrics import AgentMetrics
from watchdog.config import Config, load_config
from watchdog.errors import ConfigErrors
from watchdog.rules import load_rules
from watchdog.rules.spec import Rule


def _config(tmp_path: Path, extra: str = "") -> Config:
    (tmp_path / "watchdog.yaml").write_text(
        "targets: [{name: demo, match: {pid: 1}}]\n"
        "server: {listen: '0.0.0.0:9464', token: t0ken}\n"
        "notify: {alertmanagers: [{url: 'http://127.0.0.1:9'}], external_labels: {pod: pod-a, instance: pod-a}}\n"
        + extra
    )
    return load_config(tmp_path / "watchdog.yaml")


def _spin_rule() -> Rule:
    (rule,) = [r for r in load_rules([]).rules if r.name == "cancel-delivery-spin"]
    return rule


def test_rule_transitions_fire_and_resolve_alerts_and_a_gone_worker_resolves_all_of_its(tmp_path: Path) -> None:
    alerting = Alerting(_config(tmp_path), AgentMetrics())
    rule = _spin_rule()
    alerting.transition("demo", 41, rule, "firing", {"cpu_percent": 99.5, "stack_spin_confidence": 3.0})
    alerting.transition("demo", 42, rule, "pending", {"cpu_percent": 85.0})  # pending is not an alert
    (alert,) = alerting.sink.active().values()
    assert alert.labels == {
        "alertname": "cancel-delivery-spin",
        "severity": "critical",
        "target": "demo",
        "instance": "pod-a",
        "worker": "41",
    }
    assert alert.annotations["summary"] == "cancel-delivery-spin on demo worker 41"
    assert alert.annotations["advice"] == rule.advice
    assert "cpu_percent" in alert.annotations["evidence"]
    # the actuator's notifications: a budget refusal and a failed recycle are alerts of their own
    alerting.notification(
        {"status": "budget_denied", "target": "demo", "worker": 41, "rule": rule.name,
         "evidence": {"budget": "3 recycles in 15m already"}}
    )  # fmt: skip
    alerting.notification(
        {"status": "firing", "target": "demo", "worker": 43, "rule": rule.name,
         "evidence": {"recycle": {"outcome": "failed", "steps": [{"detail": "no replacement within 30 s"}]}}}
    )  # fmt: skip
    names = sorted(a.labels["alertname"] for a in alerting.sink.active().values())
    assert names == ["WatchdogBudgetRefused", "WatchdogRecycleFailed", "cancel-delivery-spin"]
    refused = next(a for a in alerting.sink.active().values() if a.labels["alertname"] == "WatchdogBudgetRefused")
    assert refused.annotations["evidence"] == "3 recycles in 15m already"
    # the rule resolving on worker 41 resolves its alert and the refusal that came of it
    alerting.transition("demo", 41, rule, "resolved", {"cpu_percent": 3.0})
    assert [a.labels["alertname"] for a in alerting.sink.active().values()] == ["WatchdogRecycleFailed"]
    alerting.worker_gone("demo", 43)
    assert alerting.sink.active() == {}


def test_generator_url_names_the_host_for_a_wildcard_listen(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    assert generator_url(cfg) == f"http://{os.uname().nodename}:9464/v1/status"
    assert Alerting(cfg, AgentMetrics()).inbox is None  # the inbound endpoint is off unless asked for


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("{url: 'http://am:9093', bearer_token: a, bearer_token_file: /f}", "not both"),
        ("{url: 'http://am:9093', username: u}", "basic auth needs"),
        ("{url: 'http://am:9093', cert_file: /c}", "mutual TLS needs"),
        ("{url: 'am:9093'}", "expected an http:// or https:// URL"),
    ],
)
def test_alertmanager_config_errors_say_what_is_wrong(tmp_path: Path, yaml: str, message: str) -> None:

    (tmp_path / "watchdog.yaml").write_text(
        f"targets: [{{name: demo, match: {{pid: 1}}}}]\nnotify:\n  alertmanagers: [{yaml}]\n"
    )
    with pytest.raises(ConfigErrors, match=message) as info:
        load_config(tmp_path / "watchdog.yaml")
    assert "watchdog.yaml:3" in str(info.value)


def test_pull_mode_needs_this_pods_name(tmp_path: Path) -> None:
    text = "targets: [{name: demo, match: {pid: 1}}]\nnotify:\n  alertmanagers: [{url: 'http://am:9093'}]\n"
    (tmp_path / "watchdog.yaml").write_text(text + "  pull_interval: 10s\n")
    with pytest.raises(ConfigErrors, match=r"needs notify\.external_labels\.pod"):
        load_config(tmp_path / "watchdog.yaml")
    (tmp_path / "watchdog.yaml").write_text(text + "  pull_interval: 10s\n  external_labels: {pod: pod-a}\n")
    assert load_config(tmp_path / "watchdog.yaml").notify.pull_interval == 10.0


@pytest.mark.anyio
async def test_a_recycled_worker_gets_resolved_on_the_webhook_and_in_the_alerts(tmp_path: Path) -> None:
    cfg, rules = fakes.config(tmp_path, notify={"alertmanagers": [{"url": "http://127.0.0.1:9"}]})
    with fakes.rig(cfg, rules) as r:
        async with anyio.create_task_group() as tg:
            r.agent.act_in(tg)
            bad, _ = r.table.spawn(), r.table.spawn()
            await r.tick()
            bad.cpu, bad.ignores_term = 1.0, True
            r.looks.by_pid[bad.id.pid] = fakes.look("spin")
            firing_alerts = 0
            for _ in range(8):
                await r.tick()
                firing_alerts = max(firing_alerts, len(r.agent.alerting.sink.active()))
        statuses = [(n["status"], n["rule"], n["target"], n["worker"]) for n in r.notes.sent]
        assert statuses == [
            ("firing", "cancel-delivery-spin", "demo", bad.id.pid),
            ("resolved", "cancel-delivery-spin", "demo", bad.id.pid),
        ]
        assert r.notes.sent[1]["evidence"]["resolved_because"] == f"worker {bad.id.pid} is gone"
        assert firing_alerts == 1
        assert r.agent.alerting.sink.active() == {}
