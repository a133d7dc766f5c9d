"""The trivial ASGI apps ``bench/guard_asgi.py`` serves with uvicorn: bare, behind ConnectionLimit, behind both."""

from __future__ import annotations

from typing import Any

from watchdog.guard import ConnectionLimit, Drain

BODY = b'{"ok":true}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def plain(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


limited = ConnectionLimit(plain, 1000)
guarded = Drain(ConnectionLimit(plain, 1000, name="guarded"))
