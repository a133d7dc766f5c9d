"""How sure the sidecar is of a real spin after one look and after two, and what a look takes, per Python.

    .venv/bin/python -m bench.spin_looks [--trials 5] [--duration 1.0]

For each Python found (3.11 here, 3.12 and 3.13 from ``.venv-py3.X``), ``--trials`` times: start a real anyio spin
(``tests/diagnose/target.py spin``) and take two consecutive looks with the sidecar's ``StackLooker`` (its default
locals series; the second look builds on the first's scope, as in the sidecar). Prints, per look, the verdict and
confidence (``stack_spin_confidence``: 3 high, 2 medium, 0 not a spin) and the look's wall time; then the same
for the healthy ``churn`` target (never a spin).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import anyio
import psutil

from bench.sampling_modes import pythons
from tests.diagnose.helpers import target
from watchdog.agent.stacks import StackLooker
from watchdog.discovery import WorkerId


async def main(trials: int, duration: float) -> None:
    print(f"\n{'python':<7} {'target':<6} {'after look 1':<28} {'after look 2':<28} {'look wall s':>12}")
    for version, python in pythons():
        for mode in ("spin", "churn"):
            firsts: Counter[str] = Counter()
            seconds: Counter[str] = Counter()
            walls = []
            for _ in range(trials):
                looker = StackLooker({})
                with target(python, mode) as pid:
                    wid = WorkerId.of(psutil.Process(pid))
                    seen = []
                    for _ in range(2):
                        t0 = time.monotonic()
                        look = await looker.look(wid, duration, 100)
                        walls.append(time.monotonic() - t0)
                        conf = look.verdict["confidence"] if look.verdict["kind"] == "spin" else "-"
                        seen.append(f"{look.verdict['kind']}/{conf}")
                firsts[seen[0]] += 1
                seconds[seen[1]] += 1
            one = ", ".join(f"{k} {n}" for k, n in firsts.most_common())
            two = ", ".join(f"{k} {n}" for k, n in seconds.most_common())
            print(f"{version:<7} {mode:<6} {one:<28} {two:<28} {statistics.median(walls):12.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--duration", type=float, default=1.0)
    a = ap.parse_args()
    anyio.run(main, a.trials, a.duration)
