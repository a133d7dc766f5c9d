"""A small anyio program in a chosen state, for diagnose's tests on any Python with anyio installed.

    python target.py spin|busy|idle|block|exit [SECONDS]

It prints ``ready PID`` once it is in that state. ``spin`` is the real anyio cancel-delivery spin (a task that
swallows cancellation inside a cancelled task group), ``busy`` honest CPU work in slices, ``block`` a
synchronous sleep in the event loop, ``exit`` idles for SECONDS and exits. SIGALRM ends every mode after
LIFETIME seconds, so nothing outlives a crashed test run for long (it needs no thread of its own to do so).
"""

from __future__ import annotations

import os
import signal
import sys
import time

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


def crunch_slice(n: int) -> int:
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i * i) % 1_000_003
    return acc


async def main(mode: str, seconds: float) -> None:
    if mode == "spin":
        async with anyio.create_task_group() as tg:
            tg.start_soon(swallow)
            await anyio.sleep(0.05)
            ready()
            tg.cancel_scope.cancel()
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
