"""What servers nobody here wrote do on the wire, re-enacted by tiny servers: each must pass, or fail plainly.

Priming events with empty data (2025-11-25 servers with an event store), SSE polling (a stream closed cleanly,
resumed with GET and ``Last-Event-ID`` after ``retry:``), ``notifications/cancelled`` for a timed-out request,
the TypeScript SDK's ``sessionId`` on the SSE transport, and a pinned revision the server does not speak.
The real servers (the TypeScript reference server, FastMCP) are in ``test_peers.py``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest
from aiohttp import web

from tests.probes.servers import legacy_server, tiny_server
from tests.probes.test_bad_servers import failed, spec
from watchdog.probes import ProbeResult, ProbeSpec, run_probe

pytestmark = pytest.mark.anyio

PRIMING = b"id: prime-1\nretry: 200\ndata: \n\n"


def sse_response(request: web.Request) -> web.StreamResponse:
    return web.StreamResponse(headers={"Content-Type": "text/event-stream", "Mcp-Session-Id": "s-1"})


async def test_a_priming_event_with_empty_data_is_skipped() -> None:
    legacy = legacy_server(lambda m: _never())

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405)
        message = json.loads(await request.read())
        if message.get("method") not in ("initialize", "tools/call"):
            return await legacy(request)
        result = {"content": [{"type": "text", "text": "hi"}]} if message["method"] == "tools/call" else None
        answer = {"jsonrpc": "2.0", "id": message["id"], "result": result or legacy_init()}
        resp = sse_response(request)
        await resp.prepare(request)
        await resp.write(PRIMING + b"event: message\nid: 2\ndata: " + json.dumps(answer).encode() + b"\n\n")
        await resp.write_eof()
        return resp

    r = await probe_url(handler, spec())
    assert r.ok, r.reason
    assert [p.name for p in r.phases if p.ok][-2:] == ["tools/call", "session end"]


async def test_a_gracefully_closed_stream_is_resumed_with_last_event_id_after_retry() -> None:
    gets: list[tuple[str | None, float]] = []
    closed_at: list[float] = []
    legacy = legacy_server(lambda m: _never())
    pending: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            gets.append((request.headers.get("Last-Event-ID"), time.monotonic()))
            resp = sse_response(request)
            await resp.prepare(request)
            if len(gets) == 1:  # the first resumption: the server polls once more, with a new id and no answer
                await resp.write(b"id: prime-2\ndata: \n\n")
            else:
                answer = {"jsonrpc": "2.0", "id": pending[0], "result": {"content": [{"type": "text", "text": "ok"}]}}
                await resp.write(b"event: message\nid: 9\ndata: " + json.dumps(answer).encode() + b"\n\n")
            await resp.write_eof()
            return resp
        if request.method == "DELETE":
            return web.Response(status=405)
        message = json.loads(await request.read())
        if message.get("method") != "tools/call":
            return await legacy(request)
        pending.append(message["id"])
        resp = sse_response(request)
        await resp.prepare(request)
        await resp.write(PRIMING)
        await resp.write_eof()
        closed_at.append(time.monotonic())
        return resp

    r = await probe_url(handler, spec(protocol="legacy"))
    assert r.ok, r.reason
    assert [g[0] for g in gets] == ["prime-1", "prime-2"]
    assert gets[0][1] - closed_at[0] >= 0.19  # retry: 200 was honoured (it carries over to the second stream)
    assert gets[1][1] - gets[0][1] >= 0.19


async def test_a_stream_that_cannot_be_resumed_fails_plainly() -> None:
    legacy = legacy_server(lambda m: _never())

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405, text="no GET here")
        message = json.loads(await request.read())
        if message.get("method") != "tools/call":
            return await legacy(request)
        resp = sse_response(request)
        await resp.prepare(request)
        await resp.write(b"id: p\nretry: 10\ndata: \n\n" if message["id"] % 2 else b": no id, nothing to resume\n\n")
        await resp.write_eof()
        return resp

    r = await probe_url(handler, spec(protocol="legacy", list_tools=True))  # tools/call is request 3: an id
    assert failed(r) == (
        "tools/call",
        "tools/call: the server closed the answer's SSE stream and refused to resume it "
        "(GET with Last-Event-ID 'p': HTTP 405: no GET here)",
    )
    r = await probe_url(handler, spec(protocol="legacy"))  # tools/call is request 2: no id to resume from
    assert failed(r) == ("tools/call", "tools/call: the SSE stream ended before the answer to request 2")


async def test_a_retry_longer_than_the_time_left_fails_at_once_and_says_so() -> None:
    legacy = legacy_server(lambda m: _never())

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405)
        message = json.loads(await request.read())
        if message.get("method") != "tools/call":
            return await legacy(request)
        resp = sse_response(request)
        await resp.prepare(request)
        await resp.write(b"id: p\nretry: 30000\ndata: \n\n")
        await resp.write_eof()
        return resp

    t0 = time.monotonic()
    r = await probe_url(handler, spec(protocol="legacy"))
    assert time.monotonic() - t0 < 1.0  # not the call's 1 s timeout: the wait was refused up front
    assert r.reason is not None
    assert r.reason.startswith(
        "tools/call: the server closed the answer's SSE stream and asks to wait 30 s before resuming it "
        "(retry: 30000), longer than the "
    ), r.reason


async def test_a_timed_out_call_is_cancelled_before_the_session_ends() -> None:
    seen: list[str] = []
    cancelled: list[dict[str, Any]] = []
    legacy = legacy_server(lambda m: _never())

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            seen.append("DELETE")
            return web.Response(status=200)
        message = json.loads(await request.read())
        seen.append(message["method"])
        if message["method"] == "notifications/cancelled":
            cancelled.append(message["params"])
            return web.Response(status=202)
        resp = await legacy(request)
        resp.headers["Mcp-Session-Id"] = "s-1"
        return resp

    r = await probe_url(handler, spec(protocol="legacy", list_tools=True))
    assert failed(r) == ("tools/call", "timeout in tools/call after 1.0 s")
    assert seen[-2:] == ["notifications/cancelled", "DELETE"]
    assert cancelled[0]["requestId"] == 3  # initialize 1, tools/list 2, tools/call 3
    assert "tools/call" in cancelled[0]["reason"]
    end = r.phase("session end")
    assert end is not None
    assert end.ok
    assert end.detail == "cancelled request 3 (tools/call); session s-1… ended (HTTP 200)"


async def test_the_typescript_sdks_session_id_parameter_on_the_sse_transport() -> None:
    queue: list[dict[str, Any]] = []
    wake = anyio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal wake
        if request.method == "GET":
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(b"event: endpoint\ndata: /sse?sessionId=ts-session-42\n\n")
            while True:
                await wake.wait()
                wake = anyio.Event()
                while queue:
                    await resp.write(b"event: message\ndata: " + json.dumps(queue.pop(0)).encode() + b"\n\n")
        assert request.query.get("sessionId") == "ts-session-42"
        message = json.loads(await request.read())
        if "id" in message:
            result = (
                legacy_init()
                if message["method"] == "initialize"
                else {"tools": [{"name": "echo"}]}
                if message["method"] == "tools/list"
                else {"content": [{"type": "text", "text": "ok"}]}
            )
            queue.append({"jsonrpc": "2.0", "id": message["id"], "result": result})
            wake.set()
        return web.Response(status=202)

    async with tiny_server(handler, path="/sse") as url:
        r = await run_probe(spec(transport="sse", protocol="legacy"), url=url)
    assert r.ok, r.reason
    assert r.session_id == "ts-session-42"
    assert r.phases[0].detail == "session ts-sessi…"


@pytest.mark.parametrize(
    ("protocol", "phase", "evidence"),
    [
        ("2026-07-28", "server/discover", "it answered server/discover with JSON-RPC error -32600 Bad Request"),
        ("2025-06-18", "initialize", "it answered initialize with 2025-11-25"),
    ],
)
async def test_a_pinned_revision_the_server_does_not_speak_is_said_plainly(
    protocol: str, phase: str, evidence: str
) -> None:
    r = await probe_url(legacy_server(lambda m: _never()), spec(protocol=protocol))
    assert failed(r)[0] == phase
    assert r.reason is not None
    assert r.reason.startswith(f"{phase}: the server does not speak protocol {protocol}, which this probe pins ("), (
        r.reason
    )
    assert evidence in r.reason, r.reason


# -- helpers -------------------------------------------------------------------------------------------------------
def legacy_init() -> dict[str, Any]:
    return {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "tiny"}}


async def _never() -> web.StreamResponse:
    await anyio.sleep(3600)
    raise AssertionError("unreachable")


async def probe_url(handler: Any, s: ProbeSpec) -> ProbeResult:
    async with tiny_server(handler) as url:
        return await run_probe(s, url=url)
