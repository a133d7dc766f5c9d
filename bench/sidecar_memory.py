"""Sidecar memory: the resident set of ``watchdog run`` watching the demo's workers under load, against a floor.

Each run starts a fresh watchdog (the configuration of ``bench.sidecar_overhead``: 4 workers, default intervals,
the demo's probe) while ``--clients`` clients call the demo without pause, and reads ``/proc/PID/status`` of the
watchdog: RSS when ``/healthz`` first answers, RSS after ``--seconds`` under load, the peak (VmHWM, the figure
``bench.sidecar_overhead`` reports), and the peak split into file-backed pages (shared libraries: libpython,
libcrypto...) and anonymous ones (Python objects, malloc). The floor is measured in the same run: a bare
interpreter that imports only the third-party packages the watchdog runs on (asyncio, aiohttp with its client and
server, anyio, psutil, yaml, prometheus_client) and nothing else, so the table says what the watchdog adds to
them. ``--env KEY=VALUE`` sets a variable for the watchdog only (e.g. ``MALLOC_ARENA_MAX=2``); the script checks
in ``/proc/PID/environ`` that the watchdog really has it.

The watchdog's bytecode is compiled first, as ``pip install`` leaves the wheel (``bench.sidecar_overhead``'s
``as_installed``); ``--source`` measures a checkout that compiles every module from source at each start.

    .venv/bin/python -m bench.sidecar_memory [--runs 3] [--seconds 60] [--clients 16] [--workers 4] [--env K=V ...]
                                             [--source]

MB here is 10^6 bytes, as in ``bench.sidecar_overhead`` (the goal: peak <= 50 MB).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import anyio

from bench._load import run_load
from bench.sidecar_overhead import as_installed, watchdog_config
from examples.demo.harness import DemoServer
from examples.demo.sidecar import Watchdog

FLOOR_IMPORTS = "import asyncio, aiohttp, aiohttp.web, anyio, psutil, yaml, prometheus_client"


def status(pid: int) -> dict[str, int]:
    """``/proc/PID/status`` memory lines (kB) and ``Threads``."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"):
                out[key] = int(value.split()[0])
    return out


def environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [item.decode(errors="replace").partition("=") for item in f.read().split(b"\0") if item]
    return {k: v for k, _, v in pairs}


def floor() -> dict[str, int]:
    """The resident set of a bare interpreter holding only the third-party imports."""
    code = f"{FLOOR_IMPORTS}; import sys; print('ready', flush=True); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("the floor interpreter did not start")
        return status(proc.pid)
    finally:
        proc.kill()
        proc.wait(5)


@dataclass
class Run:
    start: dict[str, int]
    after: dict[str, int]  # after --seconds under load: VmHWM is the peak, RssAnon/RssFile as then
    threads_max: int


async def one_run(demo: DemoServer, seconds: float, clients: int, env: dict[str, str]) -> Run:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        wd = Watchdog(watchdog_config(demo))
        await wd.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        assert wd.proc is not None
        pid = wd.proc.pid
        seen = environ(pid)
        missing = {k: v for k, v in env.items() if seen.get(k) != v}
        if missing:
            raise RuntimeError(f"the watchdog did not get {missing}")
        start = status(pid)
        threads = start["Threads"]
        deadline = time.monotonic() + seconds
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(run_load, demo.mcp_url, clients=clients, seconds=seconds))
            while time.monotonic() < deadline:  # threads come and go (anyio's worker threads idle out)
                threads = max(threads, status(pid)["Threads"])
                await anyio.sleep(0.5)
        return Run(start, status(pid), threads)
    finally:
        wd.stop()


def mb(kb: float) -> float:
    return kb * 1024 / 1e6


async def main(runs: int, seconds: float, clients: int, workers: int, env: dict[str, str]) -> None:
    base = floor()
    results = []
    with DemoServer(workers=workers) as demo:
        await run_load(demo.mcp_url, clients=clients, seconds=3.0)  # the server warms up
        for _ in range(runs):
            results.append(await one_run(demo, seconds, clients, env))
    base_after = floor()  # the floor again, after: the two bound what the machine gave it
    report(results, base, base_after, seconds, clients, workers, env)


def report(
    results: list[Run],
    base: dict[str, int],
    base_after: dict[str, int],
    seconds: float,
    clients: int,
    workers: int,
    env: dict[str, str],
) -> None:
    fl = (base["VmRSS"] + base_after["VmRSS"]) / 2
    envs = " ".join(f"{k}={v}" for k, v in env.items()) or "none"
    print(f"\nSidecar memory: `watchdog run` watching {workers} demo workers, {clients} clients calling echo, "
          f"{len(results)} fresh watchdogs, {seconds:g} s each; extra environment: {envs}")  # fmt: skip
    print(f"floor (`python -c '{FLOOR_IMPORTS}'`): {mb(base['VmRSS']):.1f} MB and {mb(base_after['VmRSS']):.1f} "
          f"MB (anon {mb(base['RssAnon']):.1f}, file {mb(base['RssFile']):.1f})\n")  # fmt: skip
    rows = [
        ("RSS when /healthz answers", [r.start["VmRSS"] for r in results]),
        (f"RSS after {seconds:g} s under load", [r.after["VmRSS"] for r in results]),
        ("peak RSS (VmHWM)", [r.after["VmHWM"] for r in results]),
        ("  anonymous, at the end", [r.after["RssAnon"] for r in results]),
        ("  file-backed, at the end", [r.after["RssFile"] for r in results]),
    ]
    print(f"{'':34} {'median MB':>10} {'range':>13} {'x floor':>8}  runs")
    for name, values in rows:
        med = statistics.median(values)
        spread = f"{mb(min(values)):.1f}-{mb(max(values)):.1f}"
        ratio = f"{med / fl:8.3f}" if not name.startswith("  ") else f"{'':8}"
        print(f"{name:34} {mb(med):10.1f} {spread:>13} {ratio}  {', '.join(f'{mb(v):.1f}' for v in values)}")
    print(f"{'threads (most seen)':34} {statistics.median(r.threads_max for r in results):10g}")
    print(f"\npeak over the floor: {mb(statistics.median(r.after['VmHWM'] for r in results) - fl):.1f} MB (median); "
          f"goal: peak <= 50 MB")  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="for the watchdog only")
    p.add_argument("--source", action="store_true", help="run the watchdog without compiled bytecode")
    a = p.parse_args()
    print(f"watchdog: {as_installed(a.source)}")
    extra = dict(item.split("=", 1) for item in a.env)
    anyio.run(main, a.runs, a.seconds, a.clients, a.workers, extra)
