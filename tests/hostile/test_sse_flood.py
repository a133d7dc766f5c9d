"""An MCP server on the SSE transport whose stream is an endless flood of blank lines.

Before: the SSE parser was quadratic in the lines of a chunk; the flood stalled the watchdog's loop ~6 s per probe
round and stretched a 5 s phase timeout to 11.8 s. The parser fix is issue 14's "linear SSE parsing" (helper
"probes"); this test holds the sidecar to it end to end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from examples.demo.harness import free_port
from tests.hostile.harness import base_config, guarded, log_rule, sleeper

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(120)]

BLANKS = b"\n" * 65536


@asynccontextmanager
async def flood() -> AsyncIterator[str]:
    """``GET /sse``: an event stream of nothing but blank lines, as fast as the client reads."""

    async def sse(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            while True:
                await resp.write(BLANKS)
        except (ConnectionResetError, ConnectionError):
            pass
        return resp

    app = web.Application()
    app.router.add_get("/sse", sse)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/sse"
    finally:
        await runner.cleanup()


async def test_a_blank_line_flood_neither_stalls_the_loop_nor_stretches_the_timeout(tmp_path: Path) -> None:
    async with flood() as url:
        probe = tmp_path / "probe.yaml"
        probe.write_text(
            yaml.safe_dump(
                {
                    "name": "flooded",
                    "kind": "mcp",
                    "url": url,
                    "mcp": {"transport": "sse", "list_tools": True},
                    "timeouts": {"connect": "5s", "total": "10s"},
                }
            )
        )
        with sleeper() as worker:
            cfg = base_config(worker.pid, log_rule(tmp_path), probes=[str(probe)])
            cfg["intervals"]["probes"] = "2s"
            async with guarded(cfg) as (wd, watch):
                status = await wd.wait_status(lambda s: s["targets"][0]["last_probe"] is not None, within=60)
                await wd.wait_status(lambda s: s["uptime_seconds"] > 20, within=60)  # several rounds of the flood
    probe_result = status["targets"][0]["last_probe"]
    print(f"probe: {probe_result['reason']}; {watch.summary()}")
    assert probe_result["ok"] is False  # the failure is visible
    phases = probe_result["probes"][0]
    assert phases["latency_s"] < 5 + 2, f"the 5 s connect phase took {phases['latency_s']} s"
