"""Probes against the real demo server (the official SDK under gunicorn): conformance and real faults.

Conformance is proven per protocol revision the SDK negotiates (the four handshake revisions and 2026-07-28)
on every transport the demo serves: stateless and stateful streamable HTTP, and SSE.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import psutil
import pytest

from examples.demo import inject
from examples.demo.harness import DemoServer, free_port
from tests.conftest import runnable_percent_over
from watchdog.config import Duration
from watchdog.probes import (
    HANDSHAKE_VERSIONS,
    MODERN_VERSIONS,
    ProbeResult,
    ProbeSpec,
    Timeouts,
    load_probe,
    run_probe,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ECHO = load_probe(REPO / "probes" / "demo-echo.yaml")
ALL_PROTOCOLS = ["auto", "legacy", "modern", *HANDSHAKE_VERSIONS, *MODERN_VERSIONS]
LEGACY_PHASES = ["initialize", "notifications/initialized", "tools/list", "tools/call", "session end"]
MODERN_PHASES = ["server/discover", "tools/list", "tools/call", "session end"]


def echo(**mcp: Any) -> ProbeSpec:
    assert ECHO.mcp is not None
    return replace(ECHO, mcp=replace(ECHO.mcp, **mcp))


def expected_version(protocol: str) -> str:
    if protocol in ("auto", "modern"):
        return MODERN_VERSIONS[-1]
    return HANDSHAKE_VERSIONS[-1] if protocol == "legacy" else protocol


def names(r: ProbeResult) -> list[str]:
    return [p.name for p in r.phases]


def timeouts(**seconds: float) -> Timeouts:
    return replace(ECHO.timeouts, **{k: Duration(v) for k, v in seconds.items()})


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS)
async def test_echo_passes_over_stateless_streamable_http(stateless_demo: DemoServer, protocol: str) -> None:
    r = await run_probe(echo(protocol=protocol), url=stateless_demo.mcp_url)
    assert r.ok, r.reason
    assert r.protocol_version == expected_version(protocol)
    assert r.worker_pid in stateless_demo.worker_pids()
    modern = r.protocol_version in MODERN_VERSIONS
    assert names(r) == (MODERN_PHASES if modern else LEGACY_PHASES)
    end = r.phase("session end")
    assert end is not None
    assert end.detail == (
        "protocol 2026-07-28 has no sessions; nothing to end"
        if modern
        else "no session id issued (stateless server); nothing to end"
    )
    assert r.session_id is None


@pytest.mark.parametrize("protocol", ["legacy", *HANDSHAKE_VERSIONS])
async def test_a_stateful_session_is_ended_and_really_gone(stateful_demo: DemoServer, protocol: str) -> None:
    r = await run_probe(echo(protocol=protocol), url=stateful_demo.mcp_url)
    assert r.ok, r.reason
    assert r.protocol_version == expected_version(protocol)
    assert r.worker_pid == stateful_demo.worker_pids()[0]
    assert names(r) == LEGACY_PHASES
    assert r.session_id is not None
    end = r.phase("session end")
    assert end is not None
    assert end.detail == f"session {r.session_id[:8]}… ended (HTTP 200)"
    # The server agrees: a request in that session is refused as an unknown session.
    headers = {
        "Accept": "application/json, text/event-stream",
        "Mcp-Session-Id": r.session_id,
        "MCP-Protocol-Version": r.protocol_version or "",
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with aiohttp.ClientSession() as s, s.post(stateful_demo.mcp_url, json=body, headers=headers) as resp:
        assert resp.status == 404
        assert "Session not found" in await resp.text()


async def test_modern_on_a_stateful_server_has_no_session(stateful_demo: DemoServer) -> None:
    r = await run_probe(echo(protocol="auto"), url=stateful_demo.mcp_url)
    assert r.ok, r.reason
    assert (r.protocol_version, r.session_id, names(r)) == ("2026-07-28", None, MODERN_PHASES)


@pytest.mark.parametrize("protocol", ["auto", "legacy", *HANDSHAKE_VERSIONS, *MODERN_VERSIONS])
async def test_echo_passes_over_sse(stateful_demo: DemoServer, protocol: str) -> None:
    r = await run_probe(echo(protocol=protocol, transport="sse"), url=stateful_demo.sse_url)
    assert r.ok, r.reason
    assert r.protocol_version == expected_version(protocol)
    assert r.worker_pid == stateful_demo.worker_pids()[0]
    modern = r.protocol_version in MODERN_VERSIONS
    assert names(r) == ["connect", *(MODERN_PHASES if modern else LEGACY_PHASES)]
    end = r.phase("session end")
    assert end is not None
    assert end.detail == f"closed the SSE stream (session {(r.session_id or '')[:8]}…)"


async def test_the_shipped_tools_list_and_http_probes_pass(stateless_demo: DemoServer) -> None:
    r = await run_probe(load_probe(REPO / "probes" / "tools-list.yaml"), url=stateless_demo.mcp_url)
    assert r.ok, r.reason
    tools_list = r.phase("tools/list")
    assert tools_list is not None
    assert tools_list.detail == "7 tools"
    r = await run_probe(load_probe(REPO / "probes" / "http-health.yaml"), url=f"{stateless_demo.url}/health")
    assert r.ok, r.reason
    assert r.worker_pid in stateless_demo.worker_pids()


async def test_an_unknown_tool(stateless_demo: DemoServer) -> None:
    # The official SDK answers a call to an unknown tool with an isError result, not a JSON-RPC error.
    r = await run_probe(echo(tool="nope", list_tools=False, match=None), url=stateless_demo.mcp_url)
    assert (r.failed_phase, r.reason) == ("tools/call", "tools/call: isError: true: Unknown tool: nope")
    # With list_tools the probe catches it one phase earlier, and says what is there.
    r = await run_probe(echo(tool="nope", match=None), url=stateless_demo.mcp_url)
    assert r.failed_phase == "tools/list"
    assert r.reason == (
        "tools/list: tool 'nope' is not listed (7 tools: echo, crunch, stubborn, leak, downstream, block, churn)"
    )


async def test_a_tool_error_is_reported_as_is_error(stateless_demo: DemoServer) -> None:
    r = await run_probe(echo(tool="crunch", arguments={"seconds": "abc"}, match=None), url=stateless_demo.mcp_url)
    assert r.failed_phase == "tools/call"
    assert r.reason is not None
    assert r.reason.startswith("tools/call: isError: true: Error executing tool crunch: 1 validation error")


async def test_a_result_that_does_not_match(stateless_demo: DemoServer) -> None:
    r = await run_probe(echo(arguments={"text": "hello"}), url=stateless_demo.mcp_url)
    assert r.failed_phase == "tools/call"
    assert r.reason is not None
    assert r.reason.startswith("tools/call: the result does not match 'watchdog-probe': ")


async def test_wrong_port_is_connection_refused() -> None:
    port = free_port()
    r = await run_probe(ECHO, url=f"http://127.0.0.1:{port}/mcp")
    assert (r.ok, r.failed_phase) == (False, "server/discover")
    assert r.reason == f"server/discover: connection refused (127.0.0.1:{port})"
    r = await run_probe(echo(transport="sse"), url=f"http://127.0.0.1:{port}/sse")
    assert r.reason == f"connect: connection refused (127.0.0.1:{port})"


async def test_a_blocked_worker_times_the_probe_out_in_the_right_phase(demo_one_worker: DemoServer) -> None:
    url = demo_one_worker.mcp_url
    fast = timeouts(initialize=1.0, call=1.0)
    # The tool call itself blocks the (only) worker: the call is what times out.
    r = await run_probe(replace(echo(tool="block", arguments={"seconds": 3}, match=None), timeouts=fast), url=url)
    assert (r.failed_phase, r.reason) == ("tools/call", "timeout in tools/call after 1.0 s")
    assert [p.ok for p in r.phases] == [True, True, False, True]
    await until_healthy(url)
    # A worker blocked by someone else: the probe cannot even start its session.
    pid = await inject.block(url, 6.0)
    assert pid == demo_one_worker.worker_pids()[0]
    r = await run_probe(replace(ECHO, timeouts=fast), url=url)
    assert (r.failed_phase, r.reason) == ("server/discover", "timeout in server/discover after 1.0 s")
    r = await run_probe(replace(echo(protocol="legacy"), timeouts=fast), url=url)
    assert (r.failed_phase, r.reason) == ("initialize", "timeout in initialize after 1.0 s")
    await until_healthy(url)


async def until_healthy(url: str, tries: int = 100) -> ProbeResult:
    """Probe every 0.25 s until the server passes again (bounded: at most ``tries`` probes)."""
    for _ in range(tries):
        if (r := await run_probe(ECHO, url=url)).ok:
            return r
        await anyio.sleep(0.25)
    raise AssertionError(f"the server did not recover: {r.reason}")


async def test_what_a_probe_sees_on_a_spinning_worker(demo_one_worker: DemoServer) -> None:
    """Recorded, not wished for: a worker spinning in _deliver_cancellation still answers probes.

    The loop keeps ticking between the re-armed callbacks, so a deep probe passes (a little slower) while
    the worker burns a core. That is why the sidecar also samples CPU and stacks.
    """
    url = demo_one_worker.mcp_url
    healthy = [(await run_probe(ECHO, url=url)).latency_s for _ in range(5)]
    pid = await inject.spin(url)
    cpu = await runnable_percent_over(pid, 2.0)  # running, or waiting for a core on a busy machine
    results = [await run_probe(ECHO, url=url) for _ in range(5)]
    print(
        f"\nspinning worker {pid} running or runnable {cpu:.0f} % of the time: probes "
        f"{['PASS' if r.ok else 'FAIL ' + (r.reason or '') for r in results]}, "
        f"latency {[round(r.latency_s * 1000, 1) for r in results]} ms "
        f"(healthy before: {[round(s * 1000, 1) for s in healthy]} ms)"
    )
    # on a loaded machine the spin gets less CPU than it wants: its loop thread is runnable all the time
    assert cpu > 80, cpu
    assert all(r.ok for r in results)
    assert {r.worker_pid for r in results} == {pid}


async def test_a_hundred_sequential_probes_leak_no_fd_and_no_task(stateless_demo: DemoServer) -> None:
    me = psutil.Process()
    url = stateless_demo.mcp_url
    async with aiohttp.ClientSession() as shared:
        for _ in range(5):  # warm up: the pool's first connections, lazy imports
            assert (await run_probe(ECHO, url=url, session=shared)).ok
        fds0, tasks0 = me.num_fds(), len(asyncio.all_tasks())
        results = [await run_probe(ECHO, url=url, session=shared) for _ in range(50)]
        fds1, tasks1 = me.num_fds(), len(asyncio.all_tasks())
    results += [await run_probe(ECHO, url=url) for _ in range(50)]  # each with its own session, closed after
    fds2, tasks2 = me.num_fds(), len(asyncio.all_tasks())
    print(f"\nfds {fds0} -> {fds1} (shared session) -> {fds2} (own sessions); tasks {tasks0} {tasks1} {tasks2}")
    assert all(r.ok for r in results)
    assert fds1 <= fds0 + 2
    assert fds2 <= fds0 + 2
    assert tasks0 == tasks1 == tasks2
