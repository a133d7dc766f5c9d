"""Sidecar overhead: demo throughput with the watchdog watching 4 workers at default intervals, against without.

Load phases without the watchdog, then with it (started once, warmed up under load so its stack-look schedule is
in its steady state rather than at start-up), then without again, so drift over the run hits both sides; the
figure is the ratio of the medians. The watchdog's CPU (py-spy children included) is measured over the whole
uninterrupted "with" stretch, its peak RSS throughout. (Pausing it with SIGSTOP between phases was tried and
rejected: its stack looks then bunch up in the phases it runs, overstating its cost about threefold.)

    .venv/bin/python -m bench.sidecar_overhead [--rounds 3] [--seconds 8] [--clients 16] [--workers 4] [--warmup 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
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


async def main(rounds: int, seconds: float, clients: int, workers: int, warmup: float) -> None:
    without: list[float] = []
    with_wd: list[float] = []
    p99s: dict[str, list[float]] = {"without": [], "with": []}
    peak_rss = [0]
    with DemoServer(workers=workers) as demo:
        cfg: dict[str, Any] = {
            "targets": [{"name": "demo", "match": {"pid": demo.master_pid}, "workers": "children",
                         "metrics_url": demo.metrics_url}],
            "server": {"listen": f"127.0.0.1:{free_port()}"},
            "log": {"format": "json", "level": "warning"},
        }  # fmt: skip
        probe = REPO / "probes" / "demo-echo.yaml"
        if probe.exists():
            cfg["targets"][0]["probes"] = [str(probe)]
            cfg["targets"][0]["probe_url"] = demo.mcp_url

        async def phase(into: list[float], key: str) -> None:
            res = await run_load(demo.mcp_url, clients=clients, seconds=seconds)
            into.append(res.rate)
            p99s[key].append(pct(res.latencies, 0.99))

        for _ in range(rounds):  # before the watchdog
            await phase(without, "without")
        wd = Watchdog(cfg)
        await wd.start()
        try:
            assert wd.proc is not None
            proc = psutil.Process(wd.proc.pid)
            await run_load(demo.mcp_url, clients=clients, seconds=warmup)  # past start-up, into the steady state
            async with anyio.create_task_group() as tg:
                tg.start_soon(_sample_rss, proc, peak_rss)
                cpu0, t0 = _tree_cpu(proc), time.monotonic()
                for _ in range(2 * rounds):
                    await phase(with_wd, "with")
                cpu_share = 100 * (_tree_cpu(proc) - cpu0) / (time.monotonic() - t0)
                tg.cancel_scope.cancel()
        finally:
            wd.stop()
        for _ in range(rounds):  # after it
            await phase(without, "without")
    w, wo = statistics.median(with_wd), statistics.median(without)
    print(f"\nSidecar overhead: demo server with {workers} workers, {clients} clients calling echo; {rounds} x "
          f"{seconds:g} s without the watchdog, then the watchdog at its default intervals (warmed up {warmup:g} s "
          f"under load) for {2 * rounds} x {seconds:g} s, then {rounds} x {seconds:g} s without again\n")  # fmt: skip
    print(f"{'':28} {'without':>10} {'with':>10} {'ratio':>7}  goal")
    print(f"{'throughput (calls/s, median)':28} {wo:10.0f} {w:10.0f} {w / wo:7.3f}  >= 0.97")
    pw, pwo = statistics.median(p99s["with"]) * 1000, statistics.median(p99s["without"]) * 1000
    print(f"{'echo p99 (ms, median)':28} {pwo:10.1f} {pw:10.1f} {pw / pwo:7.3f}")
    print(f"{'watchdog CPU (% of a core)':28} {'':10} {cpu_share:10.2f} {'':7}  <= 3   (py-spy children included)")
    print(f"{'watchdog peak RSS (MB)':28} {'':10} {peak_rss[0] / 1e6:10.1f} {'':7}  <= 60")
    print(f"\nper phase, calls/s without: {[round(x) for x in without]}, with: {[round(x) for x in with_wd]}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--warmup", type=float, default=30.0)
    a = p.parse_args()
    anyio.run(main, a.rounds, a.seconds, a.clients, a.workers, a.warmup)
