"""What happened, for people and machines: a bounded ring of recent events, each also logged as one JSON line.

Logging is set up here for the whole process (aiohttp's own loggers included), so every line is one JSON object,
tracebacks inside it; secrets are redacted on the way out, and an error that repeats is rate-limited: a burst
goes through, then the repeats are counted and the next line that passes says how many were suppressed.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from watchdog.redact import REDACTOR, outward

log = logging.getLogger("watchdog.events")


@dataclass
class Event:
    kind: str  # rule_pending | rule_firing | rule_resolved | action | budget_denied | worker_new | worker_gone | ...
    message: str
    target: str | None = None
    worker: int | None = None
    rule: str | None = None
    severity: str = "info"
    evidence: dict[str, Any] = field(default_factory=dict)
    id: int = 0
    time: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "kind": self.kind,
            "severity": self.severity,
            "target": self.target,
            "worker": self.worker,
            "rule": self.rule,
            "message": self.message,
            "evidence": self.evidence,
        }


class EventLog:
    def __init__(self, maxlen: int = 50, *, wall: Any = time.time) -> None:
        self._events: deque[Event] = deque(maxlen=maxlen)
        self._ids = itertools.count(1)
        self._wall = wall
        self.listeners: list[Callable[[Event], None]] = []  # told of each event added (must not block)

    def add(self, event: Event) -> Event:
        event.id = next(self._ids)
        event.time = round(self._wall(), 3)
        self._events.append(event)
        level = {"critical": logging.ERROR, "warning": logging.WARNING}.get(event.severity, logging.INFO)
        log.log(level, event.message, extra={"event": event.to_json()})
        for listener in self.listeners:
            listener(event)
        return event

    def recent(self) -> list[Event]:
        return list(self._events)

    def restore(self, saved: list[dict[str, Any]]) -> None:
        """Take back events a previous run saved (oldest first), before any new one; ids continue after them."""
        last = 0
        for doc in saved[-(self._events.maxlen or len(saved)) :]:
            try:
                event = Event(
                    str(doc["kind"]), str(doc["message"]), target=doc.get("target"), worker=doc.get("worker"),
                    rule=doc.get("rule"), severity=str(doc.get("severity", "info")),
                    evidence=dict(doc.get("evidence") or {}), id=int(doc["id"]), time=float(doc["time"]),
                )  # fmt: skip
            except (KeyError, TypeError, ValueError):
                continue
            self._events.append(event)
            last = max(last, event.id)
        self._ids = itertools.count(last + 1)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the event's fields when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if isinstance(event, dict):
            out.update({k: v for k, v in event.items() if k not in out and v not in (None, {}, [])})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        suppressed = getattr(record, "suppressed", None)
        if suppressed:
            out["repeats_suppressed"] = suppressed
        return json.dumps(outward(out), default=str)


class TextFormatter(logging.Formatter):
    """The human format, redacted like the JSON one."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        suppressed = getattr(record, "suppressed", None)
        if suppressed:
            text += f" ({suppressed} repeats suppressed)"
        return REDACTOR.text(text)


class RepeatFilter(logging.Filter):
    """Let ``burst`` lines of one kind through per ``window`` seconds; count the rest.

    A kind is the logger, the level, the message template and the exception type: a round that fails the same
    way every second (a full fd table, a dead endpoint) writes a few lines a minute, not megabytes. The next
    line of that kind after a quiet spell carries ``repeats_suppressed``. Warnings and above only: info lines
    are the event stream and already bounded by what happens.
    """

    def __init__(self, burst: int = 5, window: float = 60.0, *, clock: Any = time.monotonic, keys: int = 512):
        super().__init__()
        self._burst, self._window, self._clock, self._max_keys = burst, window, clock, keys
        self._seen: dict[tuple[object, ...], list[float]] = {}  # key -> [window start, passed, suppressed]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        exc = record.exc_info[0] if record.exc_info else None
        key = (record.name, record.levelno, record.msg if isinstance(record.msg, str) else repr(record.msg), exc)
        now = self._clock()
        with self._lock:
            state = self._seen.get(key)
            if state is None or now - state[0] >= self._window:
                if len(self._seen) >= self._max_keys:
                    self._seen.pop(next(iter(self._seen)))
                suppressed = int(state[2]) if state is not None else 0
                self._seen[key] = [now, 1, 0]
                if suppressed:
                    record.suppressed = suppressed
                return True
            if state[1] < self._burst:
                state[1] += 1
                return True
            state[2] += 1
            return False


def setup_logging(fmt: str, level: str) -> None:
    """One handler for the whole process: the watchdog's loggers at ``level``, everyone else's (aiohttp's
    "Error handling request", asyncio's "Task exception was never retrieved") at warning, all in one format."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())
    own = logging.getLogger("watchdog")
    own.handlers[:] = [handler]
    own.setLevel(level.upper())
    own.propagate = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
