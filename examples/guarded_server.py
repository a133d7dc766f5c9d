"""An MCP server guarded by ``watchdog.guard``: the README's example (tests/guard/test_example.py runs it).

    uvicorn examples.guarded_server:app --port 8000

``lookup`` stands for a tool that calls a slow dependency: at most 8 calls at a time reach it, and a caller that
cannot get a slot within 5 s gets an error instead of piling up. The server refuses requests beyond
``GUARD_MAX_CONNECTIONS`` (100) with a 503, drains on SIGTERM (``/ready`` turns 503, in-flight calls get 10 s),
and exports every guard metric on ``/metrics``, the event-loop lag and the spin sentinel included.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import anyio
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.routing import Route

from watchdog import guard

mcp = MCPServer("guarded-example")
downstream = guard.Limiter(8, name="downstream", max_wait=5.0)


@mcp.tool()
@downstream
async def lookup(query: str, seconds: float = 0.0) -> str:
    """Ask the (pretend) slow downstream about ``query``; it takes ``seconds``."""
    await anyio.sleep(seconds)
    return f"result for {query!r}"


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with mcp.session_manager.run(), guard.monitor():  # loop lag + spin sentinel
        yield


routes = [*mcp.streamable_http_app(stateless_http=True).routes, Route("/metrics", guard.metrics_app())]
app = guard.Drain(
    guard.ConnectionLimit(
        Starlette(routes=routes, lifespan=lifespan),
        limit=int(os.environ.get("GUARD_MAX_CONNECTIONS", "100")),
    ),
    timeout=10.0,
    wait_for=[downstream],
)
