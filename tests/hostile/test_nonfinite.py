"""A ``+Inf`` sample on a target's /metrics, read by a rule that fires and notifies.

Before: ``/v1/status`` and the webhook body carried a bare ``Infinity``, which is not JSON (strict parsers, and
every receiver not written in Python or JavaScript, refuse the whole document).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from examples.demo.harness import free_port
from tests.hostile.harness import base_config, guarded, sleeper

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(120)]

RULES = """
rules:
  - name: unbounded
    when: {all: ["metric:demo_queue_seconds > 1"]}
    for: 0s
    actions: [notify]
"""


def strict(text: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: bare {name}")

    return json.loads(text, parse_constant=refuse)


@asynccontextmanager
async def target_and_receiver(pid: int) -> AsyncIterator[tuple[str, str, list[str]]]:
    bodies: list[str] = []

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=f'# TYPE demo_queue_seconds gauge\ndemo_queue_seconds{{pid="{pid}"}} +Inf\n')

    async def hook(request: web.Request) -> web.Response:
        bodies.append(await request.text())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{port}/hook", bodies
    finally:
        await runner.cleanup()


async def test_infinity_leaves_as_valid_json(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    with sleeper() as worker:
        async with target_and_receiver(worker.pid) as (metrics_url, hook_url, bodies):
            cfg = base_config(worker.pid, rules, metrics_url=metrics_url)
            cfg["intervals"]["metrics"] = "1s"
            cfg["notify"] = {"webhooks": [{"url": hook_url, "retries": 0}]}
            async with guarded(cfg) as (wd, _):
                with anyio.fail_after(60):
                    while not bodies:  # noqa: ASYNC110 - filled by the receiver's handler
                        await anyio.sleep(0.2)
                async with aiohttp.ClientSession() as http, http.get(f"{wd.url}/v1/status") as r:
                    status_body = await r.text()
    note = strict(bodies[0])
    status = strict(status_body)
    print(f"\nevidence in the webhook: {note['evidence']['signals']}")
    assert note["evidence"]["signals"]["metric:demo_queue_seconds"] == "inf"
    assert any(e["kind"] == "rule_firing" for e in status["events"])
