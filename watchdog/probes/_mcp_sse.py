"""The SSE transport (the 2024-11-05 one): GET an event stream, POST messages to the endpoint it names.

The server's first event is ``endpoint`` with a relative URL (``/messages/?session_id=…``, or ``?sessionId=…``
from the TypeScript SDK); every message is
POSTed there and answered ``202 Accepted``, and the real answers arrive on the stream as ``message`` events.
The session lives as long as the stream: ending it is closing the stream. The official SDK's server serves
both protocol eras on this transport; the first request decides (a ``server/discover`` with the 2026-07-28
envelope, or ``initialize``). It checks ``Host`` against 127.0.0.1/localhost when it listens there.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import aiohttp

from watchdog.probes._result import PhaseError
from watchdog.probes._sse_parser import EventReader, MalformedSSE
from watchdog.probes._wire import HttpStatusError, answer_from_events, excerpt, read_body


class SseChannel:
    """One MCP session over the SSE transport; the GET stream is held open from ``open`` to ``close``."""

    transport = "sse"

    def __init__(self, http: aiohttp.ClientSession, url: str, headers: dict[str, str], timeout: aiohttp.ClientTimeout):
        self._http = http
        self._url = url
        self._headers = headers
        self._timeout = timeout
        self._stream: aiohttp.ClientResponse | None = None
        self._events: EventReader | None = None
        self._endpoint: str | None = None
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self.resumes = 0  # answers come on the one stream of the session: nothing to resume

    @property
    def opened(self) -> bool:
        return self._stream is not None

    async def open(self) -> str | None:
        """GET the stream and wait for the ``endpoint`` event; returns a detail for the ``connect`` phase."""
        resp = await self._http.get(
            self._url,
            headers={**self._headers, "Accept": "text/event-stream", "Cache-Control": "no-cache"},
            timeout=self._timeout,
            allow_redirects=False,
        )
        self._stream = resp  # held from here on, so close() releases it whatever happens next
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if resp.status != 200:
            raw = await read_body(resp, 64 * 1024)
            raise HttpStatusError(resp.status, resp.reason or "", raw.decode("utf-8", "replace"))
        if ctype != "text/event-stream":
            raise PhaseError(f"expected an event stream, got Content-Type {ctype or 'none'!r}")
        self._events = EventReader(resp.content)
        while True:
            try:
                event = await self._events.next()
            except MalformedSSE as exc:
                raise PhaseError(str(exc)) from None
            if event is None:
                raise PhaseError("the SSE stream ended before it named its message endpoint")
            if event.event == "endpoint":
                break
        endpoint = urllib.parse.urljoin(self._url, event.data.strip())
        mine, theirs = urllib.parse.urlsplit(self._url), urllib.parse.urlsplit(endpoint)
        if (mine.scheme, mine.netloc) != (theirs.scheme, theirs.netloc):
            raise PhaseError(f"the stream names an endpoint on another origin: {excerpt(endpoint, 120)!r}")
        self._endpoint = endpoint
        query = urllib.parse.parse_qs(theirs.query)
        sid = query.get("session_id") or query.get("sessionId")  # the Python SDK's name, the TypeScript SDK's
        self.session_id = sid[0] if sid else None
        return f"session {self.session_id[:8]}…" if self.session_id else "stream open"

    async def _post(self, message: dict[str, Any], extra: dict[str, str]) -> None:
        assert self._endpoint is not None
        headers = {**self._headers, "Content-Type": "application/json", **extra}
        body = json.dumps(message, separators=(",", ":")).encode()
        async with self._http.post(
            self._endpoint, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
        ) as resp:
            raw = await read_body(resp, 64 * 1024)
            if resp.status >= 300:
                raise HttpStatusError(resp.status, resp.reason or "", raw.decode("utf-8", "replace"))

    async def request(self, message: dict[str, Any], extra: dict[str, str]) -> dict[str, Any]:
        """POST a request, then read the stream until its answer."""
        await self._post(message, extra)
        assert self._events is not None
        assert self._stream is not None
        return await answer_from_events(self._events, int(message["id"]), self._stream.status)

    async def notify(self, message: dict[str, Any], extra: dict[str, str]) -> None:
        await self._post(message, extra)

    async def end(self) -> str:
        """Close the stream: on this transport that is how a session ends."""
        await self.close()
        return f"closed the SSE stream (session {self.session_id[:8]}…)" if self.session_id else "closed the SSE stream"

    async def close(self) -> None:
        """Release the stream's connection (idempotent, never blocks)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
