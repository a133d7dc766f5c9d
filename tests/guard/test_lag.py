"""LagMonitor: real stalls on asyncio and trio, a stall seen while it lasts, the two-slot window."""

from __future__ import annotations

import logging
import os
import threading
import time

import anyio
import pytest
from prometheus_client import CollectorRegistry

from tests.guard.spin import eventually
from watchdog.guard import LagMonitor

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def gauge(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name, {"pid": str(os.getpid())})


async def test_a_blocked_loop_shows_as_lag_and_the_max_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="watchdog.guard")
    registry = CollectorRegistry()
    monitor = LagMonitor(interval=0.05, warn_after=0.2, registry=registry)
    async with anyio.create_task_group() as tg:
        tg.start_soon(monitor.run)
        await eventually(lambda: monitor.statistics().ticks >= 3)
        # a busy machine may delay a tick before the stall: make the stall stand 0.3 s above whatever was seen
        quiet = monitor.statistics().max_lag
        stall = 0.3 + quiet
        time.sleep(stall)  # noqa: ASYNC251 - the stall under test
        ticks = monitor.statistics().ticks
        await eventually(lambda: monitor.statistics().ticks >= ticks + 5, within=30)
        after = monitor.statistics()
        lag_max = gauge(registry, "watchdog_guard_loop_lag_max_seconds")
        await eventually(lambda: monitor.statistics().lag < 0.2, within=30)  # the loop is fine again...
        later = monitor.statistics()
        tg.cancel_scope.cancel()
    print(
        f"\nlag: before the stall max {quiet * 1000:.1f} ms; after a {stall * 1000:.0f} ms stall max "
        f"{after.max_lag * 1000:.0f} ms"
    )
    assert stall - 0.1 <= after.max_lag < stall + 5, "the stall, not what came before it, is the max"
    assert later.max_lag >= after.max_lag  # ...and only the max remembers
    assert lag_max == after.max_lag
    warned = [float(r.getMessage().split()[3]) for r in caplog.records if r.getMessage().startswith("event loop lag")]
    assert any(lag >= stall - 0.1 for lag in warned), warned


async def test_a_stall_in_progress_is_visible_from_another_thread() -> None:
    monitor = LagMonitor(interval=0.05, registry=None)
    seen: list[float] = []
    looked = threading.Event()

    def look() -> None:  # another thread watches the lag grow while the loop is blocked
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (lag := monitor.statistics().lag) < 0.25:
            time.sleep(0.01)
        seen.append(lag)
        looked.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(monitor.run)
        await eventually(lambda: monitor.statistics().ticks >= 2)
        ticks = monitor.statistics().ticks
        watcher = threading.Thread(target=look)
        watcher.start()
        looked.wait(40)  # the loop is blocked until the other thread has looked
        ended = monitor.statistics().ticks
        watcher.join()
        tg.cancel_scope.cancel()
    assert seen
    assert seen[0] >= 0.25, "a blocked loop must show its stall before it ends"
    assert ended == ticks, "it was seen while the loop was still blocked"


def test_the_window_keeps_the_max_between_one_and_two_windows() -> None:
    now = [1000.0]
    monitor = LagMonitor(interval=0.1, window=10.0, registry=None, clock=lambda: now[0])
    monitor.record(0.5)
    now[0] += 9.0
    monitor.record(0.01)
    assert monitor.statistics().max_lag == 0.5
    now[0] += 2.0  # 11 s after the slot began: a new slot, the old one is kept
    monitor.record(0.02)
    assert monitor.statistics().max_lag == 0.5
    now[0] += 10.0  # the 0.5 s slot is two windows old now
    monitor.record(0.03)
    assert monitor.statistics().max_lag == 0.03
    now[0] += 25.0  # nothing recorded for two windows: nothing to report
    assert monitor.statistics().max_lag == 0.0


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="interval"):
        LagMonitor(interval=0, registry=None)
    with pytest.raises(ValueError, match="window"):
        LagMonitor(window=float("inf"), registry=None)


async def test_monitor_runs_both_and_can_run_again_under_the_same_names() -> None:
    from watchdog.guard import monitor

    registry = CollectorRegistry()
    async with monitor(registry=registry) as first:
        assert first.lag is not None
        await eventually(lambda: first.lag is not None and first.lag.statistics().ticks >= 2)
    async with monitor(registry=registry, sentinel=False) as second:  # `first` is still referenced here
        assert second.sentinel is None
        await eventually(lambda: second.lag is not None and second.lag.statistics().ticks >= 1)
    assert first.lag is not None
