"""The sidecar's own HTTP server (aiohttp): ``/metrics``, ``/healthz``, ``/v1/status``.

Bound to 127.0.0.1 unless configured otherwise. Nothing here can act on a target; when an endpoint that can
act is added it must require the configured bearer token.
"""

from __future__ import annotations

import json

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from watchdog.agent.loop import Agent

AGENT = web.AppKey("agent", Agent)
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


def make_app(agent: Agent) -> web.Application:
    app = web.Application()
    app[AGENT] = agent
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/v1/status", _status)
    return app


async def start(agent: Agent, listen: str) -> web.AppRunner:
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(make_app(agent), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host.strip("[]"), int(port)).start()
    return runner
