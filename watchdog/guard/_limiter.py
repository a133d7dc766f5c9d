"""Bounded concurrency that turns overload into backpressure: ``Limiter`` and ``BoundedTaskGroup``."""

from __future__ import annotations

import asyncio
import bisect
import functools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import anyio
from anyio.abc import TaskGroup

from watchdog.errors import Saturated
from watchdog.guard import _metrics
from watchdog.guard._metrics import RegistryArg, Sample

_BUCKETS = _metrics.LIMITER_WAIT.buckets
P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class LimiterStatistics:
    """A limiter at one moment: the same numbers its metrics export."""

    name: str
    limit: int
    in_flight: int
    waiting: int
    acquired_total: int
    rejected_total: int


class _Waiter:
    """One caller in line: woken through a bare asyncio future (the fast way) or, on trio, an anyio Event."""

    __slots__ = ("event", "future", "gone", "granted")

    def __init__(self) -> None:
        self.granted = False
        self.gone = False
        self.event: anyio.Event | None = None
        self.future: asyncio.Future[None] | None = None
        try:
            self.future = asyncio.get_running_loop().create_future()
        except RuntimeError:  # not asyncio: trio
            self.event = anyio.Event()

    async def wait(self) -> None:
        if self.future is not None:
            await self.future
        else:
            assert self.event is not None
            await self.event.wait()

    def wake(self) -> None:
        self.granted = True
        if self.future is not None:
            if not self.future.done():  # cancelled already: the waiter sees it and passes the slot on
                self.future.set_result(None)
        else:
            assert self.event is not None
            self.event.set()


class Limiter:
    """At most ``limit`` callers at a time; the others wait their turn, so the pressure reaches the producer.

    Think of a sack of ``limit`` tokens. A caller takes one for the duration of the work (``async with limiter:``
    or a function decorated with ``@limiter``) and puts it back when done. When the sack is empty, callers
    wait in line (first come, first served) and their callers wait for them: that is backpressure, the fix of
    the OOM war story (seed 000), where fire-and-forget tasks piled up behind a slowing downstream until the
    kernel killed the server. Nothing here starts work in the background; to do that with a bound, use
    ``BoundedTaskGroup``.

    With ``max_wait`` set, a caller that has waited that long gives up with ``Saturated`` (carrying ``limit``,
    ``in_flight``, ``waiting`` and a ``retry_after`` suggestion), so a saturated dependency fails fast
    instead of holding every request hostage; ``max_wait=0`` never waits.

    Metrics (labelled ``name``, per worker ``pid``): ``watchdog_guard_limiter_in_flight``, ``_limit``,
    ``_waiting``, ``_acquired_total``, ``_rejected_total`` and the ``_wait_seconds`` histogram of the callers
    that had to wait. Alert on ``in_flight == limit`` for a while: that names the dependency throttling you.
    The counters are plain ints until a scrape reads them, so an uncontended acquire costs about what
    ``asyncio.Semaphore`` costs (see ``bench/guard_limiter.py``).

    Works on asyncio and trio (anyio). Like ``asyncio.Semaphore``, a caller that finds a free slot continues
    without yielding to the event loop; a caller that waits is cancellable. Cancelled waiters leave the line;
    a caller cancelled just as it was handed a slot passes the slot on.

    Args:
        limit: slots; at least 1. Pick it from the downstream's latency and the throughput you need, halve it
            the first time, then tune it with the in-flight gauge (seed 000's advice). ``limit`` can be
            changed later; raising it lets waiters in at once.
        name: names the limiter in metrics and errors (``downstream``, ``db``); one name per limiter.
        max_wait: seconds a caller may wait before ``Saturated``; None (the default) waits as long as it takes.
        registry: where metrics go: ``"default"`` (prometheus_client's), a ``CollectorRegistry``, or None.

    Use something else when the work should not hold up its caller at all: then it should not be done in
    this process, or it belongs in a ``BoundedTaskGroup``, whose ``spawn`` still waits for a free slot.
    """

    __slots__ = (
        "__weakref__",
        "_acquired",
        "_cold",
        "_hub",
        "_in_flight",
        "_labels",
        "_limit",
        "_max_wait",
        "_name",
        "_recent_wait",
        "_rejected",
        "_rejected_counter",
        "_wait_counts",
        "_wait_sum",
        "_waiters",
        "_waiting",
    )

    def __init__(
        self, limit: int, *, name: str, max_wait: float | None = None, registry: RegistryArg = "default"
    ) -> None:
        _check_limit(limit)
        if max_wait is not None and (math.isnan(max_wait) or max_wait < 0):
            raise ValueError(f"max_wait must be None or >= 0 seconds, not {max_wait!r}")
        self._name = name
        self._limit = limit
        self._max_wait = max_wait
        self._in_flight = 0
        self._waiting = 0
        self._acquired = 0
        self._rejected = 0
        self._recent_wait = 0.0
        self._waiters: deque[_Waiter] = deque()
        self._labels = (name,)
        self._hub = _metrics.hub_for(registry)
        self._cold = self._hub is not None and self._hub.multiprocess
        self._wait_counts = [0] * (len(_BUCKETS) + 1)
        self._wait_sum = 0.0
        self._rejected_counter: Any = None
        if self._hub is not None:
            self._hub.add("limiter", name, self)
            self._rejected_counter = self._hub.counter(_metrics.LIMITER_REJECTED).labels(name)

    # -- the hot path -------------------------------------------------------------------------------------
    async def __aenter__(self) -> None:
        if self._in_flight < self._limit and not self._waiting:
            self._in_flight += 1
            self._acquired += 1
            if self._cold:
                self._warm()
            return
        await self._wait()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._waiting and self._in_flight <= self._limit:
            self._hand_over()
        elif self._in_flight > 0:
            self._in_flight -= 1
        else:
            raise RuntimeError(f"limiter {self._name!r} released more often than acquired")

    async def acquire(self) -> None:
        """Take a slot, waiting for one if none is free; pair it with ``release()`` (or use ``async with``)."""
        await self.__aenter__()

    def release(self) -> None:
        """Give a slot back: the longest-waiting caller gets it directly."""
        if self._waiting and self._in_flight <= self._limit:
            self._hand_over()
        elif self._in_flight > 0:
            self._in_flight -= 1
        else:
            raise RuntimeError(f"limiter {self._name!r} released more often than acquired")

    def __call__(self, func: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function so that every call holds a slot while it runs.

        The signature and annotations are kept (``functools.wraps``), so frameworks that read them, like the MCP
        SDK's ``@mcp.tool()``, see the original function.
        """

        @functools.wraps(func)
        async def limited(*args: P.args, **kwargs: P.kwargs) -> T:
            async with self:
                return await func(*args, **kwargs)

        return limited

    # -- waiting ------------------------------------------------------------------------------------------
    async def _wait(self) -> None:
        if self._cold:
            self._warm()
        started = time.monotonic()
        if self._max_wait == 0:
            self._reject(0.0)
        waiter = _Waiter()
        self._waiters.append(waiter)
        self._waiting += 1
        try:
            if self._max_wait is None:
                await waiter.wait()
            else:
                with anyio.move_on_after(self._max_wait):
                    await waiter.wait()
        except BaseException:
            if waiter.granted:
                self.release()  # handed a slot as we were cancelled: pass it on
            else:
                self._leave(waiter)
            raise
        waited = time.monotonic() - started
        if not waiter.granted:
            self._leave(waiter)
            self._reject(waited)
        self._recent_wait += (waited - self._recent_wait) * 0.2
        self._wait_counts[bisect.bisect_left(_BUCKETS, waited)] += 1
        self._wait_sum += waited

    def _leave(self, waiter: _Waiter) -> None:
        """A waiter gives up. It stays in the deque, skipped, until the deque holds mostly such leftovers: while
        every slot hangs, timed-out callers would otherwise pile up there (the very failure this class is for)."""
        waiter.gone = True
        self._waiting -= 1
        if len(self._waiters) > 2 * self._waiting + 32:
            self._waiters = deque(w for w in self._waiters if not w.gone)

    def _hand_over(self) -> None:
        # The slot passes from the releasing caller to the first live waiter: in_flight does not change.
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if waiter.gone:
                continue
            self._waiting -= 1
            self._acquired += 1
            waiter.wake()
            return
        self._in_flight -= 1  # pragma: no cover - _waiting counts live waiters, so one was found

    def _reject(self, waited: float) -> None:
        self._rejected += 1
        if self._rejected_counter is not None:
            self._rejected_counter.inc()
        raise Saturated(
            self._name,
            limit=self._limit,
            in_flight=self._in_flight,
            waiting=self._waiting,
            waited=waited,
            retry_after=max(1.0, self._recent_wait, self._max_wait or 0.0),
        )

    def _warm(self) -> None:
        self._cold = False
        if self._hub is not None:
            self._hub.activate(self)

    def _retire(self) -> None:
        """Stop exporting this limiter (its owner is done with it); the name is free again."""
        if self._hub is not None:
            self._hub.remove("limiter", self._name, self)

    # -- state --------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        _check_limit(value)
        self._limit = value
        while self._waiting and self._in_flight < self._limit:
            self._in_flight += 1
            self._hand_over()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return self._waiting

    def statistics(self) -> LimiterStatistics:
        return LimiterStatistics(
            self._name, self._limit, self._in_flight, self._waiting, self._acquired, self._rejected
        )

    def _metric_samples(self) -> Iterable[Sample]:
        labels = self._labels
        return (
            (_metrics.LIMITER_IN_FLIGHT, labels, self._in_flight),
            (_metrics.LIMITER_LIMIT, labels, self._limit),
            (_metrics.LIMITER_WAITING, labels, self._waiting),
            (_metrics.LIMITER_ACQUIRED, labels, self._acquired),
            (_metrics.LIMITER_WAIT, labels, (tuple(self._wait_counts), self._wait_sum)),
        )

    def __repr__(self) -> str:
        return f"<Limiter {self._name!r} {self._in_flight}/{self._limit} in flight, {self._waiting} waiting>"


def _check_limit(limit: int) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be an int >= 1, not {limit!r}")


class BoundedTaskGroup:
    """A task group that runs at most ``limit`` tasks at once; ``await tg.spawn(...)`` waits for room.

    Fire-and-forget is how the OOM war story began (seed 000): every request started a background task, the
    downstream slowed down, and tasks piled up until the kernel stepped in. Here starting a task is awaited:
    when ``limit`` tasks are running, ``spawn`` waits (or, with ``max_wait``, raises ``Saturated``), so the
    producer feels the consumer's pace. Leaving the ``async with`` block waits for the running tasks, as an
    anyio task group does; an error in one task cancels the others.

        async with BoundedTaskGroup(8, name="notify") as tg:
            for user in users:
                await tg.spawn(notify, user)

    The running tasks are exported as a limiter's metrics under ``name`` while the group is open.
    """

    def __init__(
        self, limit: int, *, name: str, max_wait: float | None = None, registry: RegistryArg = "default"
    ) -> None:
        _check_limit(limit)
        self._limit = limit
        self._name = name
        self._max_wait = max_wait
        self._registry = registry
        self._limiter: Limiter | None = None
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> BoundedTaskGroup:
        if self._tg is not None:
            raise RuntimeError("a BoundedTaskGroup can be entered only once at a time")
        self._limiter = Limiter(self._limit, name=self._name, max_wait=self._max_wait, registry=self._registry)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        assert self._limiter is not None
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._limiter._retire()
            self._tg = None

    async def spawn(self, func: Callable[..., Awaitable[Any]], *args: Any, name: object = None) -> None:
        """Wait for a free slot, then start ``func(*args)`` in the group; the slot is freed when it returns."""
        if self._tg is None or self._limiter is None:
            raise RuntimeError("spawn() needs the group open: use 'async with BoundedTaskGroup(...) as tg'")
        limiter = self._limiter
        await limiter.acquire()
        try:
            self._tg.start_soon(self._run, limiter, func, args, name=name or func)
        except BaseException:
            limiter.release()
            raise

    @staticmethod
    async def _run(limiter: Limiter, func: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            await func(*args)
        finally:
            limiter.release()

    @property
    def cancel_scope(self) -> anyio.CancelScope:
        if self._tg is None:
            raise RuntimeError("the group is not open")
        return self._tg.cancel_scope

    @property
    def limiter(self) -> Limiter:
        """The limiter counting this group's running tasks (while the group is open)."""
        if self._limiter is None:
            raise RuntimeError("the group has not been opened")
        return self._limiter
