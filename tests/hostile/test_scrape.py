"""A target's /metrics that is 50 MB, or never ends: cut off while streaming, shown as the target's state.

Before: ``await resp.text()`` then parsing on the event loop; 50 MB froze the loop ~44 s per scrape and took the
RSS to 1.1 GB; an endless page reached 2.7 GB within the 5 s timeout.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from examples.demo.harness import free_port
from tests.hostile.harness import base_config, guarded, log_rule, sleeper, watching

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(120)]

LINE = b'demo_requests_total{pid="1",path="/a/very/long/path/to/make/lines/longer"} 12345\n'
CHUNK = LINE * (65536 // len(LINE))


class HostileMetrics:
    """A /metrics server on 127.0.0.1: ``/huge`` streams 50 MB of valid text (chunked, no length), ``/endless``
    streams forever; both count what they sent, so the test can say how much the watchdog read."""

    def __init__(self) -> None:
        self.sent = 0
        self.url = ""

    async def _stream(self, request: web.Request, limit: int | None) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; version=0.0.4"})
        await resp.prepare(request)
        written = 0
        try:
            while limit is None or written < limit:
                await resp.write(CHUNK)
                written += len(CHUNK)
                self.sent += len(CHUNK)
        except (ConnectionResetError, ConnectionError):
            pass  # the watchdog hung up: what the test wants
        return resp

    async def huge(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, 50 * 10**6)

    async def endless(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, None)

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[HostileMetrics]:
        app = web.Application()
        app.router.add_get("/huge", self.huge)
        app.router.add_get("/endless", self.endless)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            await runner.cleanup()


@pytest.mark.parametrize("path", ["huge", "endless"])
async def test_an_oversized_metrics_page_is_cut_off_and_shown(tmp_path: Path, path: str) -> None:
    async with HostileMetrics().serve() as server:
        with sleeper() as worker:
            cfg = base_config(worker.pid, log_rule(tmp_path), metrics_url=f"{server.url}/{path}")
            cfg["intervals"]["metrics"] = "5s"  # a 5 s scrape timeout, as in production: the cap must act first
            async with guarded(cfg) as (wd, watch):
                status = await wd.wait_status(
                    lambda s: "metrics body over 4 MiB" in (s["targets"][0]["metrics_error"] or ""), within=60
                )
                # and again on the next round: the watchdog keeps scraping, and keeps refusing
                scrapes_before = server.sent
                await wd.wait_status(lambda s: server.sent > scrapes_before, within=30)
                events = [e for e in wd.events() if e.get("kind") == "metrics_down"]
    error = status["targets"][0]["metrics_error"]
    print(f"{path}: {error}; the server wrote {server.sent / 2**20:.0f} MiB in all ({watch.summary()})")
    assert events, "no metrics_down event"
    assert "metrics body over 4 MiB" in events[0]["message"]


async def test_sigterm_mid_scrape_stops_the_watchdog_within_2_s(tmp_path: Path) -> None:
    """Before: SIGTERM during the parse of a 50 MB page took 33.9 s (the unit's TimeoutStopSec is 20 s)."""
    async with HostileMetrics().serve() as server:
        with sleeper() as worker:
            cfg = base_config(worker.pid, log_rule(tmp_path), metrics_url=f"{server.url}/huge")
            cfg["intervals"]["metrics"] = "1s"  # scraping nearly all the time
            async with watching(cfg) as wd:
                await wd.wait_status(lambda s: s["targets"][0]["metrics_error"] is not None, within=60)
                sent = server.sent
                await wd.wait_status(lambda s: server.sent > sent, within=30)  # a scrape is under way
                assert wd.proc is not None
                start = time.monotonic()
                wd.proc.send_signal(signal.SIGTERM)
                code = await anyio.to_thread.run_sync(wd.proc.wait, 20)
                took = time.monotonic() - start
    print(f"\nSIGTERM mid-scrape: exited with {code} after {took:.2f} s")
    assert code == 0
    assert took < 2.0
