"""What a ``cmdline`` target costs the sidecar each second: discovery's read of the process table.

    .venv/bin/python -m bench.discovery_cost [--extra 0,200] [--scans 200]

The README's example config finds its server by command line, and discovery runs every process round (1 s).
For each size of process table (the machine's own, then with ``--extra`` sleeping processes this script starts
and stops by pid), it times ``Discovery.scan`` of one ``cmdline`` target (a gunicorn-like parent with 4 children,
started here) in CPU per scan: reading every process's command line each time, as ``psutil.process_iter`` does
(the baseline, what discovery did before ``CommandLines``), against ``CommandLines``, which reads again only
processes younger than 10 s. The ratio is ours over the baseline, measured in the same run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil

from watchdog.config import Match, Target
from watchdog.discovery import _ATTRS, Discovery


@contextmanager
def sleepers(n: int, marker: str = "") -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen(["sleep", "600", *([marker] if marker else [])]))
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(10)


@contextmanager
def server(marker: str) -> Iterator[int]:
    """A parent whose command line holds ``marker``, with 4 children: stopped by pid afterwards."""
    code = "import subprocess, sys, time\n"
    code += "kids = [subprocess.Popen(['sleep', '600']) for _ in range(4)]\nprint('up', flush=True)\ntime.sleep(600)\n"
    proc = subprocess.Popen([sys.executable, "-c", code, marker], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"up\n"
        yield proc.pid
    finally:
        for p in [*psutil.Process(proc.pid).children(), psutil.Process(proc.pid)]:
            p.kill()
        proc.wait(10)


def cpu_per_call(fn: Callable[[], object], n: int) -> float:
    fn()
    t0 = time.thread_time()
    for _ in range(n):
        fn()
    return (time.thread_time() - t0) / n


def main(extras: list[int], scans: int) -> None:
    marker = f"wd-bench-{uuid.uuid4().hex[:8]}"
    target = Target(name="srv", match=Match(cmdline=marker), workers="children")
    rows = []
    with server(marker) as pid:
        time.sleep(0.2)  # the children exist before the first scan
        for extra in extras:
            with sleepers(extra):
                old = Discovery([target], lister=lambda: psutil.process_iter(_ATTRS))
                new = Discovery([target])
                for d in (old, new):
                    view = d.scan()[0]
                    assert [r.pid for r in view.roots] == [pid], view
                    assert len(view.workers) == 4, view
                time.sleep(10.5)  # every process older than CommandLines' 10 s: its steady state
                base = cpu_per_call(old.scan, scans)
                ours = cpu_per_call(new.scan, scans)
                rows.append((len(psutil.pids()), base, ours))
    print(f"\nDiscovery of one cmdline target, CPU per scan (one scan a second), {scans} scans each\n")
    print(f"{'processes':>10} {'every cmdline (ms)':>19} {'CommandLines (ms)':>18} {'ratio':>7}")
    for n, base, ours in rows:
        print(f"{n:10d} {base * 1e3:19.2f} {ours * 1e3:18.2f} {ours / base:7.3f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--extra", default="0,200", help="extra sleeping processes per row, comma-separated")
    p.add_argument("--scans", type=int, default=200)
    a = p.parse_args()
    main([int(x) for x in a.extra.split(",")], a.scans)
