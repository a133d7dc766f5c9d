"""A py-spy dump on its target's CPU: what moves it there, and a real locals series taken that way."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import py_spy_path, python_with_anyio
from tests.diagnose.helpers import target
from watchdog.signals.affinity import cpu_of, pin_to_target
from watchdog.signals.stacks import dump_locals


def test_a_process_is_moved_to_the_cpu_its_target_last_ran_on() -> None:
    with target(python_with_anyio("3.11"), "busy") as pid:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            cpu = pin_to_target(child.pid, pid, pid)
            assert cpu is not None
            assert cpu in os.sched_getaffinity(0)
            assert os.sched_getaffinity(child.pid) == {cpu}
        finally:
            child.kill()
            child.wait(timeout=10)


def test_nothing_is_moved_when_the_process_or_its_target_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=10)
    assert cpu_of(child.pid) is None
    assert pin_to_target(os.getpid(), child.pid) is None  # no target: we stay where we are
    assert pin_to_target(child.pid, os.getpid()) is None  # no process to move


@pytest.mark.anyio
async def test_a_locals_series_on_the_targets_cpu_reads_the_spin_scope() -> None:
    py_spy_path()
    with target(python_with_anyio("3.11"), "spin") as pid:
        series = await dump_locals(pid, count=20, on_target_cpu=pid)
    assert series.dumps
    origins = {
        f.local("origin")
        for d in series.dumps
        for f in d.thread(pid) or ()
        if f.frame.name.endswith("_deliver_cancellation")
    }
    print(f"\n{len(series.dumps)} dumps, scopes seen: {origins}")
    assert len(origins) == 1  # one scope, re-delivered
    assert (next(iter(origins)) or "").startswith("<CancelScope at 0x")
