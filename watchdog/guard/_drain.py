"""Drain: stop taking new work, finish what is in flight, close streams, then let the server exit."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Iterable
from types import FrameType
from typing import Any, Literal

import anyio

from watchdog.guard import _metrics
from watchdog.guard._asgi import (
    DEFAULT_MCP_PATHS,
    ASGIApp,
    Message,
    PathSet,
    Receive,
    Scope,
    Send,
    is_event_stream,
    send_unavailable,
)
from watchdog.guard._limiter import Limiter
from watchdog.guard._metrics import RegistryArg, Sample

logger = logging.getLogger("watchdog.guard")

State = Literal["serving", "draining", "drained"]
_DISCONNECT: Message = {"type": "http.disconnect"}
_LOOPBACK = ("127.", "::1", "::ffff:127.")


class _Stream:
    __slots__ = ("closing", "finished", "scope", "started")

    def __init__(self) -> None:
        self.closing = anyio.Event()
        self.scope = anyio.CancelScope()
        self.started = False
        self.finished = False


class Drain:
    """ASGI middleware that drains this worker on SIGTERM: readiness 503, no new sessions, in-flight finishes.

    Killing a worker mid-call loses the call; a hard SIGTERM mid-stream is one of the war stories' five
    patterns. When a drain starts (a signal, ``POST drain_path``, or ``start()``):

    1. ``GET ready_path`` answers 503 (Kubernetes stops routing here) and ``watchdog_guard_draining`` reads 1.
    2. Where sibling workers share the listening socket (gunicorn, ``uvicorn --workers``), this worker stops
       accepting connections: new ones go to the others. (A lone server keeps accepting: refusing connections
       before the load balancer has seen readiness flip would fail calls that could still be served.)
    3. A request that still arrives on an open connection is served, and its response says
       ``Connection: close``, so the client's next call opens a connection to another worker: each connection
       carries at most one more request, and nothing a client sends is refused. New *sessions* are refused with
       503, ``Retry-After`` and ``Connection: close`` (a JSON-RPC error on MCP paths): an MCP ``initialize``
       without a session id, or a new event stream. Exempt paths (health, metrics) keep answering.
    4. Requests in flight (and the callers of the ``wait_for`` limiters) get up to ``timeout`` seconds, and the
       drain waits until no request has started for ``settle`` seconds: under steady load "nothing in flight"
       is a moment between two requests on a connection that has not yet been told to close.
    5. Event streams (GET ``text/event-stream``) are closed: the app is told the client disconnected, the
       response is ended properly, and after ``stream_close_timeout`` a stream that has not ended is cancelled.
    6. The server is let go as if SIGTERM had just reached it: the handler the server installed (uvicorn's,
       also under gunicorn's uvicorn worker) is called, and it shuts down with nothing left to wait for.

    Measured under load (``bench/sidecar_recycle.py``: 20 clients calling without pause while one gunicorn
    worker is recycled five times), refusing every new request during a drain failed more calls than a plain
    SIGKILL did: a draining worker on a shared socket keeps accepting connections, and a 503 is a failed call.
    Hence steps 2 and 3.

    Installing is automatic: the signal handlers are installed when the app's lifespan starts (or at the first
    request, for an app without one) and restored when it ends. A signal that arrives during a drain changes
    nothing: the drain is already bounded by ``timeout``. Signal handlers only record and wake the loop; the
    drain runs as a task on the loop.

    The HTTP trigger is off unless ``drain_path`` is set; then ``POST drain_path`` starts a drain when it comes
    from a loopback address and, if ``token`` is set, carries ``Authorization: Bearer <token>``. Set a token when
    a proxy in the same pod (a service mesh) makes outside traffic look local. Under gunicorn a URL reaches
    whichever worker accepts the connection, so to drain one chosen worker, send it the signal.

    asyncio only (signals and uvicorn are); on trio the middleware passes requests through and ``start()``
    refuses.

    Args:
        app: the ASGI app (usually the outermost wrapper, so that it sees every request).
        timeout: seconds in-flight work may take after the drain starts.
        signals: the signals that start a drain (SIGTERM by default; add e.g. SIGUSR2 for a drain-only signal).
        ready_path: the readiness endpoint this middleware answers.
        drain_path: where ``POST`` starts a drain; None (the default) turns the HTTP trigger off.
        token: required bearer token for ``drain_path``.
        retry_after: seconds suggested to refused clients.
        stream_close_timeout: seconds streams get to end after being told to.
        exempt_paths: served as usual during a drain.
        mcp_paths: where refusals are JSON-RPC errors.
        wait_for: limiters whose callers the drain also waits for (work whose HTTP request is already over,
            such as a tool call answered over a legacy SSE stream).
        stop_accepting: stop accepting connections when the drain starts; None (the default) does so when
            sibling workers share the listening socket (under gunicorn, or a ``uvicorn --workers`` child).
        settle: seconds without a new request before the drain hands over (within ``timeout``).
        exit: hand over to the server at the end (True); False leaves the process running (tests, embedding).
        registry: where metrics go (``"default"``, a ``CollectorRegistry``, or None).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        timeout: float = 20.0,
        signals: Iterable[signal.Signals] = (signal.SIGTERM,),
        ready_path: str = "/ready",
        drain_path: str | None = None,
        token: str | None = None,
        retry_after: float = 5.0,
        stream_close_timeout: float = 2.0,
        exempt_paths: Iterable[str] = ("/health", "/healthz", "/metrics"),
        mcp_paths: Iterable[str] = DEFAULT_MCP_PATHS,
        wait_for: Iterable[Limiter] = (),
        exit: bool = True,
        registry: RegistryArg = "default",
        stop_accepting: bool | None = None,
        settle: float = 0.5,
    ) -> None:
        if not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 seconds, not {timeout!r}")
        self.app = app
        self.timeout = timeout
        self.signals = tuple(signals)
        self.ready_path = ready_path
        self.drain_path = drain_path
        self.retry_after = retry_after
        self.stream_close_timeout = stream_close_timeout
        self.exit = exit
        self._token = token
        self._exempt = PathSet(exempt_paths)
        self._mcp = PathSet(mcp_paths)
        self._wait_for = tuple(wait_for)
        self._state: State = "serving"
        self._in_flight = 0
        self._stop_accepting = stop_accepting
        self.settle = settle
        self._last_started = 0.0
        self._streams: set[_Stream] = set()
        self._installed = False
        self._previous: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._drained = anyio.Event()
        self._hub = _metrics.hub_for(registry)
        self._cold = self._hub is not None and self._hub.multiprocess
        if self._hub is not None:
            self._hub.add("drain", "http", self)

    # -- ASGI ---------------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if not self._installed:
                self._install()
            path = scope["path"]
            if path == self.ready_path:
                await self._ready(send)
            elif path == self.drain_path:
                await self._drain_endpoint(scope, send)
            elif path in self._exempt:
                await self.app(scope, receive, send)
            elif self._state != "serving":
                await self._during_drain(scope, receive, send)
            elif is_event_stream(scope):
                await self._stream(scope, receive, send)
            else:
                await self._tracked(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif kind == "websocket" and self._state != "serving":
            await send({"type": "websocket.close", "code": 1012, "reason": "server is draining"})
        else:
            await self.app(scope, receive, send)

    async def _tracked(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._last_started = time.monotonic()
        self._in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._in_flight -= 1

    async def _during_drain(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A request on a connection still open during a drain: served and told to close, unless it starts a
        new session (a new event stream, or an MCP ``initialize`` outside any session), which is refused."""
        refuse = is_event_stream(scope)
        if not refuse and scope.get("method") == "POST" and scope["path"] in self._mcp and not _in_session(scope):
            first = await receive()
            refuse = bool(_INITIALIZE.search(first.get("body", b"")))
            receive = _replay(first, receive)
        if refuse:
            await send_unavailable(
                send,
                message="server is draining (shutting down); open the session on another connection",
                retry_after=self.retry_after,
                jsonrpc=scope["path"] in self._mcp,
                close=True,
            )
            return
        await self._tracked(scope, receive, _closing(send))

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self._install()
            elif message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                self._uninstall()
            await send(message)

        await self.app(scope, receive, lifespan_send)

    async def _ready(self, send: Send) -> None:
        ready = self._state == "serving"
        body = json.dumps({"status": "ready" if ready else self._state, "pid": os.getpid()}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200 if ready else 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _drain_endpoint(self, scope: Scope, send: Send) -> None:
        if scope.get("method") != "POST":
            return await _json(send, 405, {"error": "POST to start a drain"}, [(b"allow", b"POST")])
        client = scope.get("client") or ("", 0)
        if not str(client[0]).startswith(_LOOPBACK):
            return await _json(send, 403, {"error": "drain is accepted from loopback addresses only"})
        if self._token is not None:
            auth = dict(scope.get("headers", ())).get(b"authorization", b"")
            if not hmac.compare_digest(auth, b"Bearer " + self._token.encode()):
                return await _json(send, 401, {"error": "drain needs 'Authorization: Bearer <token>'"})
        self.start(reason=f"POST {self.drain_path} from {client[0]}")
        await _json(send, 202, {"status": self._state, "pid": os.getpid(), "timeout": self.timeout})

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = _Stream()

        async def stream_receive() -> Message:
            if stream.closing.is_set():
                return _DISCONNECT
            message: Message | None = None
            async with anyio.create_task_group() as tg:

                async def closed() -> None:
                    await stream.closing.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(closed)
                message = await receive()
                tg.cancel_scope.cancel()
            return _DISCONNECT if message is None else message

        async def stream_send(message: Message) -> None:
            if stream.closing.is_set() and stream.started:
                # The app was told its client left; like a server does for a gone client, drop what it still
                # sends (the MCP SDK's SSE route, for one, answers a second response after its stream ends).
                return
            if message["type"] == "http.response.start":
                stream.started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                stream.finished = True
            await send(message)

        self._streams.add(stream)
        try:
            with stream.scope:
                await self.app(scope, stream_receive, stream_send)
        finally:
            self._streams.discard(stream)
            if stream.closing.is_set() and stream.started and not stream.finished:
                # End the chunked response properly: the client sees the stream end, not a broken connection.
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})

    # -- triggers -----------------------------------------------------------------------------------------
    def _install(self) -> None:
        self._installed = True
        if self._hub is not None:
            self._cold = False
            _metrics.activate_process()
            self._hub.activate(self)
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            logger.info("drain: not on asyncio; signals will not start a drain")
            return
        if threading.current_thread() is not threading.main_thread():
            logger.info("drain: not in the main thread; signals will not start a drain (start() still works)")
            return
        for sig in self.signals:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def _uninstall(self) -> None:
        for sig, handler in self._previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # A signal handler only records and wakes the loop; the drain itself runs as a task there.
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.start, f"signal {signal.Signals(signum).name}")

    def start(self, reason: str = "start() called") -> bool:
        """Start draining (from the event loop's thread). Returns False when a drain has already begun."""
        if self._state != "serving":
            logger.info("drain: %s ignored, already %s", reason, self._state)
            return False
        loop = asyncio.get_running_loop()  # raises off asyncio: the drain task needs it
        self._state = "draining"
        stop = _shares_listening_socket() if self._stop_accepting is None else self._stop_accepting
        closed = _stop_listening(loop) if stop else 0
        logger.warning(
            "drain started (%s): readiness 503, %s, new sessions refused, open connections closed after their "
            "next response; %d request(s) and %d stream(s) open, up to %g s for in-flight work",
            reason,
            f"stopped accepting ({closed} listener(s) closed here; sibling workers keep theirs)"
            if stop
            else "still accepting (no sibling workers share the socket)",
            self._in_flight,
            len(self._streams),
            self.timeout,
        )
        self._task = loop.create_task(self._drain())
        return True

    async def _drain(self) -> None:
        started = time.monotonic()
        deadline = started + self.timeout
        # Polled: in-flight counts change on every request and in the wait_for limiters; a 20 Hz look during a
        # drain costs nothing, an event on every request's way out would.
        while (self.in_flight or time.monotonic() - self._last_started < self.settle) and (time.monotonic() < deadline):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        left = self.in_flight
        streams = len(self._streams)
        await self._close_streams()
        self._state = "drained"
        took = time.monotonic() - started
        if left:
            logger.warning("drain: %d call(s) still in flight after %g s; exiting anyway", left, self.timeout)
        logger.warning("drain done in %.1f s (%d stream(s) closed)", took, streams)
        self._drained.set()
        if self.exit:
            self._hand_over()

    async def _close_streams(self) -> None:
        streams = list(self._streams)
        for s in streams:
            s.closing.set()
        deadline = time.monotonic() + self.stream_close_timeout
        while self._streams and time.monotonic() < deadline:  # noqa: ASYNC110 - polled, as above
            await asyncio.sleep(0.02)
        for s in list(self._streams):
            s.scope.cancel()
        deadline = time.monotonic() + 1.0
        while self._streams and time.monotonic() < deadline:  # noqa: ASYNC110 - polled, as above
            await asyncio.sleep(0.02)

    def _hand_over(self) -> None:
        """Let the server exit as if SIGTERM had reached it now (through the handler it installed)."""
        sig = signal.SIGTERM
        handler = self._previous.get(sig) if sig in self._previous else signal.getsignal(sig)
        self._uninstall()
        if callable(handler):
            handler(sig, None)
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), sig)
        else:
            logger.warning("drain: SIGTERM is ignored in this process, so it keeps running after the drain")

    async def wait(self) -> None:
        """Return when a drain has finished (closing streams included)."""
        await self._drained.wait()

    # -- state --------------------------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def in_flight(self) -> int:
        """Requests in progress (streams not included), plus the callers of the ``wait_for`` limiters."""
        return self._in_flight + sum(limiter.in_flight for limiter in self._wait_for)

    @property
    def streams(self) -> int:
        return len(self._streams)

    def _metric_samples(self) -> Iterable[Sample]:
        return ((_metrics.DRAINING, (), 0.0 if self._state == "serving" else 1.0),)


_INITIALIZE = re.compile(rb'"method"\s*:\s*"initialize"')


def _replay(first: Message, receive: Receive) -> Receive:
    """A receive that gives ``first`` (already read) again, then reads on."""
    pending: list[Message] = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


def _closing(send: Send) -> Send:
    """A send that marks the response ``Connection: close`` (uvicorn then closes the connection after it)."""

    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return closing


def _shares_listening_socket() -> bool:
    """Do sibling worker processes accept on the same listening socket as this one?

    Under gunicorn the worker has gunicorn imported (its worker class is gunicorn's); a ``uvicorn --workers``
    child is a multiprocessing child of the supervisor that holds the socket.
    """
    import multiprocessing
    import sys

    return "gunicorn" in sys.modules or multiprocessing.parent_process() is not None


def _stop_listening(loop: asyncio.AbstractEventLoop) -> int:
    """Stop accepting connections in this process: close this loop's listening servers.

    ``asyncio.Server.close`` closes this process's copy of each listening socket and keeps the connections it
    accepted; sibling workers hold their own copies and keep accepting, so the kernel hands new connections to
    them. The servers are found once, at drain time, among the live objects: uvicorn does not hand its server to
    the app.
    """
    import gc

    servers = [o for o in gc.get_objects() if isinstance(o, asyncio.base_events.Server) and o.get_loop() is loop]
    for server in servers:
        server.close()
    return len(servers)


def _in_session(scope: Scope) -> bool:
    """A request of an MCP session that already exists (stateful streamable HTTP, or legacy SSE's POSTs)."""
    if any(key == b"mcp-session-id" for key, _ in scope.get("headers", ())):
        return True
    return b"session_id=" in scope.get("query_string", b"")


async def _json(send: Send, status: int, payload: dict[str, Any], extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
