"""Pure ASGI pieces: the connection limit (seed 003), and the helpers the drain shares."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from watchdog.guard import _metrics
from watchdog.guard._metrics import RegistryArg, Sample

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_EXEMPT = ("/health", "/healthz", "/ready", "/readyz", "/metrics")
DEFAULT_MCP_PATHS = ("/mcp", "/sse", "/messages")
OVERLOADED = -32000  # JSON-RPC "server error" range; MCP defines no code for "try again later"


class PathSet:
    """Paths given as ``/health``: the path itself and everything below it (``/health/live``)."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.exact = frozenset(p.rstrip("/") or "/" for p in paths)
        self.prefixes = tuple(p.rstrip("/") + "/" for p in self.exact if p != "/")

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and (path in self.exact or path.startswith(self.prefixes))


def is_event_stream(scope: Scope) -> bool:
    """A GET asking for ``text/event-stream``: a long-lived stream (SSE, MCP's standalone GET stream)."""
    if scope.get("method") != "GET":
        return False
    return any(key == b"accept" and b"text/event-stream" in value for key, value in scope.get("headers", ()))


async def send_unavailable(
    send: Send,
    *,
    message: str,
    retry_after: float,
    jsonrpc: bool,
    data: dict[str, Any] | None = None,
    close: bool = False,
) -> None:
    """A 503 with ``Retry-After``; on MCP paths the body is a JSON-RPC error a client can show."""
    retry = max(1, math.ceil(retry_after))
    if jsonrpc:
        payload: dict[str, Any] = {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": OVERLOADED, "message": message, "data": {"retry_after": retry, **(data or {})}},
        }
    else:
        payload = {"error": message, "retry_after": retry, **(data or {})}
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ConnectionLimit:
    """ASGI middleware: at most ``limit`` requests in progress in this worker; beyond that, 503 at once.

    One event loop serves every connection of a worker. Past some number of them, each new one slows all the
    others, and the expensive calls (``tools/list``) start timing out while trivial ones still pass (seed 003).
    Refusing early keeps the admitted requests fast: the client (or the load balancer) gets a 503 with
    ``Retry-After`` and goes elsewhere or comes back. On MCP paths the body is a JSON-RPC error, so an MCP
    client shows a reason rather than a parse failure.

    A request counts from the moment it arrives until the app has finished it, so a long-lived event stream
    (SSE, MCP's GET stream) holds its slot for as long as it is open and frees it however it ends
    (the client going away included). Exempt paths (health, readiness, metrics) are neither counted nor
    refused: a full server must still answer its probes. WebSocket connections count too; at capacity they
    are closed with code 1013 (try again later). Pure ASGI, no ``BaseHTTPMiddleware``: streams pass through
    untouched and a request costs a few attribute updates.

    Metrics (labelled ``name``, per worker ``pid``): ``watchdog_guard_connections_active``, ``_limit``,
    ``_streams`` (open event streams, part of active) and ``_rejected_total``.

    Args:
        app: the ASGI app to protect.
        limit: requests in progress allowed at once.
        name: names this limit in metrics.
        exempt_paths: never counted nor refused; each covers the paths below it too.
        mcp_paths: where the 503 body is a JSON-RPC error.
        retry_after: seconds suggested in ``Retry-After`` (rounded up to whole seconds).
        registry: where metrics go (``"default"``, a ``CollectorRegistry``, or None).
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        *,
        name: str = "http",
        exempt_paths: Iterable[str] = DEFAULT_EXEMPT,
        mcp_paths: Iterable[str] = DEFAULT_MCP_PATHS,
        retry_after: float = 1.0,
        registry: RegistryArg = "default",
    ) -> None:
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an int >= 1, not {limit!r}")
        self.app = app
        self.limit = limit
        self.name = name
        self.retry_after = retry_after
        self._exempt = PathSet(exempt_paths)
        self._mcp = PathSet(mcp_paths)
        self._active = 0
        self._streams = 0
        self._rejected = 0
        self._labels = (name,)
        self._hub = _metrics.hub_for(registry)
        self._cold = self._hub is not None and self._hub.multiprocess
        self._rejected_counter: Any = None
        if self._hub is not None:
            self._hub.add("connection limit", name, self)
            self._rejected_counter = self._hub.counter(_metrics.CONNECTIONS_REJECTED).labels(name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if (kind != "http" and kind != "websocket") or scope["path"] in self._exempt:
            await self.app(scope, receive, send)
            return
        if self._cold:
            self._warm()
        if self._active >= self.limit:
            await self._reject(scope, send)
            return
        self._active += 1
        stream = kind == "http" and is_event_stream(scope)
        if stream:
            self._streams += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._active -= 1
            if stream:
                self._streams -= 1

    async def _reject(self, scope: Scope, send: Send) -> None:
        self._rejected += 1
        if self._rejected_counter is not None:
            self._rejected_counter.inc()
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013, "reason": "server at capacity"})
            return
        await send_unavailable(
            send,
            message=f"server at capacity ({self._active} of {self.limit} requests in progress); try again later",
            retry_after=self.retry_after,
            jsonrpc=scope["path"] in self._mcp,
            data={"limit": self.limit, "active": self._active},
        )

    def _warm(self) -> None:
        self._cold = False
        if self._hub is not None:
            self._hub.activate(self)

    @property
    def active(self) -> int:
        return self._active

    @property
    def streams(self) -> int:
        return self._streams

    @property
    def rejected(self) -> int:
        return self._rejected

    def _metric_samples(self) -> Iterable[Sample]:
        labels = self._labels
        return (
            (_metrics.CONNECTIONS_ACTIVE, labels, self._active),
            (_metrics.CONNECTIONS_LIMIT, labels, self.limit),
            (_metrics.CONNECTIONS_STREAMS, labels, self._streams),
        )
