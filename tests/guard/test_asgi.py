"""ConnectionLimit, called as an ASGI server calls it."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry

from tests.guard.asgi import Response, SlowApp, http_scope, request, stream_scope
from tests.guard.spin import eventually
from watchdog.guard import ConnectionLimit

pytestmark = pytest.mark.anyio

PID = str(os.getpid())


def gauge(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name, {"name": "http", "pid": PID})


async def test_at_capacity_503_with_retry_after_and_a_json_rpc_body_on_mcp_paths() -> None:
    registry = CollectorRegistry()
    app = SlowApp()
    limit = ConnectionLimit(app, 2, retry_after=2.5, registry=registry)
    results: list[Response] = []

    async def call(path: str) -> None:
        results.append(await request(limit, http_scope(path)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "/mcp")
        tg.start_soon(call, "/mcp")
        await eventually(lambda: limit.active == 2)
        assert gauge(registry, "watchdog_guard_connections_active") == 2
        refused = await request(limit, http_scope("/mcp"))
        refused_other = await request(limit, http_scope("/api/things"))
        health = request(limit, http_scope("/health", "GET"))
        app.release.set()  # lets the two in progress (and the exempt /health) answer
        exempt = await health
    assert [r.status for r in results] == [200, 200]
    assert refused.status == 503
    assert refused.headers[b"retry-after"] == b"3"
    body = refused.json()
    assert body["jsonrpc"] == "2.0"
    assert body["id"] is None
    assert body["error"]["code"] == -32000
    assert "server at capacity (2 of 2" in body["error"]["message"]
    assert body["error"]["data"] == {"retry_after": 3, "limit": 2, "active": 2}
    assert refused_other.status == 503
    assert "jsonrpc" not in refused_other.json()
    assert exempt.status == 200
    assert app.calls == 3  # the refused ones never reached the app
    assert registry.get_sample_value("watchdog_guard_connections_rejected_total", {"name": "http"}) == 2
    assert (limit.active, gauge(registry, "watchdog_guard_connections_active")) == (0, 0)
    assert gauge(registry, "watchdog_guard_connections_limit") == 2


async def test_an_event_stream_holds_its_slot_until_it_ends_however_it_ends() -> None:
    registry = CollectorRegistry()
    limit = ConnectionLimit(SlowApp(), 1, registry=registry)
    gone = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(request, limit, stream_scope(), gone)
        await eventually(lambda: limit.streams == 1)
        assert gauge(registry, "watchdog_guard_connections_streams") == 1
        assert (await request(limit, http_scope("/mcp"))).status == 503
        gone.set()  # the client goes away
        await eventually(lambda: limit.active == 0)
        assert limit.streams == 0
        # and a stream whose handler is cancelled (server shutting down) frees its slot too
        scope = anyio.CancelScope()

        async def cancelled_stream() -> None:
            with scope:
                await request(limit, stream_scope())

        tg.start_soon(cancelled_stream)
        await eventually(lambda: limit.streams == 1)
        scope.cancel()
        await eventually(lambda: limit.active == 0)
    assert (limit.active, limit.streams) == (0, 0)


async def test_websockets_count_and_are_closed_with_1013_at_capacity() -> None:
    limit = ConnectionLimit(SlowApp(), 1, registry=None)
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "websocket.connect"}

    async with anyio.create_task_group() as tg:
        tg.start_soon(request, limit, http_scope("/mcp"))
        await eventually(lambda: limit.active == 1)
        await limit({"type": "websocket", "path": "/ws", "headers": []}, receive, send)
        tg.cancel_scope.cancel()
    assert sent == [{"type": "websocket.close", "code": 1013, "reason": "server at capacity"}]


async def test_lifespan_passes_through_untouched() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(str(scope["type"]))

    await ConnectionLimit(app, 1, registry=None)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


def test_limit_is_checked() -> None:
    with pytest.raises(ValueError, match="limit"):
        ConnectionLimit(SlowApp(), 0, registry=None)
