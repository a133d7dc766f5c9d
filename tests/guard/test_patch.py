"""The opt-in cancel-delivery patch against the real spin (and against ordinary cancellations)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import pytest
from prometheus_client import CollectorRegistry

from tests.guard.spin import cpu_share, eventually, spinning
from watchdog.guard import cancel_delivery_patched, patch_cancel_delivery, unpatch_cancel_delivery

pytestmark = pytest.mark.anyio


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    yield CollectorRegistry()
    unpatch_cancel_delivery()


async def test_off_by_default() -> None:
    assert not cancel_delivery_patched()


async def test_it_stops_a_real_spin_and_names_the_stuck_task(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="watchdog.guard")
    assert patch_cancel_delivery(100, registry=registry)
    assert cancel_delivery_patched()
    async with anyio.create_task_group() as tg, spinning(tg) as spin:
        await eventually(lambda: registry.get_sample_value("watchdog_guard_cancel_delivery_stopped_total") == 1)
        cpu = await cpu_share(1.0)
        alive = not spin.task_done.is_set()
        unpatch_cancel_delivery()
        tg.cancel_scope.cancel()  # a new delivery ends the stubborn task, now that stop is set
    stopped = registry.get_sample_value("watchdog_guard_cancel_delivery_stopped_total")
    print(f"\npatch: CPU {cpu:.1f} % after the delivery was stopped; stuck task alive: {alive}; stopped {stopped}")
    assert cpu < 20, "the loop still spins"
    assert alive, "the stuck task is left running, not killed"
    assert stopped == 1
    logs = [r.getMessage() for r in caplog.records if "stopped after" in r.getMessage()]
    assert len(logs) == 1
    assert "after 100 re-deliveries" in logs[0]
    assert "stubborn-task: " in logs[0]
    assert "> stubborn (tests/guard/spin.py:" in logs[0]


async def test_ordinary_cancellations_are_untouched(registry: CollectorRegistry) -> None:
    assert patch_cancel_delivery(5, registry=registry)
    finished = []

    async def polite(i: int) -> None:
        try:
            await anyio.sleep(10)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.01)  # some shielded cleanup: a few loop iterations
            finished.append(i)

    for _ in range(20):
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(polite, i)
            await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
    assert len(finished) == 200
    assert registry.get_sample_value("watchdog_guard_cancel_delivery_stopped_total") == 0


def test_limit_is_checked() -> None:
    with pytest.raises(ValueError, match="max_redeliveries"):
        patch_cancel_delivery(0, registry=None)
