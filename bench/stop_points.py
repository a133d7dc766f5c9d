"""Where a blocking sample of a spinning loop lands, stopped from another CPU or from the target's own.

    .venv/bin/python -m bench.stop_points [--stops 50] [--dumps 30] [--modes spin,churn]

For each Python found (3.11 here, 3.12 and 3.13 from ``.venv-py3.X``) and each target of
``tests/diagnose/target.py``:

- ``--stops`` times, ``SIGSTOP`` the target and read ``/proc/PID/syscall`` while it is stopped: the system call
  the stop took effect in (``epoll_wait``, ``getpid``...) or ``-`` (stopped by an interrupt, where it ran). Once
  from a process on another CPU (as an unpinned py-spy stops it), once from one on the target's CPU;
- ``--dumps`` blocking ``py-spy dump --locals`` each way, counting those that caught ``_deliver_cancellation``
  with a readable ``origin`` (what the spin verdict needs).

Run it on a quiet machine: under load the target is preempted at random points and every way looks alike.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
from collections import Counter

from bench.sampling_modes import pythons
from tests.diagnose.helpers import target
from watchdog.signals.stacks import find_py_spy

SYSCALLS = {"232": "epoll_wait", "39": "getpid", "281": "epoll_pwait", "441": "epoll_pwait2", "-1": "-"}


def cpu_of(pid: int) -> int | None:
    """The CPU ``pid`` last ran on (field 39 of ``/proc/PID/stat``)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return None


def _elsewhere(pid: int) -> None:
    cpu = cpu_of(pid)
    others = os.sched_getaffinity(0) - {cpu}
    if others:
        os.sched_setaffinity(0, others)


def _on_target(pid: int) -> None:
    cpu = cpu_of(pid)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def stops(pid: int, n: int, same_cpu: bool) -> Counter[str]:
    """Where ``n`` SIGSTOPs of ``pid`` took effect (system call name, or ``-``)."""
    seen: Counter[str] = Counter()
    allowed = os.sched_getaffinity(0)
    try:
        for _ in range(n):
            (_on_target if same_cpu else _elsewhere)(pid)
            time.sleep(0.01)
            os.kill(pid, signal.SIGSTOP)
            for _ in range(2000):
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                        break
                time.sleep(0.0005)
            with open(f"/proc/{pid}/syscall") as f:
                nr = f.read().split()[0]
            os.kill(pid, signal.SIGCONT)
            seen[SYSCALLS.get(nr, nr)] += 1
    finally:
        os.kill(pid, signal.SIGCONT)
        os.sched_setaffinity(0, allowed)
    return seen


def dumps(exe: str, pid: int, n: int, same_cpu: bool) -> tuple[int, int, float]:
    """Of ``n`` blocking locals dumps: how many caught ``_deliver_cancellation`` with its ``origin``, how many
    failed, and py-spy's CPU ms per dump."""
    caught = failed = 0
    cpu = 0.0
    for _ in range(n):
        cpu_now = cpu_of(pid)
        others = os.sched_getaffinity(0) - {cpu_now}
        where = {cpu_now} if same_cpu and cpu_now is not None else (others or os.sched_getaffinity(0))
        before = os.times()
        res = subprocess.run([exe, "dump", "--pid", str(pid), "--json", "--locals"], capture_output=True, text=True,
                             preexec_fn=lambda w=where: os.sched_setaffinity(0, w), check=False)  # fmt: skip
        after = os.times()
        cpu += (after.children_user - before.children_user) + (after.children_system - before.children_system)
        if res.returncode != 0:
            failed += 1
            continue
        frames = json.loads(res.stdout)[0]["frames"]
        hit = [f for f in frames if f["name"].endswith("_deliver_cancellation")]
        if hit and any(v["name"] == "origin" and "CancelScope at 0x" in str(v.get("repr")) for v in
                       hit[-1].get("locals") or []):  # fmt: skip
            caught += 1
        time.sleep(0.02)
    return caught, failed, 1000 * cpu / max(1, n)


def main(n_stops: int, n_dumps: int, modes: list[str]) -> None:
    exe = find_py_spy()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    print(f"\n{'python':<7} {'target':<7} {'py-spy on':<11} {'stops took effect in':<40} {'dumps caught':>13} "
          f"{'failed':>7} {'cpu ms':>7}")  # fmt: skip
    for version, python in pythons():
        for mode in modes:
            with target(python, mode) as pid:
                time.sleep(0.5)
                for same in (False, True):
                    where = ", ".join(f"{k} {v}" for k, v in stops(pid, n_stops, same).most_common())
                    caught, failed, cpu = dumps(exe, pid, n_dumps, same)
                    print(f"{version:<7} {mode:<7} {'its CPU' if same else 'another CPU':<11} {where:<40} "
                          f"{caught:>6} of {n_dumps:<4} {failed:>7} {cpu:7.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stops", type=int, default=50)
    ap.add_argument("--dumps", type=int, default=30)
    ap.add_argument("--modes", default="spin,churn")
    a = ap.parse_args()
    main(a.stops, a.dumps, a.modes.split(","))
