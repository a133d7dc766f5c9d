"""The sidecar's own HTTP server (aiohttp): ``/metrics``, ``/healthz``, ``/v1/status``, the status page at ``/``
and the flame graphs kept as evidence at ``/v1/flamegraphs/NAME`` (their list at ``/v1/flamegraphs``).

Bound to 127.0.0.1 unless configured otherwise. When ``server.token`` is set, every endpoint except
``/healthz`` (the kubelet's and systemd's liveness check) and ``/metrics`` (Prometheus; it carries no stacks,
command lines or evidence) requires ``Authorization: Bearer <token>``, compared in constant time. The config
refuses a listener that is not loopback without a token, so whatever is reachable from the network is
authenticated; an endpoint added later is covered by the middleware without asking for it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable

import anyio.to_thread
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from watchdog.agent.flames import FlameStore
from watchdog.agent.history import worker_history
from watchdog.agent.loop import Agent
from watchdog.agent.page import render_page

AGENT = web.AppKey("agent", Agent)
FLAMES = web.AppKey("flames", FlameStore)
# The page and the flame graphs are our own markup with inline style and script; nothing else may load or run.
_HTML_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src data:; frame-ancestors 'none'",
}
LAG_WINDOW = 60.0
"""``watchdog_loop_lag_seconds`` is the worst lag of the agent's own loop within this many seconds."""
STALL_AFTER = 2.0
"""/healthz fails when the agent's heartbeat is older than this, or its loop lagged this long in the last 10 s."""


async def _metrics(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    # the worst lag over a fixed trailing minute: every scraper sees the same value, whoever scraped first
    agent.metrics.loop_lag.set(agent.recent_lag(LAG_WINDOW))
    body = generate_latest(agent.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    since = agent.clock() - agent.last_beat
    lag = agent.recent_lag()
    body = {"heartbeat_age_seconds": round(since, 3), "max_lag_seconds_10s": round(lag, 3)}
    if since > STALL_AFTER or lag > STALL_AFTER:
        return web.json_response({"status": "stalled", **body}, status=503)
    return web.json_response({"status": "ok", **body})


async def _status(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps(request.app[AGENT].status(), indent=1), content_type="application/json")


async def _flame_records(request: web.Request) -> list[dict[str, object]]:
    store = request.app.get(FLAMES)
    if store is None:
        return []
    records = await anyio.to_thread.run_sync(store.records)  # a directory listing: off the event loop
    return [r.to_json() for r in records]


async def _page(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    text = render_page(agent.status(), history=worker_history(agent), flames=await _flame_records(request))
    return web.Response(text=text, content_type="text/html", headers=_HTML_HEADERS)


async def _flamegraphs(request: web.Request) -> web.Response:
    return web.json_response({"flamegraphs": await _flame_records(request)})


async def _flamegraph(request: web.Request) -> web.StreamResponse:
    store = request.app.get(FLAMES)
    path = store.path(request.match_info["name"]) if store is not None else None
    if path is None:
        raise web.HTTPNotFound(text="no such flame graph (kept ones are listed at /v1/flamegraphs)")
    return web.FileResponse(path, headers={**_HTML_HEADERS, "Content-Type": "text/html; charset=utf-8"})


OPEN_PATHS = frozenset({"/healthz", "/metrics"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer_auth(token: str) -> Middleware:
    """Middleware: ``Authorization: Bearer <token>`` on every path but :data:`OPEN_PATHS`, else 401."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response(
                {"error": "this endpoint needs 'Authorization: Bearer <server.token>'"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="mcp-watchdog"'},
            )
        return await handler(request)

    return check


def make_app(agent: Agent, *, flames: FlameStore | None = None) -> web.Application:
    token = agent.cfg.server.token
    app = web.Application(middlewares=[bearer_auth(token)] if token else [])
    app[AGENT] = agent
    if flames is not None:
        app[FLAMES] = flames
    app.router.add_get("/", _page)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/v1/status", _status)
    app.router.add_get("/v1/flamegraphs", _flamegraphs)
    app.router.add_get("/v1/flamegraphs/{name}", _flamegraph)
    return app


async def start(agent: Agent, listen: str, *, flames: FlameStore | None = None) -> web.AppRunner:
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(make_app(agent, flames=flames), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host.strip("[]"), int(port)).start()
    return runner
