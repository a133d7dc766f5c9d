"""The shipped Prometheus rules: promtool checks and unit tests, every metric they name served by a live watchdog,
and a real Prometheus scraping a real watchdog and alerting through a real Alertmanager."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import psutil
import pytest
import yaml

from examples.demo.harness import free_port
from examples.demo.sidecar import Webhooks, watching
from tests.alerts.harness import (
    ALERTMANAGER_YML,
    PROMETHEUS_YML,
    RULES_YML,
    alertmanager_config,
    binary,
    running_alertmanager,
    running_prometheus,
)

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(120)]

RULES_TEST = RULES_YML.with_name("mcp-watchdog.rules.test.yml")
SELECTOR = re.compile(r"\b(watchdog_[a-z_]+)(\{[^}]*\})?")
MATCHER = re.compile(r'(\w+)="([^"]*)"')
FAMILY_ONLY = {
    # series appear with their first event: which rule (rule_firing) or which exception class (sampling_errors)
    # cannot be known before; the family is served from the start
    "watchdog_rule_firing": "labelled by the rule and pid that fire",
    "watchdog_sampling_errors_total": "its kind label is the exception class of the failure",
}
MISSING_PID = 4194303  # the top of Linux's pid range: a target that is never found


def test_promtool_checks_and_unit_tests_pass() -> None:
    promtool = binary("promtool", "prometheus")
    for argv in (["check", "rules", RULES_YML], ["test", "rules", RULES_TEST], ["check", "config", PROMETHEUS_YML]):
        proc = subprocess.run([promtool, *map(str, argv)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    amtool = binary("amtool", "prometheus-alertmanager")
    proc = subprocess.run([amtool, "check-config", str(ALERTMANAGER_YML)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES_YML.read_text())["groups"] for r in g["rules"]}
    tested = {
        t["alertname"]
        for case in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for t in case["alert_rule_test"]
        if t.get("exp_alerts")
    }
    assert alerts == tested


def _selectors() -> list[tuple[str, dict[str, str]]]:
    out = []
    for group in yaml.safe_load(RULES_YML.read_text())["groups"]:
        for rule in group["rules"]:
            for name, braces in SELECTOR.findall(rule["expr"]):
                out.append((name, dict(MATCHER.findall(braces or ""))))
    return out


@pytest.fixture
async def receiver() -> AsyncIterator[Webhooks]:
    async with Webhooks().serve() as hooks:
        yield hooks


def _watchdog_config(alertmanager_url: str) -> dict[str, Any]:
    assert not psutil.pid_exists(MISSING_PID)
    return {
        "targets": [{"name": "gone", "match": {"pid": MISSING_PID}}],
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "notify": {"alertmanagers": [{"url": alertmanager_url}], "resend_interval": "1s"},
        "log": {"format": "json", "level": "info"},
    }


async def test_every_metric_the_rules_name_is_served_by_a_live_watchdog() -> None:
    cfg = _watchdog_config(f"http://127.0.0.1:{free_port()}")
    async with watching(cfg) as wd, aiohttp.ClientSession() as http, http.get(f"{wd.url}/metrics") as r:
        text = await r.text()
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    for name, matchers in _selectors():
        assert name in families, f"{name} is not served on /metrics"
        if name in FAMILY_ONLY:
            continue
        wanted = [f'{k}="{v}"' for k, v in matchers.items() if k not in ("job", "instance")]
        found = [s for s in samples if re.match(rf"{name}[{{ ]", s) and all(w in s for w in wanted)]
        assert found, f"no series {name}{matchers} on /metrics: increase() would miss the first event"


async def test_prometheus_scrapes_the_watchdog_and_its_alert_reaches_alertmanager(receiver: Webhooks) -> None:
    am_cfg = alertmanager_config(receiver_url=receiver.url)
    async with running_alertmanager(am_cfg) as am, watching(_watchdog_config(am.url)) as wd:
        t0 = time.monotonic()
        async with running_prometheus(wd.listen, am.port):
            note = await receiver.wait_for(
                lambda n: any(a["labels"]["alertname"] == "McpWatchdogTargetMissing" for a in n["alerts"]), within=60
            )
            took = time.monotonic() - t0
        (alert,) = [a for a in note["alerts"] if a["labels"]["alertname"] == "McpWatchdogTargetMissing"]
        print(f"\nPrometheus up -> McpWatchdogTargetMissing delivered by Alertmanager in {took:.1f} s")
        assert alert["labels"]["job"] == "mcp-watchdog"
        assert alert["labels"]["target"] == "gone"
        assert alert["labels"]["instance"] == wd.listen
        assert alert["annotations"]["summary"] == f"mcp-watchdog on {wd.listen} finds no process for target gone"
