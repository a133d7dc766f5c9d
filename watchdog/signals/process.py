"""Process facts from psutil and /proc: who a process is, what role it plays, and snapshots of what it uses.

Everything here is synchronous and quick (a few ms per call); async callers run it off their event loop with
``anyio.to_thread.run_sync``. Two snapshots a window apart give rates: CPU % (per thread too), RSS trend, fd
and socket growth, context switches. A process is known by (pid, create time); ``snapshot`` takes the create
time it expects and raises ``ProcessGone`` if the pid now belongs to someone else.

Roles, for servers that fork workers:

- ``master``: a gunicorn arbiter or a ``uvicorn --workers`` supervisor that has Python worker children;
- ``worker``: a Python child of such a master;
- ``process``: anything else (a single uvicorn, a script).
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import psutil

from watchdog.errors import NotPython, ProcessGone, PtraceDenied

Role = Literal["master", "worker", "process"]

_PYTHON_EXE = re.compile(r"^(?:python|pypy)\d*(?:\.\d+)?[a-z]*$")
_LIBPYTHON = re.compile(r"libpython\d\.\d+")
# multiprocessing's helpers are children of a uvicorn supervisor, but not workers
_HELPER_MARKERS = ("multiprocessing.resource_tracker", "multiprocessing.semaphore_tracker", "forkserver")


@dataclass(frozen=True)
class ProcessInfo:
    """Who a process is: pid, parent, create time (with pid, its identity), command line, executable, user,
    and its ``role`` (with ``master_pid`` for a worker and ``server`` naming the supervisor kind)."""

    pid: int
    ppid: int
    create_time: float
    cmdline: tuple[str, ...]
    exe: str
    username: str
    role: Role
    master_pid: int | None = None
    server: str | None = None

    @property
    def uptime_s(self) -> float:
        return max(0.0, time.time() - self.create_time)


@dataclass(frozen=True)
class Snapshot:
    """What a process uses at one instant (``at`` is ``time.monotonic()``).

    ``thread_cpu_s`` maps native thread id to its CPU seconds so far; ``sockets`` counts inet sockets by TCP
    state (``NONE`` for UDP); ``client_connections`` counts ESTABLISHED sockets on one of the process's own
    listening ports (for a server, the connections it is serving, a stand-in for requests in flight).
    """

    at: float
    cpu_s: float
    thread_cpu_s: dict[int, float]
    rss_bytes: int
    num_fds: int
    num_threads: int
    sockets: dict[str, int]
    client_connections: int
    ctx_voluntary: int
    ctx_involuntary: int
    children: tuple[int, ...]
    thread_states: dict[int, tuple[str, str]] = field(default_factory=dict)
    thread_wait_s: dict[int, float] = field(default_factory=dict)


def _gone(pid: int, during: str) -> ProcessGone:
    return ProcessGone(pid, during)


def _process(pid: int, create_time: float | None = None, during: str = "") -> psutil.Process:
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 0.01:
            raise _gone(pid, during or "and its pid now belongs to another process")
        if proc.status() == psutil.STATUS_ZOMBIE:  # exited, not yet reaped by its parent
            raise _gone(pid, during or "(a zombie: it has exited)")
        return proc
    except psutil.NoSuchProcess:
        raise _gone(pid, during) from None
    except psutil.AccessDenied as exc:
        raise PtraceDenied(pid, f"psutil: {exc}") from None


def is_python(proc: psutil.Process) -> bool:
    """True when the process runs a Python interpreter: by its executable's name, else a libpython it maps."""
    try:
        exe = proc.exe()
    except psutil.AccessDenied as exc:
        raise PtraceDenied(proc.pid, f"cannot read /proc/{proc.pid}/exe: {exc}") from None
    if _PYTHON_EXE.match(os.path.basename(exe)):
        return True
    try:
        with open(f"/proc/{proc.pid}/maps") as f:
            return any(_LIBPYTHON.search(line) for line in f)
    except PermissionError as exc:
        raise PtraceDenied(proc.pid, f"cannot read /proc/{proc.pid}/maps: {exc}") from None
    except OSError:
        return False


def supervisor_kind(proc: psutil.Process) -> str | None:
    """``gunicorn`` or ``uvicorn`` when the command line is one of those servers (master or worker), else None."""
    try:
        args = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    words = " ".join(args[:4]).lower()
    if "gunicorn" in words:
        return "gunicorn"
    if "uvicorn" in words:
        return "uvicorn"
    return None


def workers_of(pid: int) -> list[int]:
    """The worker pids of a gunicorn or uvicorn master (its Python children that are not multiprocessing helpers);
    empty for anything else. Sorted."""
    proc = _process(pid)
    if supervisor_kind(proc) is None:
        return []
    out = []
    try:
        children = proc.children()
    except psutil.NoSuchProcess:
        return []
    for child in children:
        try:
            if any(m in " ".join(child.cmdline()) for m in _HELPER_MARKERS):
                continue
            if is_python(child):
                out.append(child.pid)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, ProcessGone):
            continue
    return sorted(out)


def describe(pid: int) -> ProcessInfo:
    """Who ``pid`` is, and its role. Raises ``ProcessGone``, ``PtraceDenied``, or ``NotPython``."""
    proc = _process(pid)
    try:
        with proc.oneshot():
            if not is_python(proc):
                raise NotPython(pid, proc.exe())
            cmdline = tuple(proc.cmdline())
            exe = proc.exe()
            ppid = proc.ppid()
            create_time = proc.create_time()
            username = proc.username()
    except psutil.NoSuchProcess:
        raise _gone(pid, "while we read it") from None
    except psutil.AccessDenied as exc:
        raise PtraceDenied(pid, f"psutil: {exc}") from None
    role: Role = "process"
    master: int | None = None
    server = supervisor_kind(proc)
    try:
        parent = proc.parent()
    except psutil.NoSuchProcess:
        parent = None
    if parent is not None and supervisor_kind(parent) is not None and pid in workers_of(parent.pid):
        role, master, server = "worker", parent.pid, supervisor_kind(parent)
    elif server is not None and workers_of(pid):
        role = "master"
    return ProcessInfo(pid, ppid, create_time, cmdline, exe, username, role, master, server)


def thread_state(pid: int, tid: int) -> tuple[str, str]:
    """The kernel's view of one thread: its state letter (R running, S sleeping, D disk) and wait channel."""
    base = f"/proc/{pid}/task/{tid}"
    try:
        with open(f"{base}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"{base}/wchan") as f:
            wchan = f.read().strip()
    except (OSError, IndexError):
        return ("?", "")
    return (state, "" if wchan == "0" else wchan)


def thread_schedstat(pid: int, tid: int) -> tuple[float, float] | None:
    """Seconds the thread has spent on a CPU and runnable waiting for one (``/proc/.../schedstat``)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            on_cpu, waiting = f.read().split()[:2]
        return int(on_cpu) / 1e9, int(waiting) / 1e9
    except (OSError, ValueError):
        return None


def _runqueue_wait_s(pid: int, tid: int) -> float | None:
    """Seconds the thread has spent runnable but waiting for a CPU (``/proc/.../schedstat``, second field)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def thread_names(pid: int) -> dict[int, str]:
    """Native thread id to the kernel's thread name (``comm``; Python sets it for named threads on Linux)."""
    out: dict[int, str] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                out[int(tid)] = f.read().strip()
        except (OSError, ValueError):
            continue
    return out


def snapshot(pid: int, create_time: float | None = None, *, connections: bool = True) -> Snapshot:
    """One look at what ``pid`` uses now. ``connections=False`` skips the socket table (the costliest part)."""
    proc = _process(pid, create_time, "while it was being sampled")
    try:
        with proc.oneshot():
            at = time.monotonic()
            cpu = proc.cpu_times()
            threads = {t.id: t.user_time + t.system_time for t in proc.threads()}
            rss = proc.memory_info().rss
            fds = proc.num_fds()
            ctx = proc.num_ctx_switches()
            children = tuple(c.pid for c in proc.children())
        sockets: Counter[str] = Counter()
        clients = 0
        if connections:
            conns = proc.net_connections(kind="tcp")  # listening and client sockets: TCP only
            listening = {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN and c.laddr}
            for c in conns:
                sockets[c.status] += 1
                if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port in listening:
                    clients += 1
        states = {tid: thread_state(pid, tid) for tid in threads}
        waits = {tid: w for tid in threads if (w := _runqueue_wait_s(pid, tid)) is not None}
    except psutil.NoSuchProcess:
        raise _gone(pid, "while it was being sampled") from None
    except psutil.AccessDenied as exc:
        raise PtraceDenied(pid, f"psutil: {exc}") from None
    return Snapshot(
        at=at,
        cpu_s=cpu.user + cpu.system,
        thread_cpu_s=threads,
        rss_bytes=rss,
        num_fds=fds,
        num_threads=len(threads),
        sockets=dict(sockets),
        client_connections=clients,
        ctx_voluntary=ctx.voluntary,
        ctx_involuntary=ctx.involuntary,
        children=children,
        thread_states=states,
        thread_wait_s=waits,
    )


def cpu_percent(first: Snapshot, last: Snapshot) -> float:
    """CPU used between two snapshots, in percent of one core."""
    wall = last.at - first.at
    return 100.0 * (last.cpu_s - first.cpu_s) / wall if wall > 0 else 0.0


def thread_cpu_percent(first: Snapshot, last: Snapshot) -> dict[int, float]:
    """Per native thread, CPU between two snapshots in percent of one core (threads alive at both)."""
    wall = last.at - first.at
    if wall <= 0:
        return {}
    return {
        tid: 100.0 * (last.thread_cpu_s[tid] - t0) / wall
        for tid, t0 in first.thread_cpu_s.items()
        if tid in last.thread_cpu_s
    }


def thread_demand_percent(first: Snapshot, last: Snapshot) -> dict[int, float]:
    """Per thread, the share of the window it was runnable: on a CPU or waiting in the run queue for one.

    On a machine short of CPU a spinning thread may get only 40 % of a core, yet it is runnable all the time;
    this is the figure that tells "wants all the CPU it can get" from "did some work".
    """
    wall = last.at - first.at
    if wall <= 0:
        return {}
    out = {}
    for tid, cpu in thread_cpu_percent(first, last).items():
        w0, w1 = first.thread_wait_s.get(tid), last.thread_wait_s.get(tid)
        wait = 100.0 * (w1 - w0) / wall if w0 is not None and w1 is not None else 0.0
        out[tid] = min(100.0, cpu + max(0.0, wait))
    return out


def require_python(pid: int) -> None:
    """Raise ``ProcessGone``, ``PtraceDenied`` or ``NotPython`` unless ``pid`` is a Python process we may read."""
    proc = _process(pid)
    try:
        if not is_python(proc):
            raise NotPython(pid, proc.exe())
    except psutil.NoSuchProcess:
        raise _gone(pid, "while we read it") from None
