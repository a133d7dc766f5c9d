"""cleanup_timeout and bounded_exit: shielded, bounded, counted and logged once; asyncio and trio."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

import anyio
import pytest
from prometheus_client import CollectorRegistry

from watchdog.guard import bounded_exit, cleanup_timeout

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def timeouts(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value("watchdog_guard_cleanup_timeouts_total", {"name": name})


async def test_a_quick_cleanup_runs_to_the_end_and_counts_nothing() -> None:
    registry = CollectorRegistry()
    done = []
    with cleanup_timeout(1.0, name="quick", registry=registry) as result:
        await anyio.sleep(0.01)
        done.append(True)
    assert done == [True]
    assert not result.timed_out
    assert timeouts(registry, "quick") is None  # never incremented, never even created


async def test_a_hanging_cleanup_is_abandoned_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="watchdog.guard")
    registry = CollectorRegistry()
    never = anyio.Event()
    started = time.monotonic()
    with cleanup_timeout(0.2, name="session", registry=registry) as result:
        await never.wait()  # a peer that stops answering
    took = time.monotonic() - started
    assert result.timed_out
    assert 0.15 < took < 5
    assert timeouts(registry, "session") == 1
    logs = [r.getMessage() for r in caplog.records]
    assert len(logs) == 1
    assert "cleanup 'session' timed out after 0.2 s" in logs[0]
    assert "it was waiting in test_a_hanging_cleanup_is_abandoned_counted_and_logged_once (" in logs[0]
    assert "test_cleanup.py:" in logs[0]


async def test_it_runs_even_while_the_surrounding_task_is_cancelled() -> None:
    closed = []
    with anyio.CancelScope() as outer:
        try:
            outer.cancel()
            await anyio.sleep(1)  # cancelled here, as a task is when its client goes away
        finally:
            with cleanup_timeout(1.0, name="close", registry=None):
                await anyio.sleep(0.05)  # an unshielded await here would be cancelled at once
                closed.append(True)
    assert closed == [True]
    assert outer.cancelled_caught


async def test_other_errors_pass_through() -> None:
    with pytest.raises(KeyError), cleanup_timeout(1.0, name="err", registry=None):
        raise KeyError("x")


class Resource:
    """An async context manager whose exit can hang (a session whose peer stopped answering)."""

    def __init__(self, hang: bool) -> None:
        self.hang = hang
        self.exited: list[type[BaseException] | None] = []

    async def __aenter__(self) -> Resource:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self.exited.append(et)
        if self.hang:
            await anyio.Event().wait()
        return et is LookupError  # suppresses LookupError, like some resources do


async def test_bounded_exit_bounds_a_hanging_exit() -> None:
    registry = CollectorRegistry()
    resource = Resource(hang=True)
    with anyio.fail_after(5):
        async with bounded_exit(resource, 0.1, name="pool", registry=registry) as r:
            assert r is resource
    assert resource.exited == [None]
    assert timeouts(registry, "pool") == 1


async def test_bounded_exit_passes_exceptions_and_suppression_through() -> None:
    with pytest.raises(KeyError):
        async with bounded_exit(Resource(hang=False), 1.0, name="x", registry=None):
            raise KeyError("k")
    resource = Resource(hang=False)
    async with bounded_exit(resource, 1.0, name="x", registry=None):
        lookup_fails()
    assert resource.exited == [LookupError]


def lookup_fails() -> None:
    raise LookupError("suppressed by the resource")


@asynccontextmanager
async def generator_resource(log: list[str]) -> AsyncIterator[str]:
    log.append("enter")
    try:
        yield "value"
    finally:
        log.append("exit")


async def test_bounded_exit_with_a_generator_context_manager() -> None:
    log: list[str] = []
    async with bounded_exit(generator_resource(log), 1.0, name="gen", registry=None) as value:
        assert value == "value"
    assert log == ["enter", "exit"]
