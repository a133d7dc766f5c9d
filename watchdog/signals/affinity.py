"""Run a ``py-spy dump`` on the CPU its target runs on, so that the stop lands where the target really is.

A blocking py-spy sample stops the target (``PTRACE_INTERRUPT``); the stop takes effect when the target next
enters the kernel. From another CPU, on a quiet VM (measured: 2-vCPU Firecracker), that is the target's next
system call: the cross-CPU kick does not interrupt the guest where it runs. A 3.12/3.13 spinning asyncio loop
makes one system call per iteration, ``epoll_wait`` in its selector, so every stop landed there (50 of 50
``SIGSTOP``s, 0 of 30 dumps caught ``_deliver_cancellation``; ``python -m bench.stop_points``). From the target's
own CPU the dump preempts the target wherever it is, and the stop takes effect there (6-7 of 30 dumps caught it).
A long recording cannot be kept there: the scheduler moves the target to the idle CPU (19-124 migrations in 2 s).
"""

from __future__ import annotations

import os


def cpu_of(pid: int, tid: int | None = None) -> int | None:
    """The CPU thread ``tid`` of ``pid`` last ran on (None when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/task/{tid or pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[36])  # field 39: processor
    except (OSError, IndexError, ValueError):
        return None


def pin_to_target(child: int, pid: int, tid: int | None = None) -> int | None:
    """Move process ``child`` (a py-spy just started) to the CPU of ``pid``'s thread ``tid``; the CPU, or None when
    it was not moved (not a CPU we may use: another cpuset; either process gone)."""
    cpu = cpu_of(pid, tid)
    if cpu is None or cpu not in os.sched_getaffinity(0):
        return None
    try:
        os.sched_setaffinity(child, {cpu})
    except OSError:
        return None
    return cpu
