"""Spin detection: from the onset of a real anyio spin to detection, and to a healthy replacement serving.

The demo server (2 workers) and ``watchdog run`` with the default rules and intervals and the demo's echo probe;
first a churn control (healthy cancel-heavy work: the demo's ``timeouts`` tool, thousands of short timeouts a
second in both workers for 15 s, which must never be judged a spin nor recycled); then each run injects the
spin into one worker through a real MCP call (``stubborn``, then the client walks away) and reads the
watchdog's own event log: when ``cancel-delivery-spin`` fired, and when the recycle reported a
replacement that passed the probe on its own pid. The budget is raised for the benchmark only (the default
allows 3 recycles per 15 minutes, and this makes one per run).

    .venv/bin/python -m bench.sidecar_detection [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import anyio

from examples.demo import inject
from examples.demo.harness import REPO, DemoServer, free_port
from examples.demo.sidecar import Watchdog, Webhooks


async def main(runs: int) -> None:
    detect: list[float] = []
    healthy: list[float] = []
    rows: list[str] = []
    with DemoServer(workers=2) as demo:
        async with Webhooks().serve() as hooks:
            cfg: dict[str, Any] = {
                "targets": [{
                    "name": "demo", "match": {"pid": demo.master_pid}, "workers": "children",
                    "metrics_url": demo.metrics_url, "probes": [str(REPO / "probes" / "demo-echo.yaml")],
                    "probe_url": demo.mcp_url,
                }],
                "budget": {"max_recycles": runs + 1, "cooldown": "0s"},
                "server": {"listen": f"127.0.0.1:{free_port()}"},
                "notify": {"webhooks": [{"url": hooks.url, "retries": 1}]},
                "log": {"format": "json"},
            }  # fmt: skip
            wd = Watchdog(cfg)
            await wd.start()
            try:
                await anyio.sleep(3)
                churn_start = time.time()
                async with anyio.create_task_group() as tg:
                    for _ in range(4):
                        tg.start_soon(inject.timeouts, demo.mcp_url, 15.0)
                during = [e for e in wd.events() if e.get("time", 0) >= churn_start]
                churn_firings = sum(e.get("kind") == "rule_firing" for e in during)
                churn_recycles = sum(e.get("kind") == "recycle_started" for e in during)
                for i in range(runs):
                    onset_wall = time.time()
                    onset = time.monotonic()
                    pid = await inject.spin(demo.mcp_url)
                    note = await hooks.wait_for(lambda n, p=pid: n["worker"] == p and "recycle" in n["evidence"],
                                                within=90)  # fmt: skip
                    done = time.monotonic() - onset
                    firing = next(e for e in wd.events() if e.get("kind") == "rule_firing" and e.get("worker") == pid)
                    d = firing["time"] - onset_wall
                    rec = note["evidence"]["recycle"]
                    ok = (
                        rec["outcome"] == "recycled" and f"on worker {rec['replacement']}" in rec["steps"][-1]["detail"]
                    )
                    detect.append(d)
                    healthy.append(done)
                    rows.append(
                        f"{i + 1:>4} {pid:>8} {d:10.1f} {done:12.1f}  {'yes' if ok else 'NO: ' + rec['outcome']}"
                    )
                    await anyio.sleep(2)
            finally:
                wd.stop()
    print(f"\nSpin detection with the default rules and intervals ({runs} runs, demo with 2 workers, 127.0.0.1)\n")
    print(f"{'run':>4} {'worker':>8} {'detect s':>10} {'healthy s':>12}  replacement passed its own probe")
    print("\n".join(rows))
    md, mh = statistics.median(detect), statistics.median(healthy)
    print(
        f"\nchurn control (15 s of healthy timeout churn in both workers): {churn_firings} rule firings, "
        f"{churn_recycles} recycles (goal 0)"
    )
    print(
        f"\nmedian: detection {md:.1f} s (goal <= 4 s, ratio {md / 4:.2f}); healthy replacement serving "
        f"{mh:.1f} s (goal <= 10 s, ratio {mh / 10:.2f})"
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    anyio.run(main, p.parse_args().runs)
