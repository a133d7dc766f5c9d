"""A small anyio program in a chosen state, for diagnose's tests on any Python with anyio installed.

    python target.py spin|spin-beside|spin-library|churn|churn-reuse|busy|idle|block|exit [SECONDS]

It prints ``ready PID`` once it is in that state. ``spin`` is the real anyio cancel-delivery spin (a task that
swallows cancellation inside a cancelled task group); ``spin-beside`` the same with another task doing honest
work beside it (that task must never be named the culprit); ``spin-library`` a spin whose swallowing code lives
in an installed package (``stubbornlib`` under a ``site-packages`` directory made on the fly: no application
frame to name). ``churn`` is healthy cancel-heavy work: many tasks each running thousands of short
``move_on_after`` scopes a second whose timeouts fire and complete, between slices of CPU work; ``churn-reuse``
one task looping on ``move_on_after(0)`` (freed scopes' memory is reused: the same addresses recur). ``busy``
honest CPU work in slices, ``block`` a synchronous sleep in the event loop, ``exit`` idles for SECONDS and
exits. SIGALRM ends every mode after
LIFETIME seconds, so nothing outlives a crashed test run for long (it needs no thread of its own to do so).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

LIFETIME = 180


def ready() -> None:
    print(f"ready {os.getpid()}", flush=True)


async def swallow() -> None:
    while True:
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            pass


async def beside() -> None:
    """Honest work in another task, yielding between slices: it runs beside the spin and is not its cause."""
    while True:
        crunch_slice(3_000)
        await anyio.sleep(0.0005)


async def churn_worker(work: int) -> None:
    """A request handler with a short timeout that fires: the scope is cancelled, delivered and left, each time."""
    while True:
        crunch_slice(work)
        with anyio.move_on_after(0.0005):
            await anyio.sleep(0.002)


async def churn_reuse() -> None:
    while True:
        with anyio.move_on_after(0):
            await anyio.lowlevel.checkpoint()


def library_swallow() -> Callable[[], Coroutine[Any, Any, None]]:
    """``stubbornlib.swallow`` from a package under a ``site-packages`` directory: library code, not the app's."""
    site = Path(tempfile.mkdtemp(prefix="watchdog-target-")) / "lib" / "site-packages"
    (site / "stubbornlib").mkdir(parents=True)
    (site / "stubbornlib" / "__init__.py").write_text(
        "import anyio\n\n\nasync def swallow():\n    while True:\n        try:\n"
        "            await anyio.sleep(3600)\n        except BaseException:\n            pass\n"
    )
    sys.path.insert(0, str(site))
    import stubbornlib  # type: ignore[import-not-found]

    fn: Callable[[], Coroutine[Any, Any, None]] = stubbornlib.swallow
    return fn


def crunch_slice(n: int) -> int:
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i * i) % 1_000_003
    return acc


async def main(mode: str, seconds: float) -> None:
    if mode in ("spin", "spin-beside", "spin-library"):
        culprit = library_swallow() if mode == "spin-library" else swallow
        async with anyio.create_task_group() as outer:
            if mode == "spin-beside":
                outer.start_soon(beside)
            async with anyio.create_task_group() as tg:
                tg.start_soon(culprit)
                await anyio.sleep(0.05)
                ready()
                tg.cancel_scope.cancel()
    elif mode == "churn":
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(churn_worker, 20)
            ready()
    elif mode == "churn-reuse":
        ready()
        await churn_reuse()
    elif mode == "busy":
        ready()
        while True:
            crunch_slice(20_000)
            await anyio.lowlevel.checkpoint()
    elif mode == "block":
        ready()
        await anyio.sleep(0.01)
        time.sleep(LIFETIME)  # noqa: ASYNC251 - blocking the loop is the point
    elif mode == "exit":
        ready()
        await anyio.sleep(seconds)
    else:
        ready()
        await anyio.sleep(LIFETIME)


if __name__ == "__main__":
    signal.alarm(LIFETIME)
    anyio.run(main, sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 1.0)
