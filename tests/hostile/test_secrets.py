"""Secrets in a worker's argv, in URLs and in ``${ENV}`` values never leave the watchdog.

Before: the diagnosis attached to every notification carried the worker's full command line (``--api-key=sk-live-…``
and ``postgres://app:pass@…`` went to the webhook); a webhook URL with its key in the path was logged on each
failed delivery; tokens in URL queries appeared in ``/v1/status``, logs and webhooks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import anyio
import pytest

from examples.demo.harness import REPO
from tests.conftest import py_spy_path
from tests.hostile.harness import Webhooks, base_config, guarded, no_secret_in, sleeper, status_text

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(120)]

API_KEY = "sk-live-4f3a9b2c1d8e7f60"
DB_PASSWORD = "pa55word-db-7781"
HOOK_TOKEN = "hook-env-secret-5521"
PATH_KEY = "T0ABC/B0DEF/path-key-9913"
QUERY_TOKEN = "metrics-query-secret-4410"
SECRETS = (API_KEY, DB_PASSWORD, HOOK_TOKEN, PATH_KEY, QUERY_TOKEN)

RULES = """
rules:
  - name: alive
    when: {all: ["rss_bytes > 0"]}
    for: 0s
    actions: [diagnose, notify]
"""


def diagnose(pid: int, *extra: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "watchdog", "diagnose", str(pid), "--json", "--duration", "0.5", *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode in (0, 1), r.stderr
    return r.stdout


async def test_no_secret_reaches_a_webhook_the_status_the_log_or_diagnose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    py_spy_path()  # the diagnosis (which carries the command line) needs py-spy; skip, naming it, if absent
    monkeypatch.setenv("HOOK_TOKEN", HOOK_TOKEN)
    monkeypatch.setenv("PATH_KEY", PATH_KEY)
    marker = f"--marker=hostile-{uuid.uuid4().hex[:8]}"
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    argv = (marker, f"--api-key={API_KEY}", "--db", f"postgres://app:{DB_PASSWORD}@db.internal:5432/app")
    async with Webhooks().serve() as hooks:
        with sleeper(*argv) as worker:
            cfg = base_config(worker.pid, rules, metrics_url=f"http://127.0.0.1:9/metrics?token={QUERY_TOKEN}")
            cfg["targets"][0]["match"] = {"cmdline": marker}  # discovery logs the command line it matched
            cfg["notify"] = {
                "webhooks": [
                    {"url": hooks.url, "headers": {"Authorization": "Bearer ${HOOK_TOKEN}"}, "retries": 0},
                    {"url": "http://127.0.0.1:9/hook/${PATH_KEY}", "retries": 0},  # fails, and is logged
                ]
            }
            async with guarded(cfg) as (wd, _):
                note = await hooks.wait_for(lambda n: "diagnosis" in n["evidence"], within=60)
                status = await wd.wait_status(lambda s: s["targets"][0]["metrics_error"] is not None, within=30)
                with anyio.fail_after(30):
                    # the dead webhook's failure, URL and all, is logged; the log is a file: polled, bounded
                    while "failed after" not in wd.log():  # noqa: ASYNC110
                        await anyio.sleep(0.2)
                log = wd.log()
            hidden = diagnose(worker.pid)
            shown = diagnose(worker.pid, "--show-secrets")
    payloads = json.dumps(hooks.received)
    no_secret_in(SECRETS, webhooks=payloads, status=status_text(status), log=log, diagnose_json=hidden)
    # what was there to hide was there, and the hiding is visible
    cmdline = note["evidence"]["diagnosis"]["cmdline"]
    print(f"\nredacted cmdline in the webhook: {cmdline}")
    assert f"--api-key={API_KEY}" in shown
    assert "--api-key=***" in cmdline
    assert "postgres://***@db.internal:5432/app" in cmdline
    assert "token=***" in status["targets"][0]["metrics_error"]
    assert "matched pid" in log
    (matched,) = status["targets"][0]["matched"]  # the cmdline match says what it adopted, secrets hidden
    assert matched.startswith(f"pid {worker.pid} (")
    assert "--api-key=***" in matched
