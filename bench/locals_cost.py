"""What ``py-spy dump --locals`` costs per look, and how many looks a real spin needs, on each Python.

    .venv/bin/python -m bench.locals_cost [--looks 5] [--dumps 20]

For each Python found (3.11 here, 3.12 and 3.13 from ``.venv-py3.X``) and each target (``spin`` and the
healthy ``churn`` of ``tests/diagnose/target.py``) it measures:

- one dump: wall time and py-spy CPU, plain ``dump --json`` against ``dump --json --locals`` (``--dumps`` each);
- one look's locals series as the sidecar takes it for a spin suspect (``dump_locals`` with the spin check's stop
  condition, at most 40 dumps within 2 s): dumps taken, wall time, py-spy CPU, what the scope evidence said.
  The sidecar takes no series at all for a churn-shaped window (its samples show scopes churning); the churn
  rows force one, to show that even then one scope is never seen re-delivered.

The CPU is py-spy's (the watchdog's cost), read from reaped children's rusage; the target is paused once per
blocking dump for a part of the wall time shown. Run it on a quiet machine for figures worth quoting.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import time

import anyio

from bench.sampling_modes import pythons
from tests.diagnose.helpers import target
from watchdog.diagnose.spin import enough_seen, scope_evidence
from watchdog.signals.stacks import dump_locals, find_py_spy


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def one_dump_cost(exe: str, pid: int, n: int, with_locals: bool) -> tuple[float, float]:
    """Median wall ms and mean CPU ms of ``n`` dumps."""
    cmd = [exe, "dump", "--pid", str(pid), "--json", *(["--locals"] if with_locals else [])]
    walls = []
    cpu0 = _children_cpu()
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False)
        walls.append(time.perf_counter() - t0)
    return 1000 * statistics.median(walls), 1000 * (_children_cpu() - cpu0) / n


async def main(looks: int, dumps: int) -> None:
    exe = find_py_spy()
    print(f"\n{'python':<7} {'target':<6} {'dump ms':>9} {'+locals ms':>11} {'cpu ms':>7} {'+locals cpu':>12}"
          f"  | per look: {'dumps':>6} {'wall s':>7} {'cpu s':>6}  scope evidence (each look)")  # fmt: skip
    for version, python in pythons():
        for mode in ("spin", "churn"):
            with target(python, mode) as pid:
                await anyio.sleep(0.3)
                plain_wall, plain_cpu = one_dump_cost(exe, pid, dumps, False)
                loc_wall, loc_cpu = one_dump_cost(exe, pid, dumps, True)
                taken, walls, cpus, seen = [], [], [], []
                for _ in range(looks):
                    series = await dump_locals(
                        pid, count=40, max_seconds=2.0, enough=enough_seen(pid, give_up_after=40)
                    )
                    se = scope_evidence(series, pid)
                    taken.append(len(series.dumps))
                    walls.append(series.duration_s)
                    cpus.append(series.cpu_s)
                    top = se.top if se is not None else None
                    seen.append(f"{se.decision() if se else 'none'}:{top[1] if top else 0}/{se.dumps if se else 0}")
            print(f"{version:<7} {mode:<6} {plain_wall:9.1f} {loc_wall:11.1f} {plain_cpu:7.1f} {loc_cpu:12.1f}"
                  f"  | {statistics.mean(taken):16.1f} {statistics.mean(walls):7.2f} {statistics.mean(cpus):6.3f}"
                  f"  {' '.join(seen)}")  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--looks", type=int, default=5)
    ap.add_argument("--dumps", type=int, default=20)
    a = ap.parse_args()
    anyio.run(main, a.looks, a.dumps)
