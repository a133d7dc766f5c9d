"""What happened, for people and machines: a bounded ring of recent events, each also logged as one JSON line."""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

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

    def add(self, event: Event) -> Event:
        event.id = next(self._ids)
        event.time = round(self._wall(), 3)
        self._events.append(event)
        level = {"critical": logging.ERROR, "warning": logging.WARNING}.get(event.severity, logging.INFO)
        log.log(level, event.message, extra={"event": event.to_json()})
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
        return json.dumps(out, default=str)


def setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("watchdog")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
