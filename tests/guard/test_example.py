"""The README's example, examples/guarded_server.py, under a real uvicorn: a tool call, metrics, 503, drain."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import aiohttp
import anyio
import pytest
from mcp import Client

from examples.demo.harness import REPO
from tests.guard.servers import Uvicorn, poll_metric, scrape, uvicorn, value

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def lookup(url: str, query: str, seconds: float = 0.0) -> str:
    with anyio.fail_after(seconds + 20):
        async with Client(f"{url}/mcp") as client:
            # listed first, as clients do: after a call to a tool it has not listed, the SDK lists the tools to check
            # the result, a second request that the drain test's server may already have exited for (ConnectError)
            await client.list_tools()
            result = await client.call_tool("lookup", {"query": query, "seconds": seconds})
    assert not result.is_error, result
    return str(getattr(result.content[0], "text", ""))


async def raw_post(url: str, method: str = "ping") -> tuple[int, dict[str, str], str]:
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s,
        s.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": {}}, headers=headers) as r,
    ):
        return r.status, dict(r.headers), await r.text()


async def test_a_tool_call_its_metrics_and_a_503_at_capacity() -> None:
    with uvicorn(env={"GUARD_MAX_CONNECTIONS": "3"}) as server:
        assert await lookup(server.url, "books") == "result for 'books'"
        pid = str(server.pid)
        samples = await scrape(f"{server.url}/metrics")
        assert value(samples, "watchdog_guard_limiter_limit", name="downstream", pid=pid) == 8
        assert value(samples, "watchdog_guard_limiter_acquired_total", name="downstream") == 1
        assert value(samples, "watchdog_guard_connections_limit", name="http", pid=pid) == 3
        assert value(samples, "watchdog_guard_cancel_spin_scopes", pid=pid) == 0
        assert value(samples, "watchdog_guard_loop_lag_seconds", pid=pid) is not None
        assert value(samples, "watchdog_guard_draining", pid=pid) == 0

        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(lookup, server.url, f"slow{i}", 3.0)
            metrics = f"{server.url}/metrics"
            active = await poll_metric(metrics, "watchdog_guard_connections_active", 3, name="http", pid=pid)
            assert active == 3, "three slow calls should fill the connection limit"
            status, headers, text = await raw_post(server.url)
        body = json.loads(text)
        print(f"\nexample: at capacity a POST /mcp got {status}, Retry-After {headers.get('Retry-After')}: {body}")
        assert status == 503
        assert headers["Retry-After"] == "1"
        assert isinstance(body["error"], dict)
        assert body["error"]["code"] == -32000
        samples = await scrape(f"{server.url}/metrics")
        assert value(samples, "watchdog_guard_connections_rejected_total", name="http") == 1
        assert value(samples, "watchdog_guard_limiter_acquired_total", name="downstream") == 4


async def test_sigterm_drains_an_in_flight_call_refuses_new_sessions_and_exits() -> None:
    server = Uvicorn()
    try:
        server.wait_ready()
        async with anyio.create_task_group() as tg:
            answer: list[str] = []

            async def slow_call() -> None:
                answer.append(await lookup(server.url, "in flight", 2.0))

            tg.start_soon(slow_call)
            in_flight = await poll_metric(
                f"{server.url}/metrics", "watchdog_guard_limiter_in_flight", 1, name="downstream", pid=str(server.pid)
            )
            assert in_flight == 1
            sent = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):  # logged once the drain has begun: /ready is 503 from then on
                while "drain started (signal SIGTERM)" not in server.log_text():  # noqa: ASYNC110 - a log to poll
                    await anyio.sleep(0.05)
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s,
                s.get(f"{server.url}/ready") as r,
            ):
                ready = r.status
            status, headers, _ = await raw_post(server.url, "initialize")
            ping, ping_headers, _ = await raw_post(server.url, "ping")
        exit_code = await anyio.to_thread.run_sync(lambda: server.proc.wait(timeout=15))
        took = time.monotonic() - sent
        print(f"\ndrain: /ready {ready}, new session {status}, a call {ping}; in-flight call answered {answer}; "
              f"exited {took:.1f} s")  # fmt: skip
        assert ready == 503
        assert status == 503  # a new session is refused ...
        assert headers["Connection"] == "close"
        assert ping == 200  # ... a call is served (a lone server keeps accepting: see Drain), then closed
        assert ping_headers["Connection"] == "close"
        assert answer == ["result for 'in flight'"]
        assert took < 10, "the drain timeout of the example is 10 s"
        assert exit_code in (0, -signal.SIGTERM)
        assert "drain started (signal SIGTERM)" in server.log_text()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        with __import__("contextlib").suppress(subprocess.TimeoutExpired):
            server.proc.wait(timeout=5)
        server.stop()


def test_the_readme_shows_the_example_as_it_is() -> None:
    example = (REPO / "examples/guarded_server.py").read_text()
    body = example[example.index("from __future__") :]
    readme = (REPO / "README.md").read_text()
    shown = readme.split("<!-- examples/guarded_server.py -->\n```python\n", 1)[1].split("```", 1)[0]
    assert shown == body
