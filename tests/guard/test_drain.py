"""Drain, called as an ASGI server calls it: readiness, refusals, in-flight work, streams, triggers, hand-over.

tests/guard/test_example.py drains a real uvicorn server by SIGTERM; tests/guard/test_gunicorn.py one worker of a
real gunicorn.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import MutableMapping
from types import FrameType
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry

from tests.guard.asgi import Response, SlowApp, http_scope, request, stream_scope
from tests.guard.spin import eventually
from watchdog.guard import Drain, Limiter

pytestmark = pytest.mark.anyio


async def test_readiness_flips_new_sessions_are_refused_and_other_calls_are_served_and_closed() -> None:
    registry = CollectorRegistry()
    app = SlowApp()
    app.release.set()
    drain = Drain(app, exit=False, registry=registry)
    assert (await request(drain, http_scope("/ready", "GET"))).status == 200
    assert registry.get_sample_value("watchdog_guard_draining", {"pid": str(os.getpid())}) == 0
    assert drain.start()
    assert not drain.start()  # a second trigger changes nothing
    ready = await request(drain, http_scope("/ready", "GET"))
    assert (ready.status, ready.json()["status"]) == (503, "draining")
    with anyio.fail_after(5):
        await drain.wait()  # nothing was in flight: done at once
    assert (await request(drain, http_scope("/ready", "GET"))).json()["status"] == "drained"
    assert registry.get_sample_value("watchdog_guard_draining", {"pid": str(os.getpid())}) == 1
    initialize = b'{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}'
    refused = await request(drain, http_scope("/mcp"), body=initialize)
    assert refused.status == 503
    assert refused.headers[b"retry-after"] == b"5"
    assert refused.headers[b"connection"] == b"close"
    assert refused.json()["error"]["message"].startswith("server is draining")
    new_stream = await request(drain, stream_scope("/mcp"))
    assert new_stream.status == 503
    # a call that is not a new session is served, and its connection closed after the response
    call = b'{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo"}}'
    served = await request(drain, http_scope("/mcp"), body=call)
    assert served.status == 200
    assert served.headers[b"connection"] == b"close"
    assert app.bodies[-1] == call  # the app read the body the drain peeked at
    in_session = await request(drain, http_scope("/mcp", headers=[(b"mcp-session-id", b"abc")]), body=initialize)
    legacy_post = await request(drain, http_scope("/messages/", query=b"session_id=abc"))
    health = await request(drain, http_scope("/health", "GET"))
    assert [in_session.status, legacy_post.status, health.status] == [200, 200, 200]
    assert health.headers.get(b"connection") != b"close"


async def test_in_flight_calls_finish_then_the_drain_ends(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="watchdog.guard")
    app = SlowApp()
    drain = Drain(app, timeout=10, exit=False, registry=None)
    done: list[Response] = []

    async def call() -> None:
        done.append(await request(drain, http_scope("/mcp")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await eventually(lambda: drain.in_flight == 1)
        drain.start()
        await anyio.sleep(0.2)
        assert drain.state == "draining"  # waiting for the call
        app.release.set()
        with anyio.fail_after(5):
            await drain.wait()
    assert drain.state == "drained"
    assert [r.status for r in done] == [200]
    assert any("drain done in" in r.getMessage() for r in caplog.records)


async def test_the_drain_gives_up_on_in_flight_work_after_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="watchdog.guard")
    limiter = Limiter(1, name="tool", registry=None)
    drain = Drain(SlowApp(), timeout=0.3, wait_for=[limiter], exit=False, registry=None)
    await limiter.acquire()  # a tool call whose HTTP request is long over (legacy SSE)
    started = time.monotonic()
    drain.start()
    with anyio.fail_after(5):
        await drain.wait()
    assert 0.25 < time.monotonic() - started < 4
    assert any("1 call(s) still in flight after 0.3 s" in r.getMessage() for r in caplog.records)


async def test_streams_are_told_the_client_left_and_the_response_is_ended_properly() -> None:
    drain = Drain(SlowApp(), exit=False, registry=None)
    responses: list[Response] = []

    async def stream() -> None:
        responses.append(await request(drain, stream_scope()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(stream)
        await eventually(lambda: drain.streams == 1)
        assert drain.in_flight == 0  # a stream is not in-flight work: the drain does not wait for it
        started = time.monotonic()
        drain.start()
        with anyio.fail_after(5):
            await drain.wait()
    assert time.monotonic() - started < 10  # told, not timed out (the drain's timeout is 20 s)
    assert responses[0].status == 200
    assert responses[0].ended


async def test_what_an_app_sends_after_being_told_the_client_left_is_dropped() -> None:
    drain = Drain(SlowApp(answers_again=True), exit=False, registry=None)
    responses: list[Response] = []

    async def stream() -> None:
        responses.append(await request(drain, stream_scope()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(stream)
        await eventually(lambda: drain.streams == 1)
        drain.start()
        with anyio.fail_after(5):
            await drain.wait()
    types = [m["type"] for m in responses[0].messages]
    assert types == ["http.response.start", "http.response.body", "http.response.body"]
    assert responses[0].ended


async def test_a_stream_that_does_not_listen_is_cancelled_after_its_grace() -> None:
    drain = Drain(SlowApp(listens=False), stream_close_timeout=0.2, exit=False, registry=None)
    responses: list[Response] = []

    async def stream() -> None:
        responses.append(await request(drain, stream_scope()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(stream)
        await eventually(lambda: drain.streams == 1)
        drain.start()
        with anyio.fail_after(5):
            await drain.wait()
    assert responses[0].ended


async def test_the_drain_endpoint_is_off_by_default_loopback_only_and_takes_a_token() -> None:
    app = SlowApp()
    app.release.set()
    off = Drain(app, exit=False, registry=None)
    assert (await request(off, http_scope("/drain"))).status == 200  # just a path of the app
    assert off.state == "serving"

    drain = Drain(app, drain_path="/-/drain", token="s3cret", exit=False, registry=None)
    assert (await request(drain, http_scope("/-/drain", "GET"))).status == 405
    assert (await request(drain, http_scope("/-/drain", client=("10.0.0.7", 1)))).status == 403
    assert (await request(drain, http_scope("/-/drain"))).status == 401
    wrong = [(b"authorization", b"Bearer nope")]
    assert (await request(drain, http_scope("/-/drain", headers=wrong))).status == 401
    assert drain.state == "serving"
    right = [(b"authorization", b"Bearer s3cret")]
    accepted = await request(drain, http_scope("/-/drain", headers=right))
    assert accepted.status == 202
    assert accepted.json()["pid"] == os.getpid()
    assert drain.state != "serving"


async def lifespan(drain: Drain, stop: anyio.Event) -> list[str]:
    """Run the app's lifespan as a server does: startup, then shutdown when ``stop`` is set."""
    sent: list[str] = []
    queue = ["lifespan.startup"]

    async def receive() -> MutableMapping[str, Any]:
        if queue:
            return {"type": queue.pop()}
        await stop.wait()
        return {"type": "lifespan.shutdown"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(str(message["type"]))

    await drain({"type": "lifespan"}, receive, send)
    return sent


async def inner_with_lifespan(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return


async def test_sigterm_starts_the_drain_and_hands_over_to_the_servers_handler() -> None:
    server_saw: list[int] = []

    def server_handler(signum: int, frame: FrameType | None) -> None:  # what uvicorn installs
        server_saw.append(signum)

    signal.signal(signal.SIGTERM, server_handler)
    drain = Drain(inner_with_lifespan, timeout=5, registry=None)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lifespan, drain, stop)
        await eventually(lambda: signal.getsignal(signal.SIGTERM) is not server_handler)
        os.kill(os.getpid(), signal.SIGTERM)
        with anyio.fail_after(5):
            await drain.wait()
        assert server_saw == [signal.SIGTERM]  # the server was let go, as if SIGTERM had just reached it
        assert signal.getsignal(signal.SIGTERM) is server_handler
        stop.set()


async def test_lifespan_shutdown_restores_the_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    drain = Drain(inner_with_lifespan, exit=False, registry=None)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lifespan, drain, stop)
        await eventually(lambda: signal.getsignal(signal.SIGTERM) is not before)
        stop.set()
    assert signal.getsignal(signal.SIGTERM) is before
    assert drain.state == "serving"


async def test_a_call_in_flight_and_its_follow_up_are_served_and_the_connection_told_to_close() -> None:
    app = SlowApp()
    drain = Drain(app, timeout=5, exit=False, registry=None, stop_accepting=False)
    results: dict[str, tuple[int, bytes | None]] = {}

    async def call(label: str) -> None:
        r = await request(drain, http_scope("/mcp"), body=b'{"method": "tools/call"}')
        results[label] = (r.status, r.headers.get(b"connection"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "in flight")
        await eventually(lambda: drain.in_flight == 1)
        drain.start()
        app.release.set()
        await eventually(lambda: "in flight" in results)
        await call("follow-up")  # e.g. the SDK's tools/list after a result: not refused
    assert results["in flight"][0] == 200
    assert results["follow-up"] == (200, b"close")
