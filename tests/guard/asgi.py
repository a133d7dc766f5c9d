"""Calling ASGI apps directly, as a server would: scopes, a request helper, and apps to protect (test helpers).

The middleware is pure ASGI, so the protocol is its whole interface; tests/guard/test_example.py runs the same
middleware under a real uvicorn.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

Message = dict[str, Any]
ASGI = Callable[[Any, Any, Any], Awaitable[None]]


def http_scope(
    path: str,
    method: str = "POST",
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    query: bytes = b"",
    client: tuple[str, int] = ("127.0.0.1", 40000),
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers or [],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }


def stream_scope(path: str = "/sse", **kw: Any) -> dict[str, Any]:
    return http_scope(path, "GET", headers=[(b"accept", b"text/event-stream")], **kw)


@dataclass
class Response:
    messages: list[Message] = field(default_factory=list)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def ended(self) -> bool:
        """The last body message said no more body: the response ended properly."""
        last = self.messages[-1] if self.messages else {}
        return last.get("type") == "http.response.body" and not last.get("more_body", False)


async def request(
    app: ASGI, scope: dict[str, Any], disconnect: anyio.Event | None = None, body: bytes = b"{}"
) -> Response:
    """One request with ``body``; the client 'disconnects' (receive returns http.disconnect) when ``disconnect``
    is set."""
    response = Response()
    sent_body = False

    async def receive() -> Message:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await (disconnect or anyio.Event()).wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        response.messages.append(message)

    await app(scope, receive, send)
    return response


class SlowApp:
    """Answers 200 once ``release`` is set; counts calls; streams events for GET text/event-stream."""

    def __init__(self, *, listens: bool = True, answers_again: bool = False) -> None:
        self.release = anyio.Event()
        self.calls = 0
        self.bodies: list[bytes] = []
        self.listens = listens  # a stream that never calls receive() must be cancelled to end
        self.answers_again = answers_again  # after its stream, a second response (as the MCP SDK's SSE route)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        accept = dict(scope["headers"]).get(b"accept", b"")
        if b"text/event-stream" in accept:
            headers = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"data: hello\n\n", "more_body": True})
            if self.listens:
                while (await receive())["type"] != "http.disconnect":
                    pass
            else:
                await anyio.sleep_forever()
            if self.answers_again:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b""})
            return  # like sse-starlette: no final chunk after a disconnect
        self.bodies.append((await receive()).get("body", b""))
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
