"""py-spy on its target's CPU: what moves it there, and that a real sampling run does."""

from __future__ import annotations

import os
import subprocess
import sys

import anyio
import psutil
import pytest

from tests.conftest import py_spy_path, python_with_anyio
from tests.diagnose.helpers import target
from watchdog.signals.affinity import busiest_thread, cpu_of, pin, pin_to_target
from watchdog.signals.stacks import sample_stacks


def test_a_process_is_moved_to_the_cpu_its_target_last_ran_on() -> None:
    with target(python_with_anyio("3.11"), "busy") as pid:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            cpu = pin_to_target(child.pid, pid)
            assert cpu is not None
            assert cpu in os.sched_getaffinity(0)
            assert os.sched_getaffinity(child.pid) == {cpu}
            assert busiest_thread(pid) == pid  # the event loop thread of a single-threaded target
        finally:
            child.kill()
            child.wait(timeout=10)


def test_nothing_is_moved_when_the_process_or_its_target_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=10)
    assert pin(child.pid, 0) is False
    assert cpu_of(child.pid) is None
    assert pin_to_target(os.getpid(), child.pid) is None
    assert busiest_thread(child.pid) == child.pid


@pytest.mark.anyio
async def test_a_blocking_recording_runs_py_spy_on_the_targets_cpu_and_follows_it() -> None:
    py_spy_path()
    seen: list[tuple[set[int], int | None]] = []
    with target(python_with_anyio("3.11"), "busy") as pid:

        async def watch() -> None:
            while True:
                await anyio.sleep(0.05)
                for c in psutil.Process().children():
                    if c.name() == "py-spy":
                        try:
                            cpus = set.union(*(os.sched_getaffinity(t.id) for t in c.threads()))
                        except (OSError, psutil.Error):
                            continue
                        seen.append((cpus, cpu_of(pid)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            st = await sample_stacks(pid, duration=1.0, rate=50)
            tg.cancel_scope.cancel()
    print(f"\npy-spy's CPUs and the target's during the recording: {seen}")
    assert st.samples > 0
    assert seen
    assert all(len(cpus) == 1 for cpus, _ in seen)  # on one CPU throughout
    assert sum(cpus == {cpu} for cpus, cpu in seen) >= len(seen) // 2  # the target's (it may move meanwhile)
