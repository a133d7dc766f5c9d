"""Servers the probe tests talk to, besides the demo: tiny bad ones, and the official SDK in-process.

``tiny_server(handler)`` serves one aiohttp handler on 127.0.0.1 (a free port) inside the test's own event loop:
the way to make a server send malformed JSON, break an SSE stream or never answer. ``SdkServer`` runs a real
``mcp`` lowlevel ``Server`` (the official SDK) under uvicorn in a thread, for wire cases the demo does not have
(no tools at all, plain-JSON answers, ``x-mcp-header`` parameters); it is stopped when the ``with`` ends.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any

from aiohttp import web

from examples.demo.harness import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def tiny_server(handler: Handler, path: str = "/mcp") -> AsyncIterator[str]:
    """Serve ``handler`` for every method at ``path``; yield its URL; stop it afterwards."""
    app = web.Application()
    app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.25)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        await runner.cleanup()


def rpc_answer(message: dict[str, Any], result: dict[str, Any]) -> web.Response:
    """A plain-JSON answer to ``message`` carrying ``result``."""
    return web.json_response({"jsonrpc": "2.0", "id": message["id"], "result": result})


INIT_RESULT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {"tools": {}},
    "serverInfo": {"name": "tiny", "version": "0"},
}


def legacy_server(on_call: Callable[[dict[str, Any]], Awaitable[web.StreamResponse]]) -> Handler:
    """A handshake-era server that is fine until ``tools/call``, which ``on_call`` answers (or not).

    It refuses ``server/discover`` with HTTP 400, as a server from before 2026-07-28 does.
    """

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            return web.Response(status=405)
        message = json.loads(await request.read())
        method = message.get("method")
        if method == "server/discover":
            return web.json_response(
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Bad Request"}}, status=400
            )
        if method == "initialize":
            return rpc_answer(message, INIT_RESULT)
        if "id" not in message:
            return web.Response(status=202)
        if method == "tools/list":
            return rpc_answer(message, {"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]})
        return await on_call(message)

    return handle


class SdkServer:
    """The official SDK's lowlevel ``Server`` over real HTTP (uvicorn on 127.0.0.1), in a thread of this process."""

    def __init__(self, server: Any, **app_options: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        app = server.streamable_http_app(**app_options)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"sdk-server-{self.port}", daemon=True)

    def __enter__(self) -> SdkServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError("the in-process SDK server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
