"""The few anyio internals the spin sentinel and the cancel-delivery patch read, checked in one place.

anyio's asyncio backend delivers a cancel scope's cancellation with ``CancelScope._deliver_cancellation``: it
cancels every task in the scope (and in nested, unshielded scopes) and, while any of them is not done yet,
schedules itself again with ``loop.call_soon``, keeping the handle in the scope's ``_cancel_handle``. A task that
catches the cancellation and awaits again is re-cancelled on every loop iteration, forever: the 100 % CPU spin
of anyio #695 (seed 001). So a scope whose ``_cancel_handle`` stays set across checks spanning seconds is a
scope re-delivering cancellation all that time, and the tasks it keeps cancelling are the ones stuck.

Written against anyio 4.16 (``TESTED_ANYIO``). ``supported()`` says whether the hooks are there; when they are
not (another anyio, or the trio backend, where none of this exists) callers degrade visibly instead of guessing.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from typing import Any

TESTED_ANYIO = ("4.16.0",)
"""anyio versions the sentinel and the patch were tested against (on Python 3.10-3.13)."""

_SCOPE_ATTRS = ("_cancel_handle", "_cancel_called", "_parent_scope", "_tasks", "_child_scopes", "_shield")


def anyio_version() -> str:
    from importlib import metadata  # not at import time: it costs more than the rest of the package

    try:
        return metadata.version("anyio")
    except metadata.PackageNotFoundError:  # pragma: no cover - anyio is a dependency
        return "unknown"


def backend() -> Any | None:
    """anyio's asyncio backend module, or None when it lacks what we read."""
    try:
        from anyio._backends import _asyncio as backend
    except ImportError:  # pragma: no cover
        return None
    scope_cls = getattr(backend, "CancelScope", None)
    states = getattr(backend, "_task_states", None)
    if scope_cls is None or states is None or not hasattr(scope_cls, "_deliver_cancellation"):
        return None
    slots = set(getattr(scope_cls, "__slots__", ()))
    if slots and not all(a in slots for a in _SCOPE_ATTRS):
        return None
    return backend


def supported() -> str | None:
    """None when the hooks are present; otherwise why not, for a log line."""
    if backend() is None:
        return f"anyio {anyio_version()} lacks the CancelScope internals this was written for (tested: 4.16)"
    return None


def pending_scopes() -> dict[int, Any]:
    """Every cancel scope (by id) that has a cancel delivery scheduled right now, in the running loop."""
    mod = backend()
    if mod is None:
        return {}
    found: dict[int, Any] = {}
    seen: set[int] = set()
    loop = asyncio.get_running_loop()
    for task, state in list(mod._task_states.items()):
        if task.get_loop() is not loop:
            continue
        scope = state.cancel_scope
        while scope is not None and id(scope) not in seen:
            seen.add(id(scope))
            if scope._cancel_handle is not None:
                found[id(scope)] = scope
            scope = scope._parent_scope
    return found


def stuck_tasks(scope: Any) -> list[asyncio.Task[Any]]:
    """The tasks a scope's delivery keeps cancelling: not done, in it or in nested unshielded scopes."""
    out: list[asyncio.Task[Any]] = []
    stack = [scope]
    while stack:
        s = stack.pop()
        out.extend(t for t in s._tasks if not t.done())
        stack.extend(c for c in s._child_scopes if not c._shield)
    return out


def describe_task(task: asyncio.Task[Any], depth: int = 8) -> str:
    """``name: outer (file:line) > ... > inner (file:line)``, from the task's coroutine chain."""
    frames = list(_coroutine_frames(task.get_coro()))
    shown = frames if len(frames) <= depth else [*frames[:2], None, *frames[-(depth - 2) :]]
    parts = []
    for f in shown:
        if f is None:
            parts.append("...")
        else:
            parts.append(f"{f.f_code.co_name} ({short_filename(f.f_code.co_filename)}:{f.f_lineno})")
    return f"{task.get_name()}: {' > '.join(parts) or '(not started)'}"


def _coroutine_frames(coro: Any) -> Iterator[Any]:
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            yield frame
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)


def short_filename(filename: str) -> str:
    """``filename`` relative to the longest ``sys.path`` entry it is under (``anyio/_core/_tasks.py``)."""
    for base in sorted((p for p in sys.path if p), key=len, reverse=True):
        if filename.startswith(base + os.sep):
            return filename[len(base) + 1 :]
    return filename
