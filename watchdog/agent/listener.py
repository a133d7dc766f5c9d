"""A listener for the watchdog's own HTTP server that slow or many clients cannot starve.

aiohttp has no cap on connections and no timeout for a request's headers: 1,100 clients that connect and send
nothing held every file descriptor of the process for as long as they liked, and the watchdog went blind (its
``/proc`` reads failed with "Too many open files"). ``ConnectionGuard`` sits between the listening socket and
aiohttp's protocol:

- at most ``max_connections`` are open; at the cap, the oldest connection still waiting for a request's headers
  (slow headers, or idle keep-alive) is aborted to admit the new one, so a fresh ``/healthz`` always gets in; a
  connection whose headers have arrived is never evicted; when none is waiting the new one is answered 503;
- a connection that has not delivered a request's headers within ``request_timeout`` of opening (or of its last
  answer) is aborted, and a handler (body read included) gets ``request_timeout`` to answer, else 503.

Counts of what it closed, and why, are on the agent's ``/metrics``. The process needs ``max_connections`` file
descriptors on top of its own (a few dozen plus a few per worker watched).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from aiohttp import web

log = logging.getLogger("watchdog.server")
_REFUSE = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _Conn:
    transport: asyncio.Transport
    idle_since: float
    busy: int = 0
    headers_in: bool = False  # a request's headers are complete (set on arrival, before aiohttp's task runs)
    tail: bytes = b""

    @property
    def waiting(self) -> bool:
        """Still waiting for a request's headers: the kind of connection a slow client holds."""
        return not self.busy and not self.headers_in


class ConnectionGuard:
    """Caps and times the connections of one server; ``middleware`` and ``protocol_factory`` wire it in."""

    def __init__(
        self,
        max_connections: int = 256,
        request_timeout: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_close: Callable[[str], None] | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self._clock = clock
        self._on_close = on_close or (lambda reason: None)
        self._conns: dict[asyncio.BaseTransport, _Conn] = {}
        self.closed: dict[str, int] = {"evicted": 0, "refused": 0, "header_timeout": 0, "handler_timeout": 0}

    @property
    def open(self) -> int:
        return len(self._conns)

    def _count(self, reason: str) -> None:
        self.closed[reason] += 1
        self._on_close(reason)

    def protocol_factory(self, inner: Callable[[], asyncio.BaseProtocol]) -> Callable[[], asyncio.Protocol]:
        """Wrap aiohttp's protocol factory (the runner's ``server``)."""
        return lambda: _Guarded(self, inner)

    def _admit(self, transport: asyncio.Transport) -> bool:
        if len(self._conns) >= self.max_connections:
            idle = [c for c in self._conns.values() if c.waiting]
            if not idle:
                self._count("refused")
                transport.write(_REFUSE)
                transport.close()
                return False
            oldest = min(idle, key=lambda c: c.idle_since)
            self._drop(oldest, "evicted")
        self._conns[transport] = _Conn(transport, self._clock())
        return True

    def _drop(self, conn: _Conn, reason: str) -> None:
        self._conns.pop(conn.transport, None)
        self._count(reason)
        conn.transport.abort()  # frees the descriptor now; close() would wait for a client that does not read

    def _forget(self, transport: asyncio.BaseTransport) -> None:
        self._conns.pop(transport, None)

    def _received(self, transport: asyncio.BaseTransport, data: bytes) -> None:
        conn = self._conns.get(transport)
        if conn is not None and not conn.headers_in:
            seen = conn.tail + data
            conn.headers_in = b"\r\n\r\n" in seen
            conn.tail = seen[-3:]

    def sweep(self) -> None:
        """Abort connections that have kept a request's headers waiting longer than ``request_timeout``."""
        deadline = self._clock() - self.request_timeout
        for conn in [c for c in self._conns.values() if c.waiting and c.idle_since < deadline]:
            self._drop(conn, "header_timeout")

    async def sweeper(self) -> None:
        period = min(1.0, max(0.1, self.request_timeout / 5))  # late by a fifth at most, and a wake-up a second
        while True:
            await asyncio.sleep(period)
            self.sweep()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        conn = self._conns.get(request.transport) if request.transport is not None else None
        if conn is not None:
            conn.busy += 1
        try:
            with anyio.fail_after(self.request_timeout):
                return await handler(request)
        except TimeoutError:
            self._count("handler_timeout")
            return web.Response(status=503, text="request took too long\n", headers={"Connection": "close"})
        finally:
            if conn is not None:
                conn.busy -= 1
                conn.headers_in, conn.tail = False, b""
                conn.idle_since = self._clock()


class _Guarded(asyncio.Protocol):
    """Forwards everything to aiohttp's protocol; tells the guard when a connection opens and closes."""

    def __init__(self, guard: ConnectionGuard, inner: Callable[[], asyncio.BaseProtocol]) -> None:
        self._guard = guard
        self._make_inner = inner
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if not self._guard._admit(transport):
            return
        inner = self._make_inner()
        assert isinstance(inner, asyncio.Protocol)
        self._inner = inner
        inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None and self._transport is not None:
            self._guard._received(self._transport, data)
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._guard._forget(self._transport)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class Listener:
    """A started server: ``cleanup()`` stops listening, closes connections and the app (bounded by the caller)."""

    def __init__(self, runner: web.AppRunner, server: asyncio.base_events.Server, sweeper: asyncio.Task[None]):
        self.runner = runner
        self._server = server
        self._sweeper = sweeper

    @property
    def port(self) -> int:
        return int(self._server.sockets[0].getsockname()[1])

    async def cleanup(self) -> None:
        self._sweeper.cancel()
        self._server.close()
        await self.runner.cleanup()


async def listen(runner: web.AppRunner, guard: ConnectionGuard, host: str, port: int) -> Listener:
    """Listen on ``host:port`` with ``runner``'s app behind ``guard`` (the runner must be set up)."""
    assert runner.server is not None
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        guard.protocol_factory(runner.server), host or None, port, reuse_address=True, backlog=128
    )
    return Listener(runner, server, asyncio.ensure_future(guard.sweeper()))
