"""Servers that misbehave (tiny aiohttp servers inside the test): each gives a clear failure and no crash.

These stand in for what the official SDK server never does on purpose: malformed JSON, broken streams,
silence, errors. Each test names the phase that must fail and the reason an operator reads.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from typing import Any

import anyio
import pytest
from aiohttp import web

from tests.probes.servers import legacy_server, rpc_answer, tiny_server
from watchdog.config import Duration, HeaderValue, Regex
from watchdog.errors import ProbeError
from watchdog.probes import HttpProbe, McpProbe, ProbeResult, ProbeSpec, Timeouts, WorkerPid, run_probe

pytestmark = pytest.mark.anyio


def timeouts(**seconds: float) -> Timeouts:
    return Timeouts(**{k: Duration(v) for k, v in seconds.items()})


FAST = timeouts(connect=1.0, initialize=1.0, list=1.0, call=1.0, end=0.5, total=5.0)


def spec(**mcp: Any) -> ProbeSpec:
    return ProbeSpec(
        name="t", kind="mcp", url="http://127.0.0.1:9/mcp", mcp=McpProbe(**{"tool": "echo", **mcp}), timeouts=FAST
    )


async def probe(handler: Any, s: ProbeSpec | None = None, **kw: Any) -> ProbeResult:
    async with tiny_server(handler) as url:
        return await run_probe(s or spec(), url=url, **kw)


def probe_side_tasks() -> int:
    """Tasks in this loop, less the tiny server's own request handlers (which may outlive the test's request)."""
    return sum(not getattr(t.get_coro(), "__qualname__", "").startswith("RequestHandler") for t in asyncio.all_tasks())


def failed(r: ProbeResult) -> tuple[str | None, str | None]:
    return r.failed_phase, r.reason


async def test_malformed_json_answer() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text='{"jsonrpc": "2.0", "id": 1, "result": {', content_type="application/json")

    r = await probe(handler)
    assert not r.ok
    assert failed(r) == (
        "server/discover",
        'server/discover: malformed JSON answer: not JSON: \'{"jsonrpc": "2.0", "id": 1, "result": {\'',
    )


async def test_a_broken_sse_stream() -> None:
    async def on_call(message: dict[str, Any]) -> web.StreamResponse:
        raise AssertionError("unused")

    legacy = legacy_server(on_call)

    async def handler(request: web.Request) -> web.StreamResponse:
        message = json.loads(await request.read())
        if message.get("method") != "tools/call":
            return await legacy(request)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'event: message\r\ndata: {"jsonrpc": "2.0", "id": ')
        assert request.transport is not None
        request.transport.close()  # the stream breaks off in the middle of the event
        return resp

    r = await probe(handler)
    assert failed(r)[0] == "tools/call"
    assert r.reason is not None
    assert r.reason.startswith("tools/call: "), r.reason
    assert "SSE stream" in r.reason, r.reason
    print(f"\nbroken SSE stream: {r.reason}")


async def test_a_malformed_sse_event() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"event: message\ndata: this is not json\n\n")
        await resp.write_eof()
        return resp

    r = await probe(handler, spec(protocol="legacy"))
    assert failed(r) == ("initialize", "initialize: malformed SSE event: data is not JSON: 'this is not json'")


async def test_a_server_that_never_answers_times_out_in_the_first_phase_and_in_time() -> None:
    async def handler(request: web.Request) -> web.Response:
        await anyio.sleep(3600)
        raise AssertionError("unreachable")

    t0 = time.monotonic()
    r = await probe(handler)
    took = time.monotonic() - t0
    assert failed(r) == ("server/discover", "timeout in server/discover after 1.0 s")
    assert took < 1.0 + 10, took  # its timeout, not the server's hour (generous: a busy machine is slow)
    assert 0.9 <= r.phases[0].latency_s < 1.0 + 10


async def test_silence_in_tools_call_is_a_timeout_in_tools_call() -> None:
    async def on_call(message: dict[str, Any]) -> web.StreamResponse:
        await anyio.sleep(3600)
        raise AssertionError("unreachable")

    r = await probe(legacy_server(on_call))
    assert failed(r) == ("tools/call", "timeout in tools/call after 1.0 s")
    names = [p.name for p in r.phases]
    assert names == ["server/discover", "initialize", "notifications/initialized", "tools/call", "session end"]
    assert r.protocol_version == "2025-11-25"  # auto fell back to the handshake on the 400 to server/discover
    assert "falling back to initialize" in (r.phases[0].detail or "")


async def test_the_total_timeout_bounds_the_probe_whatever_the_phase_timeouts() -> None:
    async def on_call(message: dict[str, Any]) -> web.StreamResponse:
        await anyio.sleep(3600)
        raise AssertionError("unreachable")

    s = replace(spec(), timeouts=timeouts(call=30.0, end=0.5, total=1.5))
    async with tiny_server(legacy_server(on_call)) as url:
        t0 = time.monotonic()
        r = await run_probe(s, url=url)
        took = time.monotonic() - t0
    assert r.failed_phase == "tools/call"
    assert r.reason is not None
    assert r.reason.startswith("timeout in tools/call after ")
    assert r.reason.endswith("(the probe's total timeout of 1.5 s)")
    assert took < 1.5 + 10, took  # the total timeout, not the 30 s of the call's own (a busy machine is slow)


async def test_an_is_error_result_is_reported_with_its_text() -> None:
    async def on_call(message: dict[str, Any]) -> web.StreamResponse:
        return rpc_answer(message, {"content": [{"type": "text", "text": "downstream  said\nno"}], "isError": True})

    r = await probe(legacy_server(on_call))
    assert failed(r) == ("tools/call", "tools/call: isError: true: downstream said no")


async def test_a_json_rpc_error_is_reported_with_code_and_message() -> None:
    async def on_call(message: dict[str, Any]) -> web.StreamResponse:
        error = {"code": -32601, "message": "Method not found"}
        return web.json_response({"jsonrpc": "2.0", "id": message["id"], "error": error})

    r = await probe(legacy_server(on_call))
    assert failed(r) == ("tools/call", "tools/call: JSON-RPC error -32601 Method not found")


async def test_an_html_page_instead_of_mcp() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="<html>login</html>", content_type="text/html")

    r = await probe(handler, spec(protocol="legacy"))
    assert failed(r) == (
        "initialize",
        "initialize: unexpected Content-Type 'text/html' (expected application/json or text/event-stream)",
    )


async def test_a_server_that_closes_the_connection_without_answering() -> None:
    async def handler(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    r = await probe(handler)
    assert failed(r) == (
        "server/discover",
        "server/discover: the server closed the connection without a complete response",
    )


async def test_bearer_auth_from_the_environment_and_custom_headers() -> None:
    seen: list[tuple[str | None, str | None]] = []

    async def on_call(message: dict[str, Any]) -> web.StreamResponse:
        return rpc_answer(message, {"content": [{"type": "text", "text": "ok"}], "structuredContent": {"pid": 42}})

    inner = legacy_server(on_call)

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append((request.headers.get("Authorization"), request.headers.get("X-Probe")))
        if request.headers.get("Authorization") != "Bearer s3cret":
            return web.Response(status=401, text="no")
        return await inner(request)

    s = replace(spec(protocol="legacy"), headers={"X-Probe": HeaderValue("watchdog")}, worker_pid=WorkerPid(json="pid"))
    s = replace(s, auth=replace(s.auth, bearer_env="PROBE_TOKEN"))
    r = await probe(handler, s, env={"PROBE_TOKEN": "s3cret"})
    assert r.ok, r.reason
    assert r.worker_pid == 42
    assert set(seen) == {("Bearer s3cret", "watchdog")}
    r = await probe(handler, s, env={"PROBE_TOKEN": "wrong"})
    assert failed(r) == ("initialize", "initialize: HTTP 401 Unauthorized (check the probe's auth and headers): no")
    r = await probe(handler, s, env={})
    assert failed(r) == ("setup", "setup: environment variable PROBE_TOKEN (auth.bearer_env) is not set")


async def test_sse_transport_endpoint_on_another_origin_is_refused() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"event: endpoint\ndata: http://evil.example/messages/?session_id=1\n\n")
        await anyio.sleep(3600)
        raise AssertionError("unreachable")

    async with tiny_server(handler, path="/sse") as url:
        r = await run_probe(spec(transport="sse"), url=url)
    assert failed(r) == (
        "connect",
        "connect: the stream names an endpoint on another origin: 'http://evil.example/messages/?session_id=1'",
    )


async def test_http_probe_status_match_and_worker_header() -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.method == "POST":
            return web.Response(status=503, text="overloaded")
        return web.Response(text="all good", headers={"X-Worker-Pid": "77"})

    s = ProbeSpec(
        name="h",
        kind="http",
        url="http://127.0.0.1:9/",
        http=HttpProbe(match=Regex("good")),
        worker_pid=WorkerPid(header="X-Worker-Pid"),
        timeouts=FAST,
    )
    r = await probe(handler, s)
    assert (r.ok, r.worker_pid, r.transport, [p.name for p in r.phases]) == (True, 77, "http", ["request"])
    r = await probe(handler, replace(s, http=HttpProbe(method="POST")))
    assert failed(r) == ("request", "request: HTTP 503 Service Unavailable, expected 200: overloaded")
    r = await probe(handler, replace(s, http=HttpProbe(match=Regex("bad"))))
    assert failed(r) == ("request", "request: the body does not match 'bad': 'all good'")


async def test_cancelling_a_probe_ends_its_session_and_leaks_nothing() -> None:
    deleted = anyio.Event()

    async def on_call(message: dict[str, Any]) -> web.StreamResponse:
        await anyio.sleep(3600)
        raise AssertionError("unreachable")

    inner = legacy_server(on_call)

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            deleted.set()
            return web.Response(status=200)
        resp = await inner(request)
        if json.loads(await request.read()).get("method") == "initialize":
            resp.headers["Mcp-Session-Id"] = "abc123"
        return resp

    before = probe_side_tasks()
    async with tiny_server(handler) as url:
        with anyio.move_on_after(0.5):
            await run_probe(spec(protocol="legacy"), url=url)
        assert deleted.is_set()  # the session end ran, shielded, although the caller gave up
    await anyio.sleep(0.05)
    assert probe_side_tasks() == before


async def test_a_url_that_is_not_http_is_a_probe_error_not_a_result() -> None:
    with pytest.raises(ProbeError, match="expected an http:// or https:// URL") as info:
        await run_probe(spec(), url="ftp://127.0.0.1/mcp")
    assert info.value.probe == "t"
