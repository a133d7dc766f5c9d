"""The watchdog's log: one JSON object per line (tracebacks inside), secrets hidden, repeated errors rate-limited."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from watchdog.agent.events import JsonFormatter, RepeatFilter, setup_logging


def record(msg: str, *args: object, level: int = logging.ERROR, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("aiohttp.server", level, __file__, 1, msg, args, exc_info)


def test_a_traceback_stays_inside_one_json_line_and_secrets_are_hidden() -> None:
    line = JsonFormatter().format(record("webhook %s failed", "http://h/hook?key=abc123", exc=True))
    assert "\n" not in line
    out = json.loads(line)
    assert out["message"] == "webhook http://h/hook?key=*** failed"
    assert "OSError: [Errno 24] Too many open files" in out["exception"]


def test_repeats_are_suppressed_then_counted() -> None:
    now = [0.0]
    f = RepeatFilter(burst=3, window=60.0, clock=lambda: now[0])
    passed = [f.filter(record("round %s failed", i)) for i in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert f.filter(record("another message")) is True  # another kind is not held back
    now[0] = 61.0
    r = record("round %s failed", 99)
    assert f.filter(r) is True
    assert r.suppressed == 7  # type: ignore[attr-defined]
    assert "repeats_suppressed" in JsonFormatter().format(r)
    assert all(f.filter(record("info %s", i, level=logging.INFO)) for i in range(10))  # info is never held back


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root, own = logging.getLogger(), logging.getLogger("watchdog")
    saved = (root.handlers[:], root.level, own.handlers[:], own.level, own.propagate)
    try:
        yield
    finally:
        root.handlers[:], own.handlers[:] = saved[0], saved[2]
        root.setLevel(saved[1])
        own.setLevel(saved[3])
        own.propagate = saved[4]


def test_other_libraries_log_json_too(restore_logging: None, capfd: pytest.CaptureFixture[str]) -> None:
    setup_logging("json", "info")
    try:
        raise ValueError("bad request line")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1
    out = json.loads(err[0])
    assert out["logger"] == "aiohttp.server"
    assert "ValueError: bad request line" in out["exception"]
