"""The streamable-HTTP transport: every message is a POST to one URL; the session ends with an HTTP DELETE.

What the official SDK's server (mcp 2.3) requires on this wire, found by reading it and by experiment:

- every POST: ``Content-Type: application/json`` and ``Accept: application/json, text/event-stream`` (406
  without both, unless the server is in JSON-only mode); the answer comes as JSON or as an SSE stream.
- handshake era (2024-11-05 .. 2025-11-25): ``initialize`` goes without ``MCP-Protocol-Version`` (a header
  naming a handshake revision, or none, routes to the handshake transport); afterwards every request carries
  ``MCP-Protocol-Version: <negotiated>`` and, when the server issued one, ``Mcp-Session-Id``. A stateful
  server answers a request without its session id with 400, and one for an ended session with 404. A stateless
  server issues no session id, and answers DELETE with 405: there is nothing to end.
- 2026-07-28: no handshake and no session. Each request carries ``MCP-Protocol-Version``, ``Mcp-Method`` and,
  for ``tools/call``, ``Mcp-Name`` (the tool), each equal to the body's value (else -32020 header mismatch),
  plus the ``_meta`` envelope in the body. Unknown methods are HTTP 404 with JSON-RPC -32601.
- SSE polling (2025-11-25, SEP-1699): a server may close an answer's stream cleanly after an event id; the
  client waits the stream's ``retry:`` (default 1 s) and resumes it with GET and ``Last-Event-ID``, as often
  as the server asks (up to ``MAX_RESUMES``), all inside the phase's timeout.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anyio

from watchdog.probes._result import PhaseError
from watchdog.probes._sse_parser import EventReader
from watchdog.probes._wire import HttpStatusError, StreamEnded, answer_from_events, excerpt, read_answer, read_body

SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
DEFAULT_RETRY_MS = 1000
"""How long to wait before resuming a closed stream whose server gave no ``retry:`` (the SDK's default)."""
MAX_RESUMES = 20


class StreamableHttpChannel:
    """One MCP session over streamable HTTP, on a shared ``aiohttp.ClientSession``."""

    transport = "streamable-http"

    def __init__(self, http: aiohttp.ClientSession, url: str, headers: dict[str, str], timeout: aiohttp.ClientTimeout):
        self._http = http
        self._url = url
        self._headers = {
            **headers,
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        self._timeout = timeout
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self.resumes = 0
        """How many times an answer's stream was resumed (GET with ``Last-Event-ID``) in this session."""

    @property
    def opened(self) -> bool:
        """Whether there is a session to end."""
        return self.session_id is not None

    async def open(self) -> str | None:
        """Nothing to open on this transport (each message is its own request)."""
        return None

    def _request_headers(self, extra: dict[str, str]) -> dict[str, str]:
        h = dict(self._headers)
        if self.protocol_version is not None:
            h[VERSION_HEADER] = self.protocol_version
        if self.session_id is not None:
            h[SESSION_HEADER] = self.session_id
        h.update(extra)
        return h

    async def request(self, message: dict[str, Any], extra: dict[str, str]) -> dict[str, Any]:
        """POST one request and return its result (JSON-RPC errors raise ``RpcError``)."""
        body = json.dumps(message, separators=(",", ":")).encode()
        async with self._http.post(
            self._url, data=body, headers=self._request_headers(extra), timeout=self._timeout, allow_redirects=False
        ) as resp:
            if self.session_id is None and resp.status < 300 and (sid := resp.headers.get(SESSION_HEADER)):
                self.session_id = sid
            try:
                return await read_answer(resp, int(message["id"]))
            except StreamEnded as exc:
                if not exc.resumable:
                    raise
                ended = exc
        return await self._resume(int(message["id"]), ended, extra)

    async def _resume(self, want_id: int, ended: StreamEnded, extra: dict[str, str]) -> dict[str, Any]:
        """GET the closed stream again with ``Last-Event-ID`` after its ``retry:`` until the answer comes."""
        retry_ms = ended.retry_ms if ended.retry_ms is not None else DEFAULT_RETRY_MS
        last_id = ended.last_event_id
        for _ in range(MAX_RESUMES):
            assert last_id is not None
            left = anyio.current_effective_deadline() - anyio.current_time()
            if retry_ms / 1000 >= left:
                raise PhaseError(
                    f"the server closed the answer's SSE stream and asks to wait {retry_ms / 1000:g} s before "
                    f"resuming it (retry: {retry_ms}), longer than the {max(left, 0):.1f} s left in this phase"
                )
            await anyio.sleep(retry_ms / 1000)
            self.resumes += 1
            headers = self._request_headers({**extra, "Accept": "text/event-stream", "Last-Event-ID": last_id})
            headers.pop("Content-Type", None)
            async with self._http.get(self._url, headers=headers, timeout=self._timeout, allow_redirects=False) as resp:
                ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if resp.status != 200 or ctype != "text/event-stream":
                    raw = await read_body(resp, 64 * 1024)
                    why = f"HTTP {resp.status}" if resp.status != 200 else f"Content-Type {ctype or 'none'!r}"
                    tail = f": {excerpt(raw.decode('utf-8', 'replace'))}" if raw.strip() else ""
                    raise PhaseError(
                        f"the server closed the answer's SSE stream and refused to resume it "
                        f"(GET with Last-Event-ID {excerpt(last_id, 40)!r}: {why}{tail})"
                    )
                reader = EventReader(resp.content)
                try:
                    return await answer_from_events(reader, want_id, resp.status)
                except StreamEnded as exc:
                    if not exc.resumable and not (exc.last_event_id is None and not reader.cut_mid_event):
                        raise
                    last_id = exc.last_event_id or last_id
                    retry_ms = exc.retry_ms if exc.retry_ms is not None else retry_ms
        raise PhaseError(f"the server closed the answer's SSE stream {MAX_RESUMES + 1} times before the answer")

    async def notify(self, message: dict[str, Any], extra: dict[str, str]) -> None:
        """POST one notification; the server must accept it (202)."""
        body = json.dumps(message, separators=(",", ":")).encode()
        async with self._http.post(
            self._url, data=body, headers=self._request_headers(extra), timeout=self._timeout, allow_redirects=False
        ) as resp:
            raw = await read_body(resp, 64 * 1024)
            if resp.status >= 300:
                raise HttpStatusError(resp.status, resp.reason or "", raw.decode("utf-8", "replace"))

    async def end(self) -> str:
        """DELETE the session; say what happened (405: the server does not end sessions, which is allowed)."""
        assert self.session_id is not None
        async with self._http.delete(
            self._url, headers=self._request_headers({}), timeout=self._timeout, allow_redirects=False
        ) as resp:
            raw = await read_body(resp, 64 * 1024)
        short = self.session_id[:8]
        if resp.status in (200, 202, 204):
            return f"session {short}… ended (HTTP {resp.status})"
        if resp.status == 405:
            return f"the server does not end sessions on request (HTTP 405); session {short}… left to expire"
        if resp.status == 404:
            return f"session {short}… was already gone (HTTP 404)"
        raise PhaseError(
            f"DELETE of session {short}… answered HTTP {resp.status}: {excerpt(raw.decode(errors='replace'))}"
        )

    async def close(self) -> None:
        """Nothing is held between requests: every response was released when it was read."""
