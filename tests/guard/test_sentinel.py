"""The spin sentinel against a real spin in this process, and against busy but healthy loops."""

from __future__ import annotations

import logging
import os
import time

import anyio
import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import runnable_percent_over
from tests.guard.spin import eventually, spinning
from watchdog.guard import SpinSentinel

pytestmark = pytest.mark.anyio


def gauge(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name, {"pid": str(__import__("os").getpid())})


async def test_sentinel_sees_a_real_spin_and_names_the_stuck_task(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="watchdog.guard")
    registry = CollectorRegistry()
    sentinel = SpinSentinel(interval=0.1, threshold=0.5, registry=registry)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sentinel.run)
        assert gauge(registry, "watchdog_guard_cancel_spin_scopes") == 0
        async with spinning(tg):
            await eventually(lambda: sentinel.spinning)
            cpu = await runnable_percent_over(os.getpid(), 0.5)  # this loop: running, or waiting for a core
            scopes = gauge(registry, "watchdog_guard_cancel_spin_scopes")
            seconds = gauge(registry, "watchdog_guard_cancel_spin_seconds")
        print(f"\nsentinel: spin seen after >= 0.5 s; loop runnable {cpu:.0f} %, gauge {scopes}, {seconds:.2f} s")
        tg.cancel_scope.cancel()
    assert cpu > 80, "the spin was not real: the loop was not busy"
    assert scopes == 1
    assert seconds is not None
    assert seconds >= 0.5
    spin_logs = [r.getMessage() for r in caplog.records if "re-delivered cancellation" in r.getMessage()]
    assert len(spin_logs) == 1, "logged once per spinning scope"
    assert "stubborn-task: " in spin_logs[0]
    assert "> stubborn (tests/guard/spin.py:" in spin_logs[0]


async def test_sentinel_clears_when_the_spin_ends() -> None:
    registry = CollectorRegistry()
    sentinel = SpinSentinel(interval=0.05, threshold=0.3, registry=registry)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sentinel.run)
        async with spinning(tg) as spin:
            await eventually(lambda: sentinel.spinning)
        with anyio.fail_after(5):
            await spin.task_done.wait()
        await eventually(lambda: not sentinel.spinning, within=5)
        assert gauge(registry, "watchdog_guard_cancel_spin_scopes") == 0
        tg.cancel_scope.cancel()


def crunch_slice(n: int) -> int:
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i * i) % 1_000_003
    return acc


async def test_busy_loop_and_many_cancellations_never_trip_it(caplog: pytest.LogCaptureFixture) -> None:
    """CPU work in slices plus thousands of ordinary cancellations, with a threshold far below the run time."""
    caplog.set_level(logging.ERROR, logger="watchdog.guard")
    registry = CollectorRegistry()
    sentinel = SpinSentinel(interval=0.02, threshold=0.3, registry=registry)
    cancellations = 0
    worst = 0

    async def crunch(until: float) -> None:
        while time.monotonic() < until:
            crunch_slice(5_000)
            await anyio.lowlevel.checkpoint()

    async def cancel_often(until: float) -> None:
        nonlocal cancellations
        while time.monotonic() < until:
            with anyio.move_on_after(0):
                await anyio.sleep(1)
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(anyio.sleep, 10)
                await anyio.lowlevel.checkpoint()
                tg.cancel_scope.cancel()
            cancellations += 6

    async def watch(until: float) -> None:
        nonlocal worst
        while time.monotonic() < until:
            worst = max(worst, len(sentinel.spinning))
            await anyio.sleep(0.02)

    until = time.monotonic() + 2.0
    async with anyio.create_task_group() as tg:
        tg.start_soon(sentinel.run)
        async with anyio.create_task_group() as work:
            work.start_soon(crunch, until)
            for _ in range(3):
                work.start_soon(cancel_often, until)
            work.start_soon(watch, until)
        tg.cancel_scope.cancel()
    print(
        f"\nhealthy: {cancellations} cancellations over 2 s of busy loop; the sentinel's {sentinel.checks} checks "
        f"came across {sentinel.deliveries_seen} deliveries in progress; worst spinning count {worst}"
    )
    assert cancellations > 1000  # the loop really was cancelling all the time
    assert sentinel.deliveries_seen > 0  # and the sentinel saw deliveries in progress, and let them be
    assert worst == 0
    assert gauge(registry, "watchdog_guard_cancel_spin_scopes") == 0
    assert not [r for r in caplog.records if "spinning" in r.getMessage()]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_it_says_it_cannot_look_and_exports_minus_one(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="watchdog.guard")
    registry = CollectorRegistry()
    sentinel = SpinSentinel(interval=0.05, registry=registry)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sentinel.run)
        await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    assert gauge(registry, "watchdog_guard_cancel_spin_scopes") == -1
    assert any("spin sentinel disabled" in r.getMessage() for r in caplog.records)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="threshold"):
        SpinSentinel(threshold=0, registry=None)
    with pytest.raises(ValueError, match="interval"):
        SpinSentinel(interval=float("nan"), registry=None)
