"""JSON-RPC over HTTP as MCP servers speak it: read an answer given as plain JSON or as an SSE stream.

Every way an answer can be wrong becomes a ``PhaseError`` with a reason an operator can act on; nothing the
server sends can make the probe raise anything else or read without bound.
"""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp

from watchdog.probes._result import PhaseError
from watchdog.probes._sse_parser import EventReader, MalformedSSE

MAX_BODY_BYTES = 8 * 1024 * 1024
"""The largest plain-JSON answer the probe reads; a tools/list of a big server fits many times over."""


class RpcError(PhaseError):
    """The server answered with a JSON-RPC error object (``code``, ``message``, ``data``)."""

    def __init__(self, code: int, message: str, data: Any, http_status: int) -> None:
        extra = f": {data}" if isinstance(data, str) and data and data not in message and len(data) < 200 else ""
        status = f" (HTTP {http_status})" if http_status >= 300 else ""
        super().__init__(f"JSON-RPC error {code} {message}{extra}{status}")
        self.code = code
        self.data = data
        self.http_status = http_status


class HttpStatusError(PhaseError):
    """The server answered with an HTTP error status and no JSON-RPC error to explain it."""

    def __init__(self, status: int, reason: str, body: str) -> None:
        tail = f": {excerpt(body)}" if body.strip() else ""
        hint = " (check the probe's auth and headers)" if status in (401, 403) else ""
        super().__init__(f"HTTP {status} {reason}{hint}{tail}".rstrip())
        self.status = status


class StreamEnded(PhaseError):
    """An SSE answer stream ended before the answer; ``resumable`` when a client may GET it again.

    A stream closed cleanly after an event id is how a server polls (SEP-1699): the client waits ``retry_ms``
    and resumes it with GET and ``Last-Event-ID``. A stream cut mid-event, or one that gave no id, is over.
    """

    def __init__(self, want_id: int, *, mid_event: bool, last_event_id: str | None, retry_ms: int | None) -> None:
        mid = " in the middle of an event" if mid_event else ""
        super().__init__(f"the SSE stream ended{mid} before the answer to request {want_id}")
        self.last_event_id = last_event_id
        self.retry_ms = retry_ms
        self.resumable = not mid_event and last_event_id is not None


def excerpt(text: str, limit: int = 200) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


async def read_body(resp: aiohttp.ClientResponse, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body, or a ``PhaseError`` when it is larger than ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await resp.content.readany():
        size += len(chunk)
        if size > limit:
            raise PhaseError(f"the response is larger than {limit // (1024 * 1024)} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes | str, what: str) -> Any:
    """Decode JSON or raise ``PhaseError`` quoting the start of what came instead."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        raise PhaseError(f"malformed {what}: not JSON: {excerpt(text, 120)!r}") from None


def result_of(message: Any, want_id: int, http_status: int) -> dict[str, Any]:
    """The ``result`` of a JSON-RPC response to request ``want_id``; ``RpcError`` for an error answer."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise PhaseError(f"malformed JSON-RPC response: {excerpt(json.dumps(message), 120)}")
    if "error" in message:
        err = message["error"]
        if not isinstance(err, dict) or not isinstance(err.get("code"), int):
            raise PhaseError(f"malformed JSON-RPC error: {excerpt(json.dumps(err), 120)}")
        raise RpcError(err["code"], str(err.get("message", "")), err.get("data"), http_status)
    if message.get("id") != want_id:
        raise PhaseError(f"JSON-RPC response for id {message.get('id')!r}, expected {want_id}")
    result = message.get("result")
    if not isinstance(result, dict):
        raise PhaseError(f"malformed JSON-RPC response: 'result' is {type(result).__name__}, expected an object")
    return result


def _is_answer_to(message: Any, want_id: int) -> bool:
    return isinstance(message, dict) and ("result" in message or "error" in message) and message.get("id") == want_id


async def answer_from_events(reader: EventReader, want_id: int, http_status: int) -> dict[str, Any]:
    """Read events until the answer to ``want_id``; notifications and other messages on the way are skipped."""
    while True:
        try:
            event = await reader.next()
        except MalformedSSE as exc:
            raise PhaseError(str(exc)) from None
        except aiohttp.ClientPayloadError:
            raise PhaseError("malformed SSE stream: the connection broke off in the middle of the stream") from None
        if event is None:
            raise StreamEnded(
                want_id, mid_event=reader.cut_mid_event, last_event_id=reader.last_event_id, retry_ms=reader.retry_ms
            )
        if event.event != "message" or not event.data:
            continue  # an empty data line is a priming event (2025-11-25 servers with an event store), as the SDK skips
        try:
            message = json.loads(event.data)
        except (ValueError, RecursionError):
            raise PhaseError(f"malformed SSE event: data is not JSON: {excerpt(event.data, 120)!r}") from None
        if isinstance(message, dict) and "error" in message and message.get("id") is None:
            return result_of(message, want_id, http_status)  # an error the server could not tie to a request
        if _is_answer_to(message, want_id):
            return result_of(message, want_id, http_status)


async def read_answer(resp: aiohttp.ClientResponse, want_id: int) -> dict[str, Any]:
    """The result of request ``want_id`` from a streamable-HTTP response, whatever form the server chose."""
    ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if resp.status >= 300:
        raw = await read_body(resp, 64 * 1024)
        if ctype == "application/json":
            try:
                message = json.loads(raw)
            except ValueError:
                message = None
            if isinstance(message, dict) and isinstance(message.get("error"), dict):
                result_of(message, want_id, resp.status)  # raises RpcError
        raise HttpStatusError(resp.status, resp.reason or "", raw.decode("utf-8", "replace"))
    if resp.status == 202:
        raise PhaseError("the server accepted the request (HTTP 202) but sent no answer")
    if ctype == "text/event-stream":
        return await answer_from_events(EventReader(resp.content), want_id, resp.status)
    if ctype == "application/json":
        return result_of(parse_json(await read_body(resp), "JSON answer"), want_id, resp.status)
    shown = ctype or "none"
    raise PhaseError(f"unexpected Content-Type {shown!r} (expected application/json or text/event-stream)")
