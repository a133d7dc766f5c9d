"""An incremental ``text/event-stream`` parser that never trusts the server.

It follows the WHATWG HTML "event stream interpretation" rules (lines end in CRLF, LF or CR; ``data`` lines
join with newlines; a blank line dispatches; ``:`` starts a comment; unknown fields are ignored) and adds the
bounds a watchdog needs: an event larger than ``max_event_bytes`` or bytes that are not UTF-8 are reported as
``MalformedSSE`` instead of growing memory or raising something unexpected. Feeding happens in whatever
chunks the network delivers, so a CR at the end of one chunk may still be followed by its LF in the next.
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from dataclasses import dataclass

import aiohttp

DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024
_EOL = re.compile(r"[\r\n]")


class MalformedSSE(Exception):
    """Raised when an event stream cannot be read as one (not UTF-8, an event over the size bound)."""


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event: its type (``message`` when the server named none), data, id and retry hint."""

    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Turn chunks of bytes into ``SSEEvent``s; ``pending`` says whether an event was cut off mid-way."""

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._max = max_event_bytes
        self._buf = ""
        self._first = True
        self._event = ""
        self._data: list[str] = []
        self._data_len = 0
        self._id: str | None = None
        self._retry: int | None = None
        self._dirty = False

    @property
    def last_event_id(self) -> str | None:
        """The last ``id:`` seen, dispatched or not (what a reconnecting client sends as ``Last-Event-ID``)."""
        return self._id

    @property
    def retry_ms(self) -> int | None:
        """The last ``retry:`` hint in milliseconds: how long the server asks a client to wait to reconnect."""
        return self._retry

    @property
    def pending(self) -> bool:
        """True when some lines of an event arrived but not the blank line that ends it."""
        return self._dirty or bool(self._buf)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse another chunk; return the events it completed (possibly none)."""
        try:
            text = self._decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise MalformedSSE(f"malformed SSE stream: not UTF-8 ({exc.reason})") from None
        if self._first and text:
            self._first = False
            text = text.removeprefix("\ufeff")
        self._buf += text
        events: list[SSEEvent] = []
        buf, pos = self._buf, 0
        # One pass over the buffer with a moving position, cut once at the end: slicing the rest of the buffer
        # off after every line made a chunk of n short lines (a stream of blank lines) cost O(n^2).
        while (m := _EOL.search(buf, pos)) is not None:
            i = m.start()
            if buf[i] == "\r":
                if i + 1 == len(buf):
                    break  # a CR at the end of a chunk may be the first half of CRLF
                skip = 2 if buf[i + 1] == "\n" else 1
            else:
                skip = 1
            event = self._line(buf[pos:i])
            if event is not None:
                events.append(event)
            pos = i + skip
        self._buf = buf[pos:]
        if len(self._buf) + self._data_len > self._max:
            raise MalformedSSE(f"malformed SSE event: larger than {self._max} bytes without an end")
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment (servers send ": ping" keepalives)
        name, sep, value = line.partition(":")
        if sep:
            value = value.removeprefix(" ")
        self._dirty = True
        if name == "data":
            self._data.append(value)
            self._data_len += len(value) + 1
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event, self._data, self._data_len, self._event, self._dirty = self._data, self._event, [], 0, "", False
        if not data:
            return None  # per the spec, an event with no data is not dispatched (priming events, id-only)
        return SSEEvent(event=event or "message", data="\n".join(data), id=self._id, retry=self._retry)


class EventReader:
    """Read events one at a time from an aiohttp response body, within a byte budget for the whole stream."""

    def __init__(self, content: aiohttp.StreamReader, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._content = content
        self._parser = SSEParser()
        self._ready: deque[SSEEvent] = deque()
        self._budget = max_bytes
        self.eof = False

    @property
    def last_event_id(self) -> str | None:
        """The last event id the stream gave (``Last-Event-ID`` for resuming it)."""
        return self._parser.last_event_id

    @property
    def retry_ms(self) -> int | None:
        """The server's last ``retry:`` hint, in milliseconds."""
        return self._parser.retry_ms

    @property
    def cut_mid_event(self) -> bool:
        """True when the stream ended (or broke) in the middle of an event."""
        return self._parser.pending

    async def next(self) -> SSEEvent | None:
        """The next event, or None at the end of the stream."""
        while not self._ready:
            if self.eof:
                return None
            chunk = await self._content.readany()
            if not chunk:
                self.eof = True
                return None
            self._budget -= len(chunk)
            if self._budget < 0:
                raise MalformedSSE("malformed SSE stream: longer than the probe's response size limit")
            self._ready.extend(self._parser.feed(chunk))
        return self._ready.popleft()
