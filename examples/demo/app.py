"""The fault lab: a real MCP server (official SDK) whose tools reproduce our users' real failures on demand.

Served by gunicorn with uvicorn workers (see ``gunicorn_conf.py`` and ``python -m examples.demo serve``). Every
tool result carries the pid of the worker that served it. The faults, and the war story each comes from:

=============  =====================================================================================
``echo``       cheap and healthy: the deep-probe target
``crunch``     legitimate CPU-bound work in slices: busy but healthy, must never be taken for a spin
``stubborn``   swallows cancellation; when the client abandons the call the worker is left in a real
               anyio ``CancelScope._deliver_cancellation`` spin (seed 001, anyio #695)
``leak``       fire-and-forget tasks that each hold memory: a steady RSS ramp (seed 000)
``downstream`` calls the slow local downstream through a ``watchdog.guard.Limiter`` (seed 000)
``block``      blocks the event loop synchronously: a hung worker, not a spin
``churn``      a new HTTP client per call, never closed: sockets and fds grow (seed 002)
``timeouts``   healthy cancel-heavy work: thousands of short timeouts a second fire and complete, hot loop;
               must never be taken for a spin (the worker progresses; each cancel scope is a new one)
=============  =====================================================================================

The server uses ``watchdog.guard`` as its users would: the downstream limiter, the loop-lag monitor and the spin
sentinel (``guard.monitor()`` in the lifespan), a connection limit, drain on SIGTERM (``/ready`` turns 503,
in-flight calls get ``DEMO_DRAIN_TIMEOUT`` seconds), and ``/metrics`` through ``guard.metrics_app()``. The
opt-in cancel-delivery patch stays off, so ``stubborn`` still spins for real; ``DEMO_GUARD_PATCH=1`` turns it
on, to show what it does.

Environment: ``DEMO_DOWNSTREAM_URL`` (the slow downstream), ``DEMO_DOWNSTREAM_LIMIT`` (limiter size, default 4),
``DEMO_STATEFUL=1`` (stateful streamable-HTTP sessions instead of stateless; needs a single worker or sticky
routing), ``DEMO_MAX_CONNECTIONS`` (requests in progress per worker, default 64), ``DEMO_DRAIN_TIMEOUT``
(seconds, default 4: below gunicorn's ``graceful_timeout`` of 5), ``DEMO_GUARD_PATCH=1``,
``PROMETHEUS_MULTIPROC_DIR`` (set by the launcher: metrics of every worker on one ``/metrics``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from mcp.server.mcpserver import Context, MCPServer
from prometheus_client import Counter, Gauge
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from watchdog import guard

PID = os.getpid()
DOWNSTREAM_URL = os.environ.get("DEMO_DOWNSTREAM_URL", "http://127.0.0.1:8001")
DOWNSTREAM_LIMIT = int(os.environ.get("DEMO_DOWNSTREAM_LIMIT", "4"))
STATEFUL = os.environ.get("DEMO_STATEFUL") == "1"
MAX_CONNECTIONS = int(os.environ.get("DEMO_MAX_CONNECTIONS", "64"))
DRAIN_TIMEOUT = float(os.environ.get("DEMO_DRAIN_TIMEOUT", "4"))
GUARD_PATCH = os.environ.get("DEMO_GUARD_PATCH") == "1"
MAX_LEAK_BYTES = 1 << 30  # a fault lab must not take the machine down with it

# In multiprocess mode, "liveall" gauges keep a pid label per live worker: that is how the sidecar tells the
# workers apart on one /metrics page. The guard's gauges (watchdog_guard_*) do the same.
TOOL_CALLS = Counter("demo_tool_calls_total", "Tool calls started, by tool.", ["tool"])
LEAKED_BYTES = Gauge("demo_leaked_bytes", "Bytes held by the leak tool's tasks.", multiprocess_mode="liveall")
OPEN_CLIENTS = Gauge(
    "demo_unclosed_clients", "HTTP clients churn opened and never closed.", multiprocess_mode="liveall"
)
WORKER_UP = Gauge("demo_worker_up", "1 while this worker serves.", multiprocess_mode="liveall")


class _State:
    """Per-worker state the tools share. Created in the worker, never in the gunicorn master."""

    background: TaskGroup | None = None
    downstream: aiohttp.ClientSession | None = None
    leaked: list[bytes] = []  # noqa: RUF012 - module-level state is the point of a leak
    unclosed: list[aiohttp.ClientSession] = []  # noqa: RUF012


mcp = MCPServer("mcp-watchdog-demo", instructions="A fault lab: each tool reproduces a real production failure.")
# Seed 000's fix: callers wait for one of DOWNSTREAM_LIMIT slots (backpressure). Exported as
# watchdog_guard_limiter_{in_flight,limit,waiting}{name="downstream",pid=...}.
downstream_limiter = guard.Limiter(DOWNSTREAM_LIMIT, name="downstream")


def _served(**fields: Any) -> dict[str, Any]:
    return {"pid": PID, **fields}


@mcp.tool()
async def echo(text: str = "ping") -> dict[str, Any]:
    """Return the text and the serving worker's pid. Cheap and healthy: the deep-probe target."""
    TOOL_CALLS.labels("echo").inc()
    return _served(text=text)


def _crunch_slice(n: int) -> int:
    """A few milliseconds of honest pure-Python arithmetic (what py-spy should name as the hot frame)."""
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i * i) % 1_000_003
    return acc


@mcp.tool()
async def crunch(seconds: float = 5.0, ctx: Context | None = None) -> dict[str, Any]:
    """Burn CPU for `seconds` in short slices, yielding to the loop between them: busy, healthy, responsive."""
    TOOL_CALLS.labels("crunch").inc()
    if ctx is not None:
        await ctx.report_progress(0, 1, f"pid={PID}")
    deadline = time.monotonic() + min(seconds, 300.0)
    slices = 0
    while time.monotonic() < deadline:
        _crunch_slice(20_000)
        slices += 1
        await anyio.lowlevel.checkpoint()
    return _served(seconds=seconds, slices=slices)


@mcp.tool()
async def stubborn(ctx: Context) -> dict[str, Any]:
    """Wait forever and swallow cancellation. Abandon the call and this worker spins in `_deliver_cancellation`.

    The pid is sent as a progress notification first, because a call that never returns cannot say who took it.
    """
    TOOL_CALLS.labels("stubborn").inc()
    await ctx.report_progress(0, 1, f"pid={PID}")
    while True:
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            pass


async def _hold_memory(rate: float, seconds: float) -> None:
    """One fire-and-forget task of seed 000: it grabs memory at `rate` bytes/s and keeps it.

    Paced by the clock, not by counting steps, so that a late wake-up on a busy machine does not slow the ramp."""
    step = 0.1
    started = time.monotonic()
    mine = 0
    while (elapsed := time.monotonic() - started) < seconds:
        held = sum(len(b) for b in _State.leaked)
        chunk = min(int(rate * min(elapsed + step, seconds)) - mine, MAX_LEAK_BYTES - held)
        if held >= MAX_LEAK_BYTES:
            break
        if chunk > 0:
            _State.leaked.append(b"\xa5" * chunk)  # written, so resident: bytes(n) would stay lazily zeroed
            mine += chunk
            LEAKED_BYTES.set(held + chunk)
        await anyio.sleep(step)


@mcp.tool()
async def leak(mb_per_s: float = 10.0, seconds: float = 60.0) -> dict[str, Any]:
    """Start a background task in this worker that holds `mb_per_s` more MiB every second, for `seconds`."""
    TOOL_CALLS.labels("leak").inc()
    if _State.background is None:
        raise RuntimeError("the worker's background task group is not running")
    _State.background.start_soon(_hold_memory, mb_per_s * 1024 * 1024, seconds)
    return _served(mb_per_s=mb_per_s, seconds=seconds)


@mcp.tool()
async def downstream(max_seconds: float = 60.0) -> dict[str, Any]:
    """Call the slow downstream through the worker's bounded limiter: callers wait (backpressure)."""
    TOOL_CALLS.labels("downstream").inc()
    assert _State.downstream is not None
    async with downstream_limiter:
        started = time.monotonic()
        async with _State.downstream.get(
            f"{DOWNSTREAM_URL}/work", timeout=aiohttp.ClientTimeout(total=max_seconds)
        ) as resp:
            body = await resp.json()
        return _served(status=resp.status, downstream_seconds=round(time.monotonic() - started, 3), **body)


@mcp.tool()
async def block(seconds: float = 5.0, ctx: Context | None = None) -> dict[str, Any]:
    """Block this worker's event loop with a synchronous sleep: nothing else runs in it meanwhile."""
    TOOL_CALLS.labels("block").inc()
    if ctx is not None:
        await ctx.report_progress(0, 1, f"pid={PID}")
        await anyio.sleep(0.05)  # let the progress notification leave before the loop stops
    time.sleep(min(seconds, 600.0))  # noqa: ASYNC251 - blocking the loop is this tool's whole purpose
    return _served(seconds=seconds)


@mcp.tool()
async def churn(calls: int = 1) -> dict[str, Any]:
    """Open a new HTTP client per call (here `calls` of them), use it once and never close it (seed 002)."""
    TOOL_CALLS.labels("churn").inc()
    for _ in range(max(1, min(calls, 1000))):
        client = aiohttp.ClientSession()  # the bug: a client per request, kept and never closed
        _State.unclosed.append(client)
        async with client.get(f"{DOWNSTREAM_URL}/ping") as resp:
            await resp.read()
    OPEN_CLIENTS.set(len(_State.unclosed))
    return _served(unclosed_clients=len(_State.unclosed))


@mcp.tool()
async def timeouts(seconds: float = 5.0, tasks: int = 50, ctx: Context | None = None) -> dict[str, Any]:
    """Healthy cancel-heavy work for `seconds`: `tasks` tasks each bound a slower wait with a short timeout that
    fires (a fresh `move_on_after` scope each time, cancelled, delivered and left), between small slices of work.
    """
    TOOL_CALLS.labels("timeouts").inc()
    if ctx is not None:
        await ctx.report_progress(0, 1, f"pid={PID}")
    deadline = time.monotonic() + min(seconds, 300.0)
    counts = {"scopes": 0, "fired": 0}

    async def one() -> None:
        while time.monotonic() < deadline:
            _crunch_slice(20)
            with anyio.move_on_after(0.0005) as scope:
                await anyio.sleep(0.002)
            counts["scopes"] += 1
            counts["fired"] += scope.cancelled_caught

    async with anyio.create_task_group() as tg:
        for _ in range(max(1, min(tasks, 500))):
            tg.start_soon(one)
    return _served(seconds=seconds, **counts)


async def health(_: Request) -> Response:
    """The shallow health check of the war stories: it stays green through every fault above except `block`."""
    return JSONResponse({"status": "ok", "pid": PID})


@contextlib.asynccontextmanager
async def _worker_lifespan(app: Starlette) -> AsyncIterator[None]:
    if GUARD_PATCH:
        guard.patch_cancel_delivery()
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(mcp.session_manager.run())
        await stack.enter_async_context(guard.monitor())  # loop lag + spin sentinel, metrics of this worker
        _State.downstream = await stack.enter_async_context(aiohttp.ClientSession())
        _State.background = await stack.enter_async_context(anyio.create_task_group())
        WORKER_UP.set(1)
        try:
            yield
        finally:
            WORKER_UP.set(0)
            _State.background.cancel_scope.cancel()


def create_app() -> guard.Drain:
    """The ASGI app: streamable HTTP at /mcp, SSE at /sse (+ /messages/), /health, /ready and /metrics.

    Outermost the drain (SIGTERM: /ready 503, new work refused, in-flight calls finish), then the connection limit.
    """
    streamable = mcp.streamable_http_app(stateless_http=not STATEFUL)
    sse = mcp.sse_app()
    routes: list[BaseRoute] = [
        *streamable.routes,
        *sse.routes,
        Route("/health", health),
        Route("/metrics", guard.metrics_app()),
    ]
    app = Starlette(routes=routes, lifespan=_worker_lifespan)
    return guard.Drain(
        guard.ConnectionLimit(app, MAX_CONNECTIONS), timeout=DRAIN_TIMEOUT, wait_for=[downstream_limiter]
    )


app = create_app()
