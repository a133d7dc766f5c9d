"""Sidecar overhead: demo throughput with the watchdog watching 4 workers at default intervals, against without.

Phases alternate (without, with, without, with, ...) on one demo server so that drift on a noisy machine hits
both sides; the figure is the ratio of the medians. While the watchdog runs, its own CPU (including py-spy
children) and peak RSS are sampled.

    .venv/bin/python -m bench.sidecar_overhead [--rounds 3] [--seconds 8] [--clients 16] [--workers 4]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import anyio
import psutil

from bench._load import pct, run_load
from examples.demo.harness import REPO, DemoServer, free_port
from examples.demo.sidecar import Watchdog


def _tree_cpu(p: psutil.Process) -> float:
    total = 0.0
    for q in [p, *p.children(recursive=True)]:
        try:
            t = q.cpu_times()
            total += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
        except psutil.NoSuchProcess:
            continue
    return total


async def _sample_rss(p: psutil.Process, peak: list[int]) -> None:
    while True:
        try:
            peak[0] = max(peak[0], p.memory_info().rss)
        except psutil.NoSuchProcess:
            return
        await anyio.sleep(0.25)


async def main(rounds: int, seconds: float, clients: int, workers: int) -> None:
    without: list[float] = []
    with_wd: list[float] = []
    p99s: dict[str, list[float]] = {"without": [], "with": []}
    cpu_share: list[float] = []
    peak_rss = [0]
    with DemoServer(workers=workers) as demo:
        cfg: dict[str, Any] = {
            "targets": [
                {
                    "name": "demo",
                    "match": {"pid": demo.master_pid},
                    "workers": "children",
                    "metrics_url": demo.metrics_url,
                }
            ],
            "server": {"listen": f"127.0.0.1:{free_port()}"},
            "log": {"format": "json", "level": "warning"},
        }
        probe = REPO / "probes" / "demo-echo.yaml"
        if probe.exists():
            cfg["targets"][0]["probes"] = [str(probe)]
            cfg["targets"][0]["probe_url"] = demo.mcp_url
        await run_load(demo.mcp_url, clients=clients, seconds=2)  # warm-up
        for _ in range(rounds):
            base = await run_load(demo.mcp_url, clients=clients, seconds=seconds)
            without.append(base.rate)
            p99s["without"].append(pct(base.latencies, 0.99))
            wd = Watchdog(cfg)
            await wd.start()
            try:
                assert wd.proc is not None
                proc = psutil.Process(wd.proc.pid)
                await anyio.sleep(3)  # past start-up and the first baseline stack look
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_sample_rss, proc, peak_rss)
                    cpu0 = _tree_cpu(proc)
                    loaded = await run_load(demo.mcp_url, clients=clients, seconds=seconds)
                    cpu_share.append(100 * (_tree_cpu(proc) - cpu0) / loaded.seconds)
                    tg.cancel_scope.cancel()
                with_wd.append(loaded.rate)
                p99s["with"].append(pct(loaded.latencies, 0.99))
            finally:
                wd.stop()
    w, wo = statistics.median(with_wd), statistics.median(without)
    print(
        f"\nSidecar overhead: demo server with {workers} workers, {clients} clients calling echo, "
        f"{rounds} x {seconds:g} s per side, alternating\n"
    )
    print(f"{'':28} {'without':>10} {'with':>10} {'ratio':>7}  goal")
    print(f"{'throughput (calls/s, median)':28} {wo:10.0f} {w:10.0f} {w / wo:7.3f}  >= 0.97")
    pw, pwo = statistics.median(p99s["with"]) * 1000, statistics.median(p99s["without"]) * 1000
    print(f"{'echo p99 (ms, median)':28} {pwo:10.1f} {pw:10.1f} {pw / pwo:7.3f}")
    print(f"{'watchdog CPU (% of a core)':28} {'':10} {statistics.median(cpu_share):10.2f} {'':7}  <= 3")
    print(f"{'watchdog peak RSS (MB)':28} {'':10} {peak_rss[0] / 1e6:10.1f} {'':7}  <= 60")
    print(
        f"\nper round, calls/s without: {[round(x) for x in without]}, with: {[round(x) for x in with_wd]}; "
        f"watchdog CPU %: {[round(x, 2) for x in cpu_share]}"
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--workers", type=int, default=4)
    a = p.parse_args()
    anyio.run(main, a.rounds, a.seconds, a.clients, a.workers)
