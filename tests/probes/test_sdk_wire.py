"""Wire cases the demo does not have, against the official SDK's own server (in-process, over real HTTP).

A server with no tools at all, one that answers plain JSON instead of SSE, and a tool whose parameters must
be mirrored into ``Mcp-Param-*`` headers at 2026-07-28: the SDK server validates each, so passing here is
conformance, not agreement with ourselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.probes.servers import SdkServer
from watchdog.probes import McpProbe, ProbeSpec, WorkerPid, run_probe

pytestmark = pytest.mark.anyio

mcp_types = pytest.importorskip("mcp_types", reason="the official MCP SDK (mcp) is not installed")
lowlevel = pytest.importorskip("mcp.server.lowlevel", reason="the official MCP SDK (mcp) is not installed")

ROUTE_SCHEMA = {
    "type": "object",
    "properties": {"region": {"type": "string", "x-mcp-header": "Region"}, "n": {"type": "integer"}},
}


async def _list_tools(ctx: Any, params: Any) -> Any:
    return mcp_types.ListToolsResult(tools=[mcp_types.Tool(name="route", input_schema=ROUTE_SCHEMA)])


async def _call_tool(ctx: Any, params: Any) -> Any:
    text = f"routed to {params.arguments['region']}"
    return mcp_types.CallToolResult(
        content=[mcp_types.TextContent(type="text", text=text)], structured_content={"worker": {"pid": 4242}}
    )


@pytest.fixture(scope="module")
def bare() -> Iterator[SdkServer]:
    """An SDK server that registers no handlers: it has no tools/list or tools/call at all."""
    with SdkServer(lowlevel.Server("bare")) as server:
        yield server


@pytest.fixture(scope="module")
def plain_json() -> Iterator[SdkServer]:
    """Stateful, answering every request with plain JSON (``json_response=True``), one annotated tool."""
    server = lowlevel.Server("plain-json", on_list_tools=_list_tools, on_call_tool=_call_tool)
    with SdkServer(server, json_response=True) as running:
        yield running


def spec(url: str, **mcp: Any) -> ProbeSpec:
    return ProbeSpec(name="sdk", kind="mcp", url=url, mcp=McpProbe(**mcp), worker_pid=WorkerPid(json="worker.pid"))


@pytest.mark.parametrize(
    ("protocol", "reason"),
    [
        ("auto", "tools/list: JSON-RPC error -32601 Method not found: tools/list (HTTP 404)"),
        ("legacy", "tools/list: JSON-RPC error -32601 Method not found: tools/list"),
    ],
)
async def test_a_server_without_tools_gives_the_json_rpc_error(bare: SdkServer, protocol: str, reason: str) -> None:
    r = await run_probe(spec(bare.url, list_tools=True, protocol=protocol), url=bare.url)
    assert (r.failed_phase, r.reason) == ("tools/list", reason)


@pytest.mark.parametrize("protocol", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"])
async def test_plain_json_answers_and_mirrored_parameter_headers(plain_json: SdkServer, protocol: str) -> None:
    args = {"region": "eu west", "n": 3}
    r = await run_probe(spec(plain_json.url, tool="route", arguments=args, list_tools=True, protocol=protocol))
    assert r.ok, r.reason
    assert (r.protocol_version, r.worker_pid) == (protocol, 4242)
    if protocol == "2026-07-28":
        assert r.session_id is None
    else:
        end = r.phase("session end")
        assert end is not None
        assert r.session_id is not None
        assert end.detail == f"session {r.session_id[:8]}… ended (HTTP 200)"


async def test_without_the_tool_schema_parameter_headers_cannot_be_mirrored(plain_json: SdkServer) -> None:
    r = await run_probe(spec(plain_json.url, tool="route", arguments={"region": "eu"}, protocol="modern"))
    assert r.failed_phase == "tools/call"
    assert r.reason == (
        "tools/call: JSON-RPC error -32020 Mcp-Param-Region header is missing but the request body's 'region' "
        "argument is present (HTTP 400); set 'list_tools: true' so the probe can mirror the tool's x-mcp-header "
        "parameters"
    )
