"""ChildIndex and CommandLines: the children and command lines of real processes, as psutil finds them, without
reading every process each tick."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from watchdog.discovery import ChildIndex, CommandLines

CHILD = "import time; time.sleep(300)"


@pytest.fixture
def parent() -> Iterator[psutil.Process]:
    """A process with two children that leave no zombie; all killed by pid afterwards."""
    code = "import signal, subprocess, sys, time\nsignal.signal(signal.SIGCHLD, signal.SIG_IGN)  # reaped at exit\n"
    code += f"kids = [subprocess.Popen([sys.executable, '-c', {CHILD!r}]) for _ in range(2)]\n"
    code += "print('ready', flush=True)\ntime.sleep(300)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        yield psutil.Process(proc.pid)
    finally:
        for p in [*psutil.Process(proc.pid).children(), psutil.Process(proc.pid)]:
            p.kill()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def pids(procs: list[psutil.Process]) -> list[int]:
    return sorted(p.pid for p in procs)


def test_it_finds_what_psutil_finds_and_follows_a_child_that_exits(parent: psutil.Process) -> None:
    index = ChildIndex()
    kids = parent.children()
    assert len(kids) == 2
    assert pids(index.children(parent)) == pids(kids)
    kids[0].kill()
    kids[0].wait(10)  # gone: its parent ignores SIGCHLD
    assert pids(index.children(parent)) == pids(parent.children()) == [kids[1].pid]


def test_only_new_pids_and_orphans_are_read_and_everything_again_when_the_map_ages(parent: psutil.Process) -> None:
    now = [0.0]
    # a table of processes that live through the test (the machine's own come and go)
    table = [frozenset({1, os.getpid(), parent.pid, *(c.pid for c in parent.children())})]
    index = ChildIndex(max_age=30.0, clock=lambda: now[0], list_pids=lambda: table[0])
    first = pids(index.children(parent))
    everything = index.reads
    assert everything == len(table[0])
    for _ in range(5):
        now[0] += 1.0
        assert pids(index.children(parent)) == first
    assert index.reads == everything, "nothing changed, nothing read"
    table[0] = table[0] | {2**22 + 1}  # a pid came (it does not exist: skipped)
    assert pids(index.children(parent)) == first
    assert index.reads == everything + 1
    table[0] = table[0] - {parent.pid}  # the parent went (as far as the index knows): its children are read again
    assert pids(index.children(parent)) == first  # ... and their parent is still this one
    assert index.reads == everything + 1 + 2 + 1  # the two orphans, and the made-up pid (still unreadable)
    now[0] += 31.0
    index.children(parent)
    assert index.reads > 2 * everything


def test_command_lines_are_read_again_only_while_young_and_all_again_when_the_table_ages(
    tmp_path: Path,
) -> None:
    # a real process that changes its command line once it has started (as exec or setproctitle do)
    marker = f"wd-cmdline-{os.getpid()}"
    go = tmp_path / "go"
    code = f"import os, sys, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
    code += f"os.execv(sys.executable, [sys.executable, '-c', {CHILD!r}, {marker!r}])\n"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        now, wall = [0.0], [psutil.Process(proc.pid).create_time()]
        mine = frozenset({1, os.getpid(), proc.pid})
        table = CommandLines(
            young=10.0, max_age=30.0, clock=lambda: now[0], wall=lambda: wall[0], list_pids=lambda: mine
        )

        def line() -> list[str]:
            return next(p.info["cmdline"] for p in table() if p.pid == proc.pid)

        assert marker not in line()
        assert table.reads == len(mine)
        go.touch()
        deadline = time.monotonic() + 30
        while marker not in line():  # young: read again on every call, until the exec shows
            assert proc.poll() is None
            assert time.monotonic() < deadline
        reads = table.reads
        wall[0] += 11.0  # older than ``young``: kept, nothing read
        now[0] += 1.0
        assert marker in line()
        assert table.reads == reads
        now[0] += 30.0  # the table aged: everything read again
        assert marker in line()
        assert table.reads == reads + len(mine)
        proc.kill()
        proc.wait(10)
        gone = frozenset({1, os.getpid()})
        table.list_pids = lambda: gone
        assert proc.pid not in {p.pid for p in table()}  # an exited process leaves the table
    finally:
        proc.kill()
        proc.wait(10)
