"""The watchdog's HTTP server with a token: everything but /healthz and /metrics needs the bearer token;
without a token a loopback listener is open and any other listener is refused before it starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from examples.demo.harness import free_port
from watchdog.agent import server
from watchdog.agent.wiring import build_agent, load_everything
from watchdog.config.model import is_loopback

pytestmark = pytest.mark.anyio


def _config(tmp_path: Path, server_yaml: str) -> Path:
    path = tmp_path / "watchdog.yaml"
    path.write_text(f"targets:\n  - name: me\n    match: {{pid: 1}}\n    workers: self\nserver: {server_yaml}\n")
    return path


async def test_a_token_guards_status_but_not_healthz_or_metrics(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    agent = build_agent(load_everything(_config(tmp_path, f"{{listen: '{listen}', token: s3cret}}")))
    runner = await server.start(agent, listen)
    try:
        async with aiohttp.ClientSession() as http:
            codes = {}
            for path, auth in [
                ("/v1/status", None),
                ("/v1/status", "Bearer wrong"),
                ("/v1/status", "s3cret"),
                ("/v1/status", "Bearer s3cret"),
                ("/v1/anything-added-later", None),
                ("/healthz", None),
                ("/metrics", None),
            ]:
                headers = {"Authorization": auth} if auth else {}
                async with http.get(f"http://{listen}{path}", headers=headers) as r:
                    codes[(path, auth)] = r.status
                    if r.status == 401:
                        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    finally:
        await runner.cleanup()
    assert codes == {
        ("/v1/status", None): 401,
        ("/v1/status", "Bearer wrong"): 401,
        ("/v1/status", "s3cret"): 401,
        ("/v1/status", "Bearer s3cret"): 200,
        ("/v1/anything-added-later", None): 401,  # covered before it exists: 401, not 404
        ("/healthz", None): 200,
        ("/metrics", None): 200,
    }


async def test_without_a_token_a_loopback_listener_is_open(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    agent = build_agent(load_everything(_config(tmp_path, f"{{listen: '{listen}'}}")))
    runner = await server.start(agent, listen)
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://{listen}/v1/status") as r:
            assert r.status == 200
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:9464", True),
        ("127.8.9.10:1", True),
        ("[::1]:9464", True),
        ("localhost:9464", True),
        ("0.0.0.0:9464", False),
        ("[::]:9464", False),
        ("10.1.2.3:9464", False),
        ("pod.example:9464", False),
    ],
)
def test_what_counts_as_loopback(listen: str, loopback: bool) -> None:
    assert is_loopback(listen) is loopback


def test_run_refuses_an_open_listen_override_without_a_token(tmp_path: Path) -> None:
    config = _config(tmp_path, "{listen: '127.0.0.1:9'}")
    proc = subprocess.run(
        [sys.executable, "-m", "watchdog", "run", "-c", str(config), "--listen", "0.0.0.0:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--listen: listen '0.0.0.0:9' is not a loopback address" in proc.stderr
    assert "set server.token" in proc.stderr
