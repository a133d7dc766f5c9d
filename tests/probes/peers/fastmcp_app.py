"""A FastMCP 4.x server for the probe tests, set up by environment variables (one module, every set-up).

    PEER_TRANSPORT   http (streamable HTTP at /mcp, the default) | sse (SSE at /sse)
    PEER_STATELESS   1: no sessions (each request its own transport)
    PEER_JSON        1: plain JSON answers instead of SSE streams
    PEER_EVENT_STORE 1: an event store (resumable streams; 2025-11-25 priming events)
    PEER_EVENTS      a file this server appends "<what> <pid>" lines to ("ready", a tool's task "cancelled" ...)

Served by uvicorn (one process) or gunicorn with uvicorn workers: ``tests.probes.peers.fastmcp_app:app``.
Tools: ``echo`` (names its worker), ``hang`` (sleeps, noting cancellation), ``poll`` (closes its SSE stream
once, so the client must resume it), and the fault lab's ``stubborn`` and ``block``, which say ``pid=N`` as
progress as the demo's tools do, so ``examples.demo.inject`` drives them unchanged.
"""

from __future__ import annotations

import os
import time
from typing import Any

import anyio
from fastmcp import Context, FastMCP
from fastmcp.server.event_store import EventStore

PID = os.getpid()
mcp = FastMCP("watchdog-test-fastmcp")


def _flag(name: str) -> bool:
    return os.environ.get(name, "") == "1"


def _note(what: str) -> None:
    path = os.environ.get("PEER_EVENTS")
    if path:
        with open(path, "a") as f:
            f.write(f"{what} {os.getpid()}\n")


@mcp.tool
async def echo(text: str = "ping") -> dict[str, Any]:
    """Return the text and the pid of the worker that served it."""
    return {"pid": os.getpid(), "text": text}


@mcp.tool
async def hang(seconds: float = 3600.0) -> str:
    """Sleep; a cancellation (the client's notifications/cancelled) is noted in PEER_EVENTS."""
    _note("started")
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        _note("cancelled")
        raise
    return "woke up"


@mcp.tool
async def poll(ctx: Context) -> dict[str, Any]:
    """Close this call's SSE stream once (SSE polling, with an event store), then answer on the resumed one."""
    await ctx.close_sse_stream()
    await anyio.sleep(0.3)
    return {"pid": os.getpid(), "text": "resumed"}


@mcp.tool
async def stubborn(ctx: Context) -> dict[str, Any]:
    """Wait forever and swallow cancellation: abandon the call and this worker spins in _deliver_cancellation."""
    await ctx.report_progress(0, 1, f"pid={os.getpid()}")
    while True:
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            continue  # the bug under test: cancellation swallowed


@mcp.tool
async def block(ctx: Context, seconds: float = 5.0) -> dict[str, Any]:
    """Block this worker's event loop with a synchronous sleep."""
    await ctx.report_progress(0, 1, f"pid={os.getpid()}")
    await anyio.sleep(0.05)  # let the progress notification leave before the loop stops
    time.sleep(min(seconds, 600.0))  # noqa: ASYNC251 - blocking the loop is this tool's whole purpose
    return {"pid": os.getpid(), "seconds": seconds}


def create_app() -> Any:
    transport = os.environ.get("PEER_TRANSPORT", "http")
    if transport == "sse":
        return mcp.http_app(transport="sse", path="/sse")
    return mcp.http_app(
        path="/mcp",
        stateless_http=_flag("PEER_STATELESS"),
        json_response=_flag("PEER_JSON"),
        event_store=EventStore() if _flag("PEER_EVENT_STORE") else None,
        retry_interval=200 if _flag("PEER_EVENT_STORE") else None,
    )


app = create_app()
_note("ready")  # in each worker that imported the app: the harness waits for as many as it started
