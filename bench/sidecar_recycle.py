"""Recycle under load: failed client calls during 5 graceful recycles versus 5 plain SIGKILLs, in one run.

20 clients call the demo's ``echo`` without pause (real MCP ``tools/call`` over streamable HTTP, 127.0.0.1)
while one worker at a time is recycled, waiting for gunicorn's replacement to serve before the next. The
graceful recycle is the watchdog's own ``Recycler`` with the demo target's plan (drain, SIGTERM, grace,
SIGKILL); the baseline is ``kill -9`` of the worker.

    .venv/bin/python -m bench.sidecar_recycle [--rounds 5] [--clients 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections.abc import Awaitable, Callable

import anyio
import psutil

from bench._load import LoadResult, run_load
from examples.demo.harness import DemoServer
from watchdog.actions.recycle import RecyclePlan, Recycler
from watchdog.discovery import WorkerId


async def _wait_replacement(demo: DemoServer, old: set[int], n: int, within: float = 30.0) -> float:
    start = time.monotonic()
    with anyio.fail_after(within):
        while True:
            now = set(demo.worker_pids())
            if len(now) == n and now != old:
                return time.monotonic() - start
            await anyio.sleep(0.05)


async def _rounds(demo: DemoServer, rounds: int, kill: Callable[[int], Awaitable[None]], gap: float) -> list[float]:
    downtime = []
    for _ in range(rounds):
        await anyio.sleep(gap)
        workers = demo.worker_pids()
        victim = workers[0]
        start = time.monotonic()
        await kill(victim)
        await _wait_replacement(demo, set(workers), len(workers))
        downtime.append(time.monotonic() - start)
    await anyio.sleep(gap)
    return downtime


async def measure(
    demo: DemoServer, clients: int, rounds: int, kill: Callable[[int], Awaitable[None]]
) -> tuple[LoadResult, list[float]]:
    gap = 1.0
    result: list[LoadResult] = []
    downtime: list[float] = []

    async def load() -> None:
        result.append(await run_load(demo.mcp_url, clients=clients, seconds=rounds * (gap + 4) + 3))

    async with anyio.create_task_group() as tg:
        tg.start_soon(load)
        await anyio.sleep(0.5)
        downtime = await _rounds(demo, rounds, kill, gap)
    return result[0], downtime


async def main(rounds: int, clients: int, workers: int) -> None:
    recycler = Recycler()
    plan = RecyclePlan(grace=10.0)

    async def graceful(pid: int) -> None:
        out = await recycler.recycle(WorkerId.of(psutil.Process(pid)), plan)
        assert out.outcome == "recycled", out.to_json()

    async def sigkill(pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    rows = []
    for name, kill in (("watchdog recycle (SIGTERM drain)", graceful), ("plain SIGKILL", sigkill)):
        with DemoServer(workers=workers) as demo:
            res, down = await measure(demo, clients, rounds, kill)
        rows.append((name, res, down))

    print(
        f"\nRecycle under load: {clients} clients calling echo without pause, {rounds} recycles, "
        f"{workers} workers, 127.0.0.1\n"
    )
    print(
        f"{'method':36} {'calls ok':>9} {'failed':>7} {'fail %':>7} {'calls/s':>8} {'replace s (median)':>19}  errors"
    )
    for name, res, down in rows:
        total = res.ok + res.failed
        med = sorted(down)[len(down) // 2]
        print(
            f"{name:36} {res.ok:9d} {res.failed:7d} {100 * res.failed / max(total, 1):6.2f}% {res.rate:8.0f} "
            f"{med:19.2f}  {res.errors or '-'}"
        )
    base = rows[1][1].failed
    ours = rows[0][1].failed
    print(f"\nfailed calls, ours vs SIGKILL: {ours} vs {base} (goal: 0 for ours)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    anyio.run(main, a.rounds, a.clients, a.workers)
