"""The sidecar's own HTTP server (aiohttp): ``/metrics``, ``/healthz``, ``/v1/status``.

Bound to 127.0.0.1 unless configured otherwise. Nothing here can act on a target; when an endpoint that can
act is added it must require the configured bearer token. Connections are capped and timed
(``watchdog.agent.listener``) so slow clients cannot starve ``/healthz``; ``/v1/status`` is redacted and
JSON-safe (``watchdog.redact``).
"""

from __future__ import annotations

import json

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from watchdog.agent.listener import ConnectionGuard, Listener, listen
from watchdog.agent.loop import Agent
from watchdog.redact import outward

AGENT = web.AppKey("agent", Agent)
LAG_WINDOW = 60.0
"""``watchdog_loop_lag_seconds`` is the worst lag of the agent's own loop within this many seconds."""
STALL_AFTER = 2.0
"""/healthz fails when the agent's heartbeat is older than this, or its loop lagged this long in the last 10 s."""
GUARD = web.AppKey("guard", ConnectionGuard)


async def _metrics(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    # the worst lag over a fixed trailing minute: every scraper sees the same value, whoever scraped first
    agent.metrics.loop_lag.set(agent.recent_lag(LAG_WINDOW))
    guard = request.app.get(GUARD)
    if guard is not None:
        agent.metrics.http_connections.set(guard.open)
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
    status = outward(request.app[AGENT].status())  # no secret, no bare Infinity
    return web.Response(text=json.dumps(status, indent=1), content_type="application/json")


def make_app(agent: Agent, guard: ConnectionGuard | None = None) -> web.Application:
    srv = agent.cfg.server
    app = web.Application(middlewares=[guard.middleware] if guard is not None else [], client_max_size=srv.max_body)
    app[AGENT] = agent
    if guard is not None:
        app[GUARD] = guard
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/v1/status", _status)
    return app


async def start(agent: Agent, address: str) -> Listener:
    """Serve on ``address`` (HOST:PORT; port 0 picks one, see ``Listener.port``) until ``cleanup()``."""
    host, _, port = address.rpartition(":")
    srv = agent.cfg.server
    closed = agent.metrics.http_closed
    guard = ConnectionGuard(
        srv.max_connections, srv.request_timeout, on_close=lambda reason: closed.labels(reason).inc()
    )
    runner = web.AppRunner(
        make_app(agent, guard),
        access_log=None,
        keepalive_timeout=srv.request_timeout,
        max_line_size=8190,
        max_field_size=8190,
    )
    await runner.setup()
    try:
        return await listen(runner, guard, host.strip("[]"), int(port))
    except BaseException:
        await runner.cleanup()
        raise
