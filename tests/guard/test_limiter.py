"""Limiter and BoundedTaskGroup, on asyncio and trio, with their metrics read back from a real registry."""

from __future__ import annotations

import functools
import inspect
import os

import anyio
import pytest
from prometheus_client import CollectorRegistry

from tests.guard.spin import eventually
from watchdog.errors import GuardError, Saturated
from watchdog.guard import BoundedTaskGroup, Limiter

pytestmark = pytest.mark.anyio

PID = str(os.getpid())


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def sample(registry: CollectorRegistry, name: str, limiter: str, *, per_worker: bool = True) -> float | None:
    labels = {"name": limiter, "pid": PID} if per_worker else {"name": limiter}
    return registry.get_sample_value(name, labels)


async def test_waiters_are_served_first_come_first_served() -> None:
    limiter = Limiter(1, name="fifo", registry=None)
    order: list[int] = []
    release = anyio.Event()

    def queued(n: int) -> bool:
        return limiter.in_flight + limiter.waiting == n

    async def call(i: int) -> None:
        async with limiter:
            order.append(i)
            await release.wait()

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(call, i)
            # trio may run freshly started tasks in any order: let each join the line before the next starts
            await eventually(functools.partial(queued, i + 1), within=5, step=0.001)
        release.set()
    assert order == list(range(8))


async def test_never_more_than_limit_and_the_gauges_say_so() -> None:
    registry = CollectorRegistry()
    limiter = Limiter(3, name="db", registry=registry)
    running = peak = 0
    release = anyio.Event()

    async def call() -> None:
        nonlocal running, peak
        async with limiter:
            running += 1
            peak = max(peak, running)
            await release.wait()
            running -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(call)
        await eventually(lambda: limiter.waiting == 7, within=5, step=0.01)
        assert (limiter.in_flight, limiter.waiting) == (3, 7)
        assert sample(registry, "watchdog_guard_limiter_in_flight", "db") == 3
        assert sample(registry, "watchdog_guard_limiter_waiting", "db") == 7
        assert sample(registry, "watchdog_guard_limiter_limit", "db") == 3
        release.set()
    assert peak == 3
    stats = limiter.statistics()
    assert (stats.in_flight, stats.waiting, stats.acquired_total, stats.rejected_total) == (0, 0, 10, 0)
    assert sample(registry, "watchdog_guard_limiter_acquired_total", "db", per_worker=False) == 10
    waited = sample(registry, "watchdog_guard_limiter_wait_seconds_count", "db", per_worker=False)
    assert waited == 7  # the three served at once are not observed


async def test_max_wait_raises_saturated_with_the_facts() -> None:
    registry = CollectorRegistry()
    limiter = Limiter(1, name="api", max_wait=0.1, registry=registry)
    async with limiter:
        with pytest.raises(Saturated) as caught:
            await limiter.acquire()
    err = caught.value
    assert isinstance(err, GuardError)
    assert (err.name, err.limit, err.in_flight, err.waiting) == ("api", 1, 1, 0)
    assert 0.09 <= err.waited < 5
    assert err.retry_after >= 1
    assert "api: no free slot within" in str(err)
    assert limiter.in_flight == 0
    assert sample(registry, "watchdog_guard_limiter_rejected_total", "api", per_worker=False) == 1


async def test_max_wait_zero_never_waits() -> None:
    limiter = Limiter(1, name="try", max_wait=0, registry=None)
    await limiter.acquire()
    with anyio.fail_after(1), pytest.raises(Saturated):
        await limiter.acquire()
    limiter.release()
    async with limiter:
        pass


async def test_a_cancelled_waiter_leaves_the_line_and_loses_no_slot() -> None:
    limiter = Limiter(1, name="c", registry=None)
    await limiter.acquire()
    with anyio.move_on_after(0.05):
        await limiter.acquire()
    assert limiter.waiting == 0
    limiter.release()
    assert limiter.in_flight == 0
    with anyio.fail_after(1):
        async with limiter:
            assert limiter.in_flight == 1


async def test_a_waiter_cancelled_as_it_is_handed_the_slot_passes_it_on() -> None:
    limiter = Limiter(1, name="race", registry=None)
    await limiter.acquire()
    got: list[str] = []

    async def waiter(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            async with limiter:
                got.append(name)
                await anyio.sleep(0.01)

    first, second = anyio.CancelScope(), anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "first", first)
        tg.start_soon(waiter, "second", second)
        await anyio.sleep(0.05)
        limiter.release()  # hands the slot to "first"...
        first.cancel()  # ...which is cancelled before it runs
    assert got[-1:] == ["second"]
    assert (limiter.in_flight, limiter.waiting) == (0, 0)


async def test_decorator_keeps_the_signature_and_limits_calls() -> None:
    limiter = Limiter(2, name="deco", registry=None)
    peak = running = 0

    @limiter
    async def fetch(url: str, *, retries: int = 3) -> str:
        """Fetch it."""
        nonlocal peak, running
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.01)
        running -= 1
        return f"{url}:{retries}"

    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch it."
    assert str(inspect.signature(fetch)) == "(url: 'str', *, retries: 'int' = 3) -> 'str'"
    results: list[str] = []

    async def one(i: int) -> None:
        results.append(await fetch(f"u{i}", retries=i))

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(one, i)
    assert peak == 2
    assert sorted(results) == [f"u{i}:{i}" for i in range(6)]


async def test_raising_the_limit_lets_waiters_in_lowering_it_drains_first() -> None:
    limiter = Limiter(1, name="tune", registry=None)
    entered = 0
    gate = anyio.Event()

    async def call() -> None:
        nonlocal entered
        async with limiter:
            entered += 1
            await gate.wait()

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(call)
        await anyio.sleep(0.05)
        assert entered == 1
        limiter.limit = 3
        await anyio.sleep(0.05)
        assert (entered, limiter.in_flight, limiter.waiting) == (3, 3, 1)
        limiter.limit = 1
        gate.set()
    assert entered == 4
    assert limiter.in_flight == 0


def test_bad_arguments_and_misuse_are_errors() -> None:
    with pytest.raises(ValueError, match="limit"):
        Limiter(0, name="x", registry=None)
    with pytest.raises(ValueError, match="max_wait"):
        Limiter(1, name="x", max_wait=-1, registry=None)
    limiter = Limiter(1, name="x", registry=None)
    with pytest.raises(RuntimeError, match="released more often than acquired"):
        limiter.release()


def test_two_limiters_cannot_share_a_name_in_one_registry() -> None:
    registry = CollectorRegistry()
    first = Limiter(1, name="same", registry=registry)
    with pytest.raises(ValueError, match="'same' already exports"):
        Limiter(1, name="same", registry=registry)
    Limiter(1, name="same", registry=CollectorRegistry())  # another registry: fine
    del first
    Limiter(1, name="same", registry=registry)  # the first is gone: the name is free


async def test_bounded_task_group_makes_the_spawner_wait() -> None:
    registry = CollectorRegistry()
    peak = running = 0
    spawned_at_peak: list[int] = []

    async def job(i: int) -> None:
        nonlocal peak, running
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.02)
        running -= 1

    async with BoundedTaskGroup(4, name="jobs", registry=registry) as tg:
        for i in range(20):
            await tg.spawn(job, i)
            spawned_at_peak.append(tg.limiter.in_flight)
        assert sample(registry, "watchdog_guard_limiter_limit", "jobs") == 4
    assert peak == 4
    assert max(spawned_at_peak) == 4  # the spawner never got ahead of the limit
    assert sample(registry, "watchdog_guard_limiter_acquired_total", "jobs", per_worker=False) is None  # retired
    async with BoundedTaskGroup(4, name="jobs", registry=registry) as again:  # the name is free again
        await again.spawn(job, 0)


async def test_bounded_task_group_propagates_errors_and_frees_slots() -> None:
    async def boom() -> None:
        raise KeyError("boom")

    async def use(tg: BoundedTaskGroup) -> None:
        async with tg:
            await tg.spawn(boom)
            await anyio.sleep(1)

    tg = BoundedTaskGroup(2, name="err", registry=None)
    with pytest.raises(BaseException) as caught:  # noqa: PT011 - an exception group, checked below
        await use(tg)
    assert caught.group_contains(KeyError)
    with pytest.raises(RuntimeError, match="needs the group open"):
        await tg.spawn(boom)


async def test_bounded_task_group_max_wait() -> None:
    async with BoundedTaskGroup(1, name="busy", max_wait=0.05, registry=None) as tg:
        await tg.spawn(anyio.sleep, 0.5)
        with pytest.raises(Saturated):
            await tg.spawn(anyio.sleep, 0.5)
        tg.cancel_scope.cancel()


async def test_callers_giving_up_while_every_slot_hangs_do_not_pile_up() -> None:
    limiter = Limiter(1, name="hung", max_wait=0.001, registry=None)
    await limiter.acquire()  # the downstream hangs: this slot never comes back
    for _ in range(500):
        with pytest.raises(Saturated):
            await limiter.acquire()
    assert limiter.statistics().rejected_total == 500
    assert limiter.waiting == 0
    assert len(limiter._waiters) <= 33  # leftovers are swept, not kept one per refused caller
