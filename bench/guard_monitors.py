"""CPU the lag monitor and the spin sentinel cost an idle event loop at their default intervals, in one run.

    .venv/bin/python bench/guard_monitors.py [--seconds 20]

Child processes run an idle asyncio loop for ``--seconds``: bare; with ``guard.monitor()`` (lag every 0.1 s,
sentinel every 0.5 s); and the same in prometheus_client multiprocess mode, where the publisher thread also copies
values to files every 0.5 s. Each reports its own CPU time (user + system) over the idle period, as percent of
one core. The bare loop is the baseline measured alongside (the children run at the same time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import asyncio, json, os, sys, time
from watchdog import guard

async def idle(seconds, monitored):
    async def wait():
        c0, w0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        return time.process_time() - c0, time.monotonic() - w0
    if monitored:
        async with guard.monitor():
            await asyncio.sleep(0.5)  # past start-up
            return await wait()
    await asyncio.sleep(0.5)
    return await wait()

cpu, wall = asyncio.run(idle(float(sys.argv[1]), sys.argv[2] == "1"))
print(json.dumps({"cpu": cpu, "wall": wall}))
"""


def main(args: argparse.Namespace) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory(prefix="bench-mp-") as mp_dir:
        cases = {
            "idle loop, nothing": ("0", env),
            "guard.monitor()": ("1", env),
            "guard.monitor(), multiprocess": ("1", {**env, "PROMETHEUS_MULTIPROC_DIR": mp_dir}),
        }
        procs = {
            label: subprocess.Popen(
                [sys.executable, "-c", CHILD, str(args.seconds), flag], env=e, stdout=subprocess.PIPE, text=True
            )
            for label, (flag, e) in cases.items()
        }
        results = {}
        for label, proc in procs.items():
            out, _ = proc.communicate(timeout=args.seconds + 60)
            results[label] = json.loads(out)
    print(f"monitor bench: idle asyncio loop for {args.seconds:g} s per child, children run side by side\n")
    print(f"{'child':32} {'CPU ms':>8} {'% of one core':>14}")
    for label, r in results.items():
        print(f"{label:32} {r['cpu'] * 1000:8.1f} {100 * r['cpu'] / r['wall']:14.3f}")
    print("\ngoal: lag monitor + sentinel at most 1 % of one core on an idle loop")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    main(p.parse_args())
