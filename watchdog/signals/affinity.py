"""Run py-spy on the CPU its target runs on, so that a blocking sample lands where the target really is.

**Why.** A blocking py-spy sample stops the target (``PTRACE_INTERRUPT``), and a stop takes effect only when the
target next enters the kernel. With the target alone on its CPU and py-spy on another, the kernel kicks the
target's CPU with an inter-processor interrupt. In some virtual machines that kick does not interrupt the guest
thread where it runs (measured on a 2-vCPU Firecracker VM: of 50 ``SIGSTOP``s of a spinning loop on an otherwise
idle machine, ``/proc/PID/syscall`` showed every one stopped at the exit of a system call), so the stop waits for
the target's next system call. A CPU-bound Python thread makes few: a spinning asyncio loop on Python 3.12 and
3.13 only ``epoll_wait`` in its selector, on 3.11 also ``getpid`` (asyncio's C ``get_running_loop`` checks the
pid, inside ``_deliver_cancellation`` among other places). So blocking samples of a 3.12/3.13 spin landed in the
selector (0 of 30 dumps caught ``_deliver_cancellation``), while 3.11 seemed fine. Under load it did not happen:
a preempted target stops where it was preempted.

**What.** py-spy's threads are moved to the CPU the target thread last ran on (``/proc/PID/task/TID/stat``) as
soon as py-spy starts, and follow it while a recording lasts. Then py-spy's timer interrupt preempts the target
wherever it is, the stop is posted while the target is off its CPU, and takes effect at that point: samples land
where the time goes, as on a machine under load. Where the sidecar may not use that CPU (another cpuset), nothing
is moved and the samples are what they would have been.
"""

from __future__ import annotations

import os

import anyio


def _stat_fields(path: str) -> list[str] | None:
    try:
        with open(path) as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def busiest_thread(pid: int) -> int:
    """The thread of ``pid`` with the most CPU time so far (the event loop, in a server), else ``pid``."""
    best, most = pid, -1
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return pid
    for name in tids:
        fields = _stat_fields(f"/proc/{pid}/task/{name}/stat")
        if fields is None or len(fields) < 13 or not name.isdigit():
            continue
        used = int(fields[11]) + int(fields[12])  # utime + stime, clock ticks
        if used > most:
            best, most = int(name), used
    return best


def cpu_of(pid: int, tid: int | None = None) -> int | None:
    """The CPU thread ``tid`` of ``pid`` last ran on (None when it cannot be read)."""
    fields = _stat_fields(f"/proc/{pid}/task/{tid or pid}/stat")
    if fields is None or len(fields) < 37:
        return None
    return int(fields[36])  # field 39 of stat: processor


def pin(child: int, cpu: int) -> bool:
    """Move every thread of process ``child`` to ``cpu``; False when the kernel refuses (not our CPU, gone)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{child}/task")]
    except OSError:
        return False
    moved = False
    for tid in tids:
        try:
            if os.sched_getaffinity(tid) != {cpu}:
                os.sched_setaffinity(tid, {cpu})
            moved = True
        except OSError:  # another cpuset, no permission, or the thread ended
            continue
    return moved


def pin_to_target(child: int, pid: int, tid: int | None = None) -> int | None:
    """Put ``child`` (a py-spy) on the CPU of ``pid``'s thread ``tid``; the CPU, or None when not moved."""
    cpu = cpu_of(pid, tid)
    if cpu is None or cpu not in os.sched_getaffinity(0):
        return None
    return cpu if pin(child, cpu) else None


async def follow(child: int, pid: int, tid: int | None = None, every: float = 0.1) -> None:
    """Keep ``child`` on the CPU of ``pid``'s thread ``tid`` until cancelled (the scheduler may move the target)."""
    while True:
        pin_to_target(child, pid, tid)
        await anyio.sleep(every)
