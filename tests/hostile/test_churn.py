"""Worker churn: a supervisor whose workers live half a second each. The watchdog's own /metrics must not keep a
series for every worker that ever lived.

Before: ``watchdog_rule_firing`` kept a series (set to 0) for every dead worker: 532 series over 76 pids in 40 s.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest

from tests.hostile.harness import base_config, guarded, log_rule, metrics_text

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(120)]

SUPERVISOR = """
import subprocess, sys, time
while True:
    kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.6)"]) for _ in range(2)]
    for k in kids:
        k.wait()
"""
CHURN = 15
"""Distinct workers to see come and go."""


@pytest.fixture
def supervisor() -> Iterator[subprocess.Popen[bytes]]:
    sup = subprocess.Popen([sys.executable, "-c", SUPERVISOR])
    try:
        yield sup
    finally:
        try:
            kids = psutil.Process(sup.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            kids = []
        sup.kill()
        for k in kids:
            with contextlib.suppress(psutil.NoSuchProcess):
                k.kill()
        sup.wait(10)


def pids_in(metrics: str, name: str) -> set[str]:
    return {p for p in re.findall(rf'^{name}\{{[^}}]*pid="(\d+)"', metrics, re.MULTILINE)}


async def test_series_of_dead_workers_are_removed(tmp_path: Path, supervisor: subprocess.Popen[bytes]) -> None:
    cfg = base_config(supervisor.pid, log_rule(tmp_path))
    cfg["targets"][0]["workers"] = "children"
    cfg["intervals"]["process"] = "0.2s"
    async with guarded(cfg) as (wd, _):
        with anyio.fail_after(90):
            while sum(e.get("kind") == "worker_gone" for e in wd.events()) < CHURN:  # noqa: ASYNC110 - a log file
                await anyio.sleep(0.5)
        metrics = await metrics_text(wd)
        status = await wd.status()
        firing_seen = sum(e.get("kind") == "rule_firing" for e in wd.events())
    live = {str(w["pid"]) for w in status["targets"][0]["workers"]}
    firing = pids_in(metrics, "watchdog_rule_firing")
    signals = pids_in(metrics, "watchdog_signal_value")
    print(f"\nrule firing on {firing_seen} workers in all; series now for pids {sorted(firing)}, live {sorted(live)}")
    assert firing_seen >= CHURN  # the rule did fire on the workers that came and went
    # at most the live workers and those that changed between the scrape and the status (two per generation)
    assert len(firing) <= 4
    assert len(signals) <= 4
