"""prometheus_client multiprocess mode: values reach the files, each worker under its own pid, no phantom master.

Each case runs a small script in a fresh interpreter with PROMETHEUS_MULTIPROC_DIR set (the mode is chosen when
prometheus_client is imported), forking the way gunicorn does; tests/guard/test_gunicorn.py runs real gunicorn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from examples.demo.harness import REPO

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess
    from prometheus_client.parser import text_string_to_metric_families
    from watchdog import guard

    RELEASE, FINISH = sys.argv[1], sys.argv[2]     # files the master creates when it has seen what it waits for
    limiter = guard.Limiter(2, name="downstream")   # created before the fork, like gunicorn's preload_app
    unused = guard.Limiter(3, name="never-used")

    async def until(path):
        while not os.path.exists(path):
            await asyncio.sleep(0.02)

    async def worker():
        async with guard.monitor(sentinel=guard.SpinSentinel(interval=0.1)):
            async with limiter:
                await until(RELEASE)                # hold the slot until the master has seen it published
                time.sleep(0.4)                     # a stall
            await until(FINISH)

    def samples(text):
        return [
            [s.name, s.labels, s.value]
            for f in text_string_to_metric_families(text)
            for s in f.samples
        ]

    def collect():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return samples(generate_latest(registry).decode())

    def per_pid(data, metric, **labels):
        return {l["pid"]: v for n, l, v in data if n == metric and all(l.get(k) == x for k, x in labels.items())}

    def wait_for(pred, within=40.0):
        # the publisher copies values every 0.5 s: poll until they show (the test's asserts judge what came)
        deadline = time.monotonic() + within
        while not pred(data := collect()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return data

    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            asyncio.run(worker())
            os._exit(0)
        children.append(pid)
    pids = {str(p) for p in children}
    during = wait_for(lambda d: per_pid(d, "watchdog_guard_limiter_in_flight", name="downstream")
                      == dict.fromkeys(pids, 1.0))             # mid-way: each child holds one slot
    open(RELEASE, "w").close()
    wait_for(lambda d: per_pid(d, "watchdog_guard_limiter_in_flight", name="downstream") == dict.fromkeys(pids, 0.0)
             and set(per_pid(d, "watchdog_guard_loop_lag_max_seconds")) == pids
             and all(v >= 0.3 for v in per_pid(d, "watchdog_guard_loop_lag_max_seconds").values()))
    open(FINISH, "w").close()
    for pid in children:
        os.waitpid(pid, 0)
    after = collect()

    print(json.dumps({"master": os.getpid(), "children": children, "during": during, "after": after}))
    """
)


@pytest.mark.slow
def test_each_forked_worker_publishes_under_its_own_pid_and_the_master_never(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "PYTHONPATH": str(REPO)}
    flags = [str(tmp_path / "release"), str(tmp_path / "finish")]
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, *flags], env=env, cwd=REPO, capture_output=True, text=True, timeout=100,
        check=True,
    )  # fmt: skip
    data = json.loads(out.stdout.strip().splitlines()[-1])
    master, children = str(data["master"]), {str(p) for p in data["children"]}

    def per_pid(when: str, metric: str, /, **labels: str) -> dict[str, float]:
        return {
            s_labels["pid"]: value
            for s_name, s_labels, value in data[when]
            if s_name == metric and all(s_labels.get(k) == v for k, v in labels.items())
        }

    in_flight = per_pid("during", "watchdog_guard_limiter_in_flight", name="downstream")
    print(f"\nmultiprocess: in flight per pid mid-way {in_flight}; master {master}")
    assert in_flight == dict.fromkeys(children, 1.0)
    assert per_pid("after", "watchdog_guard_limiter_in_flight", name="downstream") == dict.fromkeys(children, 0.0)
    assert per_pid("after", "watchdog_guard_limiter_limit", name="downstream") == dict.fromkeys(children, 2.0)
    # a limiter a worker never used is still exported by it once its monitors run; never by the master
    assert per_pid("after", "watchdog_guard_limiter_limit", name="never-used") == dict.fromkeys(children, 3.0)
    lag_max = per_pid("after", "watchdog_guard_loop_lag_max_seconds")
    assert set(lag_max) == children
    assert all(v >= 0.3 for v in lag_max.values()), lag_max  # each child's 0.4 s stall, kept in the window
    assert per_pid("after", "watchdog_guard_cancel_spin_scopes") == dict.fromkeys(children, 0.0)
    every_pid = {s_labels.get("pid") for _, s_labels, _ in data["after"]} - {None}
    assert master not in every_pid, "the master (preload) must not appear as a worker"
    acquired = [
        v
        for name, labels, v in data["after"]
        if name == "watchdog_guard_limiter_acquired_total" and labels["name"] == "downstream"
    ]
    assert acquired == [2.0]  # counters are summed over workers (no pid)
