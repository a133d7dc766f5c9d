"""Teardown that must not hang: ``cleanup_timeout`` and ``bounded_exit`` (seed 001, layer 2)."""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import anyio

from watchdog.guard import _metrics
from watchdog.guard._anyio_internals import short_filename as _short
from watchdog.guard._metrics import RegistryArg

logger = logging.getLogger("watchdog.guard")

T = TypeVar("T")


@dataclass
class CleanupResult:
    """What a bounded cleanup did: ``timed_out`` is True when it was abandoned after ``seconds``."""

    name: str
    seconds: float
    timed_out: bool = False


@contextlib.contextmanager
def cleanup_timeout(seconds: float, *, name: str, registry: RegistryArg = "default") -> Iterator[CleanupResult]:
    """Run a cleanup shielded from outside cancellation, but for at most ``seconds``.

    Cleanup often runs because the surrounding task is being cancelled (a client went away), and an unshielded
    ``await`` in it would be cancelled at once, leaving the resource half-closed. Shielding alone has the
    opposite problem: a close that never completes (a peer that stops answering) hangs the task forever, and
    with it the connection, the worker's shutdown and, in the war story, the whole pool (seed 001). This does
    both: shielded, and bounded.

        with cleanup_timeout(5, name="session"):
            await session.aclose()

    When the time is up, the cleanup is cancelled and the block ends; the cleanup is left unfinished. That is
    counted in ``watchdog_guard_cleanup_timeouts_total{name=...}`` and logged once, with the line the cleanup
    was stuck at. The result's ``timed_out`` says which way it went.

    A cleanup that swallows cancellation cannot be stopped from its own task: it keeps running past the
    timeout (and, in anyio, spins). That is what ``SpinSentinel`` detects; see also ``patch_cancel_delivery``.

    Args:
        seconds: the most the cleanup may take.
        name: says what is being cleaned up, in the metric and the log line.
        registry: where the counter goes (``"default"``, a ``CollectorRegistry``, or None).
    """
    result = CleanupResult(name, seconds)
    with anyio.move_on_after(seconds, shield=True) as scope:
        try:
            yield result
        except BaseException as exc:
            if not _is_our_cancellation(scope, exc):
                raise
            _timed_out(result, exc.__traceback__, registry)
            raise
    if scope.cancel_called and not result.timed_out:  # the cleanup swallowed the cancellation, late
        _timed_out(result, None, registry)


def _is_our_cancellation(scope: anyio.CancelScope, exc: BaseException) -> bool:
    return scope.cancel_called and isinstance(exc, anyio.get_cancelled_exc_class())


def _timed_out(result: CleanupResult, tb: TracebackType | None, registry: RegistryArg) -> None:
    result.timed_out = True
    hub = _metrics.hub_for(registry)
    if hub is not None:
        hub.counter(_metrics.CLEANUP_TIMEOUTS).labels(result.name).inc()
    where = ""
    frames = [f for f in traceback.extract_tb(tb) if f.filename != __file__] if tb is not None else []
    if frames:
        shown = frames if len(frames) <= 6 else [*frames[:3], *frames[-3:]]
        where = "; it was waiting in " + " > ".join(f"{f.name} ({_short(f.filename)}:{f.lineno})" for f in shown)
    logger.warning("cleanup %r timed out after %g s and was abandoned%s", result.name, result.seconds, where)


@contextlib.asynccontextmanager
async def bounded_exit(
    cm: AbstractAsyncContextManager[T], seconds: float, *, name: str, registry: RegistryArg = "default"
) -> AsyncIterator[T]:
    """Enter ``cm`` as usual, but give its ``__aexit__`` at most ``seconds``, shielded (see ``cleanup_timeout``).

    For the resources whose exit can hang: an MCP client session, a pooled connection, a stream.

        async with bounded_exit(ClientSession(read, write), 5, name="mcp-session") as session:
            ...

    The exit runs in the task that entered it (anyio requires that of task groups and cancel scopes), so an
    exit that swallows cancellation is not stopped either; a task group whose child ignores cancellation is
    the common case.
    """
    value = await cm.__aenter__()
    exc_info: tuple[Any, Any, Any] = (None, None, None)
    try:
        yield value
    except BaseException as exc:
        exc_info = (type(exc), exc, exc.__traceback__)
        suppress = False
        with cleanup_timeout(seconds, name=name, registry=registry):
            suppress = bool(await cm.__aexit__(*exc_info))
        if not suppress:
            raise
    else:
        with cleanup_timeout(seconds, name=name, registry=registry):
            await cm.__aexit__(*exc_info)
