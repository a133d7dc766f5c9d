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
        while True:
            cut = self._next_line_end()
            if cut is None:
                break
            end, skip = cut
            line, self._buf = self._buf[:end], self._buf[end + skip :]
            event = self._line(line)
            if event is not None:
                events.append(event)
        if len(self._buf) + self._data_len > self._max:
            raise MalformedSSE(f"malformed SSE event: larger than {self._max} bytes without an end")
        return events

    def _next_line_end(self) -> tuple[int, int] | None:
        """Position and length of the first line terminator, or None when the line is not complete yet."""
        m = _EOL.search(self._buf)
        if m is None:
            return None
        i = m.start()
        if self._buf[i] == "\n":
            return i, 1
        if i + 1 == len(self._buf):
            return None  # a CR at the end of a chunk may be the first half of CRLF
        return i, 2 if self._buf[i + 1] == "\n" else 1

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
        self._ready: list[SSEEvent] = []
        self._budget = max_bytes
        self.eof = False

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
        return self._ready.pop(0)
