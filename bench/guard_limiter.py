"""Limiter speed against asyncio.Semaphore and anyio.CapacityLimiter, measured in one run.

    .venv/bin/python bench/guard_limiter.py [--ops 200000] [--rounds 5]

Uncontended: one task doing ``async with`` + nothing, ``--ops`` times. Contended: ``--tasks`` tasks (100) share a
limit of 10, each doing ``--per-task`` acquisitions with a checkpoint inside (so slots change hands). Each figure
is the best of ``--rounds`` rounds, rounds interleaved across contenders so machine noise hits all alike. Metrics
on: the limiter exports to a fresh prometheus_client registry (its values are read when the registry is scraped,
so the acquire itself only counts in plain ints); metrics off: ``registry=None``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from prometheus_client import CollectorRegistry

from watchdog.guard import Limiter

Factory = Callable[[], Any]


async def uncontended(make: Factory, ops: int) -> float:
    lim = make()
    t = time.perf_counter()
    for _ in range(ops):
        async with lim:
            pass
    return (time.perf_counter() - t) / ops


async def contended(make: Factory, tasks: int, per_task: int) -> float:
    """Acquisitions per second with ``tasks`` tasks sharing the limiter."""
    lim = make()

    async def worker() -> None:
        for _ in range(per_task):
            async with lim:
                await asyncio.sleep(0)

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return tasks * per_task / (time.perf_counter() - t)


def contenders(limit: int) -> dict[str, Factory]:
    registries: list[CollectorRegistry] = []

    def guard() -> Limiter:
        reg = CollectorRegistry()
        registries.append(reg)
        return Limiter(limit, name="bench", registry=reg)

    return {
        "asyncio.Semaphore": lambda: asyncio.Semaphore(limit),
        "anyio.CapacityLimiter": lambda: anyio.CapacityLimiter(limit),
        "guard.Limiter (metrics on)": guard,
        "guard.Limiter (metrics off)": lambda: Limiter(limit, name="bench", registry=None),
    }


async def best(run: Callable[[], Awaitable[float]], rounds: int, *, low: bool) -> float:
    values = [await run() for _ in range(rounds)]
    return min(values) if low else max(values)


async def main(args: argparse.Namespace) -> None:
    unc: dict[str, list[float]] = {}
    con: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, make in contenders(1).items():
            unc.setdefault(name, []).append(await uncontended(make, args.ops))
        for name, make in contenders(10).items():
            con.setdefault(name, []).append(await contended(make, args.tasks, args.per_task))
    base_u = min(unc["asyncio.Semaphore"])
    base_c = max(con["asyncio.Semaphore"])
    print(f"limiter bench: {args.ops} uncontended ops, {args.tasks} tasks x {args.per_task} contended (limit 10);")
    print(f"best of {args.rounds} interleaved rounds, asyncio, one process\n")
    print(f"{'contender':30} {'uncontended ns/op':>18} {'x Semaphore':>12} {'contended op/s':>15} {'x Semaphore':>12}")
    for name in unc:
        u, c = min(unc[name]), max(con[name])
        print(f"{name:30} {u * 1e9:18.0f} {u / base_u:12.2f} {c:15.0f} {c / base_c:12.2f}")
    print("\ngoals: uncontended (metrics on) <= 2.00 x Semaphore and faster than CapacityLimiter; contended >= 0.80 x")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", type=int, default=200_000)
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--per-task", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(p.parse_args()))
