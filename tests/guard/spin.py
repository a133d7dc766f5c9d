"""A real anyio cancel-delivery spin in this process, and a way to end it (test helper)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import anyio
from anyio.abc import TaskGroup


class Spin:
    """A task that swallows cancellation inside a cancelled task group: the loop spins until ``end()``."""

    def __init__(self) -> None:
        self.stop = False
        self.task_done = anyio.Event()
        self.task: asyncio.Task[object] | None = None

    async def stubborn(self) -> None:
        self.task = asyncio.current_task()
        try:
            while not self.stop:
                try:
                    await anyio.sleep(3600)
                except anyio.get_cancelled_exc_class():
                    pass  # the bug of the war story: the cancellation is swallowed
        finally:
            self.task_done.set()

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.stubborn, name="stubborn-task")
            await anyio.sleep(0.05)
            tg.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def spinning(tg: TaskGroup) -> AsyncIterator[Spin]:
    """Start a spin in ``tg``; on the way out let the stubborn task finish (at its next cancellation)."""
    spin = Spin()
    tg.start_soon(spin.run)
    try:
        yield spin
    finally:
        spin.stop = True
        if spin.task is not None:
            spin.task.cancel()  # a delivery stopped by the patch will not come again: cancel it ourselves


async def cpu_share(seconds: float) -> float:
    """This process's CPU time over the next ``seconds`` of wall time, in percent of one core."""
    c0, w0 = time.process_time(), time.monotonic()
    await anyio.sleep(seconds)
    return 100.0 * (time.process_time() - c0) / (time.monotonic() - w0)


async def eventually(predicate: Callable[[], object], within: float = 10.0, step: float = 0.05) -> None:
    """Poll ``predicate`` until it holds (what a sentinel or a gauge shows is state, not an event to wait on)."""
    with anyio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - polling observed state is the point
            await anyio.sleep(step)
