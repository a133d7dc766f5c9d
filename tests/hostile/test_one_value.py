"""One character must not crash the watchdog: CR/LF in a header value, a token, a probe header; zeros.

Before: an environment value ending in ``\\r`` (an EnvironmentFile edited on Windows) passed ``watchdog check``;
in a webhook header it killed the sidecar at its first notification (aiohttp's ``ValueError``, not caught), in
``drain_token`` it killed it mid-recycle, in a probe header it disabled the probe silently.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import psutil
import pytest
import yaml
from aiohttp import web

from examples.demo.harness import REPO, free_port
from tests.hostile.harness import Webhooks, sleeper
from watchdog.actions.notify import Notifier
from watchdog.actions.recycle import RecyclePlan, Recycler
from watchdog.config import Duration, HeaderValue, Webhook
from watchdog.discovery import WorkerId

pytestmark = pytest.mark.timeout(60)

CR = "s3cret-from-windows\r"


def check(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog", "check", "-c", str(config)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_check_names_file_line_and_key_of_each_cr(tmp_path: Path) -> None:
    probe = write(
        tmp_path / "probe.yaml",
        {"name": "p", "kind": "http", "url": "http://127.0.0.1:9/health", "headers": {"X-Probe": "${PROBE_H}"}},
    )
    cfg = write(
        tmp_path / "watchdog.yaml",
        {
            "targets": [
                {
                    "name": "app",
                    "match": {"pid": 1},
                    "probes": [str(probe)],
                    "recycle": {"drain_url": "http://127.0.0.1:9/drain", "drain_token": "${DRAIN_TOKEN}"},
                }
            ],
            "notify": {"webhooks": [{"url": "http://127.0.0.1:9/hook", "headers": {"X-Key": "${HOOK_KEY}"}}]},
        },
    )
    r = check(cfg, {"PROBE_H": CR, "DRAIN_TOKEN": CR, "HOOK_KEY": "ok\nX-Injected: 1"})
    print(r.stderr)
    assert r.returncode == 2
    drain = line_of(cfg, "drain_token")
    assert f"{cfg}:{drain}: targets[0].recycle.drain_token: contains a carriage return" in r.stderr
    assert f"{cfg}:{line_of(cfg, 'X-Key')}: notify.webhooks[0].headers.X-Key: contains a line feed" in r.stderr
    assert "s3cret" not in r.stderr  # the message says what is wrong, not the value
    # the probe files are read once the config itself is valid
    r = check(cfg, {"PROBE_H": CR, "DRAIN_TOKEN": "fine-t0ken", "HOOK_KEY": "fine"})
    print(r.stderr)
    assert r.returncode == 2
    assert f"{probe}:{line_of(probe, 'X-Probe')}: headers.X-Probe: contains a carriage return" in r.stderr


def test_check_refuses_zero_durations_and_says_why(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "watchdog.yaml",
        {
            "targets": [{"name": "app", "match": {"pid": 1}}],
            "intervals": {"process": "0s"},
            "budget": {"window": "0s"},
            "notify": {"webhooks": [{"url": "http://127.0.0.1:9/hook", "timeout": "0s"}]},
        },
    )
    r = check(cfg, {})
    print(r.stderr)
    assert r.returncode == 2
    assert "intervals.process: must be more than 0 (a zero interval runs the round back to back" in r.stderr
    assert "budget.window: must be more than 0 (a zero window counts nothing" in r.stderr
    assert "notify.webhooks[0].timeout: must be more than 0 (aiohttp reads a zero timeout as none)" in r.stderr


def test_check_warns_of_a_token_written_inline(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "watchdog.yaml",
        {
            "targets": [{"name": "app", "match": {"pid": 1}}],
            "server": {"token": "inline-t0ken-value"},
            "notify": {
                "webhooks": [
                    {"url": "http://127.0.0.1:9/h", "headers": {"Authorization": "Bearer x-inline", "X-Env": "prod"}}
                ]
            },
        },
    )
    r = check(cfg, {})
    assert r.returncode == 0, r.stderr
    assert f"warning: {cfg}:{line_of(cfg, 'token')}: server.token: a secret written inline" in r.stderr
    header = line_of(cfg, "Authorization")
    assert f"warning: {cfg}:{header}: notify.webhooks[0].headers.Authorization: a secret written inline" in r.stderr
    assert r.stderr.count("warning:") == 2  # X-Env is no secret
    assert "inline-t0ken-value" not in r.stderr + r.stdout


@pytest.mark.anyio
async def test_a_header_aiohttp_refuses_is_one_counted_failure_and_the_sender_goes_on() -> None:
    """The run-time guard behind the check: a value that slipped through (built in code, say) costs one delivery."""
    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    outcomes: list[str] = []
    sent = anyio.Event()

    def on_result(url: str, outcome: str) -> None:
        outcomes.append(outcome)
        if outcome == "sent":
            sent.set()

    url = f"http://127.0.0.1:{port}/hook"
    bad = Webhook(url=url, headers={"X-Key": HeaderValue(CR)}, timeout=Duration(2.0), retries=2)
    good = Webhook(url=url, timeout=Duration(2.0), retries=0)
    n = Notifier([bad, good], on_result=on_result, backoff=0.01)
    try:
        async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
            tg.start_soon(n.run, http)
            n.submit({"rule": "spin", "cmd": "--api-key=sk-live-abcdef"})
            with anyio.fail_after(10):
                await sent.wait()
            tg.cancel_scope.cancel()
    finally:
        await runner.cleanup()
    assert outcomes == ["failed", "sent"]
    assert n.stats.failed == 1
    assert n.stats.retried == 0  # the same request would fail the same way
    assert got == [{"rule": "spin", "cmd": "--api-key=***"}]


@pytest.mark.anyio
async def test_a_drain_token_aiohttp_refuses_does_not_stop_the_recycle() -> None:
    async with Webhooks().serve() as listening:  # a real listener: aiohttp refuses the header only when sending
        with sleeper() as worker:
            wid = WorkerId.of(psutil.Process(worker.pid))
            plan = RecyclePlan(drain_url=listening.url, drain_token=CR, drain_wait=0.2, grace=5)
            async with aiohttp.ClientSession() as http:
                out = await Recycler().recycle(wid, plan, http=http)
            worker.wait(5)
        assert listening.received == []
    steps = {s.name: s for s in out.steps}
    assert not steps["drain_url"].ok
    assert "not sent: ValueError" in steps["drain_url"].detail
    assert steps["SIGTERM"].ok
    assert out.outcome == "recycled"
    assert worker.returncode == -signal.SIGTERM


@pytest.mark.anyio
async def test_a_bearer_token_with_a_cr_is_a_failed_setup_not_a_silent_probe(tmp_path: Path) -> None:
    """``auth.bearer_env`` is read each time the probe runs, so it is checked then: a visible probe failure."""
    from watchdog.probes import load_probe, run_probe

    spec = load_probe(
        write(
            tmp_path / "probe.yaml",
            {"name": "p", "kind": "http", "url": "http://127.0.0.1:9/health", "auth": {"bearer_env": "PROBE_TOKEN"}},
        )
    )
    result = await run_probe(spec, env={"PROBE_TOKEN": CR})
    assert not result.ok
    assert result.failed_phase == "setup"
    assert result.reason is not None
    assert "PROBE_TOKEN (auth.bearer_env) contains a carriage return" in result.reason
    assert "s3cret" not in result.reason
