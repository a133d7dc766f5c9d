"""The sidecar's own HTTP server (aiohttp): ``/metrics``, ``/healthz``, ``/v1/status``, the status page at ``/``
and the flame graphs kept as evidence at ``/v1/flamegraphs/NAME`` (their list at ``/v1/flamegraphs``).

Bound to 127.0.0.1 unless configured otherwise. When ``server.token`` is set, every endpoint except
``/healthz`` (the kubelet's and systemd's liveness check) and ``/metrics`` (Prometheus; it carries no stacks,
command lines or evidence) requires ``Authorization: Bearer <token>``, compared in constant time. The config
refuses a listener that is not loopback without a token, so whatever is reachable from the network is
authenticated; an endpoint added later is covered by the middleware without asking for it. Connections are
capped and timed (``watchdog.agent.listener``) so slow clients cannot starve ``/healthz``; ``/v1/status`` is
redacted and JSON-safe (``watchdog.redact``).

``POST /v1/alertmanager`` (an Alertmanager webhook receiver, served when ``server.alertmanager_webhook`` is on; the
config requires the token then) checks its credentials itself: a bearer token or basic auth with the token as
password (Alertmanager's ``http_config`` offers both), and every refusal is counted. It answers at once and
leaves the acting to the agent.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable

import anyio.to_thread
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from watchdog.actions.inbound import MAX_BODY, BadWebhook, authorized, parse_webhook
from watchdog.agent.alerting import AlertInbox
from watchdog.agent.flames import FlameStore
from watchdog.agent.history import worker_history
from watchdog.agent.listener import ConnectionGuard, Listener, listen
from watchdog.agent.loop import Agent
from watchdog.redact import outward

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
GUARD = web.AppKey("guard", ConnectionGuard)
INBOX = web.AppKey("inbox", AlertInbox)


async def _metrics(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    # the worst lag over a fixed trailing minute: every scraper sees the same value, whoever scraped first
    agent.metrics.loop_lag.set(agent.heart.recent_lag(LAG_WINDOW))
    guard = request.app.get(GUARD)
    if guard is not None:
        agent.metrics.http_connections.set(guard.open)
    body = generate_latest(agent.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    since = agent.clock() - agent.heart.last
    lag = agent.heart.recent_lag()
    body = {"heartbeat_age_seconds": round(since, 3), "max_lag_seconds_10s": round(lag, 3)}
    if since > STALL_AFTER or lag > STALL_AFTER:
        return web.json_response({"status": "stalled", **body}, status=503)
    return web.json_response({"status": "ok", **body})


async def _status(request: web.Request) -> web.Response:
    status = outward(request.app[AGENT].status())  # no secret, no bare Infinity
    return web.Response(text=json.dumps(status, indent=1), content_type="application/json")


async def _flame_records(request: web.Request) -> list[dict[str, object]]:
    store = request.app.get(FLAMES)
    if store is None:
        return []
    records = await anyio.to_thread.run_sync(store.records)  # a directory listing: off the event loop
    return [r.to_json() for r in records]


async def _page(request: web.Request) -> web.Response:
    from watchdog.agent.page import render_page  # here: the sidecar keeps no page code until someone looks

    agent = request.app[AGENT]
    status = outward(agent.status())  # redacted as /v1/status is
    text = render_page(status, history=worker_history(agent), flames=await _flame_records(request))
    return web.Response(text=text, content_type="text/html", headers=_HTML_HEADERS)


async def _flamegraphs(request: web.Request) -> web.Response:
    return web.json_response({"flamegraphs": await _flame_records(request)})


async def _flamegraph(request: web.Request) -> web.StreamResponse:
    store = request.app.get(FLAMES)
    path = store.path(request.match_info["name"]) if store is not None else None
    if path is None:
        raise web.HTTPNotFound(text="no such flame graph (kept ones are listed at /v1/flamegraphs)")
    return web.FileResponse(path, headers={**_HTML_HEADERS, "Content-Type": "text/html; charset=utf-8"})


def _refuse(count: Callable[[str, int], None], status: int, outcome: str, message: str) -> web.Response:
    count(outcome, 1)
    headers = {"WWW-Authenticate": 'Bearer realm="mcp-watchdog"'} if status == 401 else None
    return web.json_response({"status": "error", "error": message}, status=status, headers=headers)


async def _alertmanager(request: web.Request) -> web.Response:
    inbox = request.app[INBOX]
    count = inbox.count
    if not authorized(request.headers.get("Authorization"), inbox.token):
        return _refuse(count, 401, "unauthorized", "missing or wrong credentials (Bearer <server.token>)")
    if request.content_type != "application/json":
        return _refuse(count, 415, "unsupported_media_type", f"expected application/json, got {request.content_type}")
    if (request.content_length or 0) > MAX_BODY:
        return _refuse(count, 413, "too_large", f"the body is over {MAX_BODY} bytes")
    body = bytearray()
    async for chunk in request.content.iter_any():  # a body without Content-Length is bounded all the same
        body += chunk
        if len(body) > MAX_BODY:
            return _refuse(count, 413, "too_large", f"the body is over {MAX_BODY} bytes")
    try:
        payload = parse_webhook(bytes(body))
    except BadWebhook as exc:
        return _refuse(count, 400, "bad_request", str(exc))
    accepted, skipped = inbox.inbound.requests(payload)
    for outcome, n in skipped.items():
        count(outcome, n)
    queued = [r for r in accepted if inbox.submit(r)]
    count("accepted", len(queued))
    if len(queued) < len(accepted):
        count("overflow", len(accepted) - len(queued))
    return web.json_response(
        {"status": "accepted", "acting_on": [r.summary for r in queued], "ignored": dict(skipped)}, status=202
    )


OPEN_PATHS = frozenset({"/healthz", "/metrics"})
OWN_AUTH_PATHS = frozenset({"/v1/alertmanager"})
"""Endpoints that check the token themselves (and count refusals): the middleware lets them through."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer_auth(token: str) -> Middleware:
    """Middleware: ``Authorization: Bearer <token>`` on every path but :data:`OPEN_PATHS`, else 401."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or request.path in OWN_AUTH_PATHS:
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


def make_app(
    agent: Agent,
    guard: ConnectionGuard | None = None,
    *,
    flames: FlameStore | None = None,
    inbox: AlertInbox | None = None,
) -> web.Application:
    srv = agent.cfg.server
    middlewares: list[Middleware] = [guard.middleware] if guard is not None else []
    if srv.token:
        middlewares.append(bearer_auth(srv.token))
    app = web.Application(middlewares=middlewares, client_max_size=srv.max_body)
    app[AGENT] = agent
    if guard is not None:
        app[GUARD] = guard
    if flames is not None:
        app[FLAMES] = flames
    app.router.add_get("/", _page)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/v1/status", _status)
    app.router.add_get("/v1/flamegraphs", _flamegraphs)
    app.router.add_get("/v1/flamegraphs/{name}", _flamegraph)
    if inbox is not None:
        app[INBOX] = inbox
        app.router.add_post("/v1/alertmanager", _alertmanager)
    return app


async def start(
    agent: Agent, address: str, *, flames: FlameStore | None = None, inbox: AlertInbox | None = None
) -> Listener:
    """Serve on ``address`` (HOST:PORT; port 0 picks one, see ``Listener.port``) until ``cleanup()``."""
    host, _, port = address.rpartition(":")
    srv = agent.cfg.server
    closed = agent.metrics.http_closed
    guard = ConnectionGuard(
        srv.max_connections, srv.request_timeout, on_close=lambda reason: closed.labels(reason).inc()
    )
    runner = web.AppRunner(
        make_app(agent, guard, flames=flames, inbox=inbox),
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
