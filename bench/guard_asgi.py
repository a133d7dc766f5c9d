"""Latency the guard's ASGI middleware adds to a trivial app under uvicorn, against no middleware, in one run.

    .venv/bin/python bench/guard_asgi.py [--clients 50] [--requests 40] [--rounds 5]

Three uvicorn processes on 127.0.0.1 serve the same trivial app: bare, behind ``ConnectionLimit``, and behind
``Drain(ConnectionLimit(...))`` (metrics on). ``--clients`` concurrent keep-alive clients each send
``--requests`` GETs per round; rounds alternate between the servers, in a shuffled order, so that machine noise
hits all alike. The figure per server is the median over rounds of each round's p50 (and p99) latency, and the
server's own CPU time per request (user + system, from the kernel), which noise from other processes disturbs
less than latency does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil

REPO = Path(__file__).resolve().parents[1]
APPS = {"no middleware": "plain", "ConnectionLimit": "limited", "Drain + ConnectionLimit": "guarded"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(app: str, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "uvicorn", f"guard_asgi_apps:{app}", "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "bench"), str(REPO)])}
    return subprocess.Popen(
        [*cmd, "--log-level", "error", "--no-access-log"], env=env, cwd=REPO, start_new_session=True
    )


async def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


async def round_latencies(url: str, clients: int, requests: int) -> list[float]:
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            for _ in range(requests):
                t = time.perf_counter()
                async with session.get(url) as r:
                    await r.read()
                latencies.append(time.perf_counter() - t)

        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    ports = {label: free_port() for label in APPS}
    procs = {label: start(app, ports[label]) for label, app in APPS.items()}
    try:
        for port in ports.values():
            await wait_listening(port)
        for label in APPS:  # warm up
            await round_latencies(f"http://127.0.0.1:{ports[label]}/", args.clients, 5)
        p50: dict[str, list[float]] = {label: [] for label in APPS}
        p99: dict[str, list[float]] = {label: [] for label in APPS}
        cpu: dict[str, float] = dict.fromkeys(APPS, 0.0)
        served: dict[str, int] = dict.fromkeys(APPS, 0)
        servers = {label: psutil.Process(proc.pid) for label, proc in procs.items()}
        order = list(APPS)
        for _ in range(args.rounds):
            random.shuffle(order)
            for label in order:
                before = sum(servers[label].cpu_times()[:2])
                lat = await round_latencies(f"http://127.0.0.1:{ports[label]}/", args.clients, args.requests)
                cpu[label] += sum(servers[label].cpu_times()[:2]) - before
                served[label] += len(lat)
                p50[label].append(pct(lat, 0.5))
                p99[label].append(pct(lat, 0.99))
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    base = statistics.median(p50["no middleware"])
    base_cpu = cpu["no middleware"] / served["no middleware"]
    print(
        f"ASGI middleware bench: uvicorn, trivial app, {args.clients} concurrent keep-alive clients x "
        f"{args.requests} requests, median of {args.rounds} interleaved rounds\n"
    )
    print(f"{'server':26} {'p50 ms':>8} {'x bare':>8} {'p99 ms':>8} {'server CPU us/req':>18} {'x bare':>8}")
    for label in APPS:
        m50, m99 = statistics.median(p50[label]), statistics.median(p99[label])
        per = cpu[label] / served[label]
        print(
            f"{label:26} {m50 * 1000:8.2f} {m50 / base:8.3f} {m99 * 1000:8.2f} {per * 1e6:18.1f} {per / base_cpu:8.3f}"
        )
    print("\ngoal: p50 at most 1.05 x bare")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--rounds", type=int, default=30)
    asyncio.run(main(p.parse_args()))
