"""Signal sources the agent samples: process facts (psutil) and scraped Prometheus metrics.

Each source turns raw readings into named signals (``watchdog.signals.catalog``) and records them in a
worker's ``SignalStore``. psutil calls are synchronous and run in a worker thread; scrapes are async with a
timeout. A worker that vanishes mid-reading yields nothing, not an error; an endpoint that is down is a
visible state, not a healthy zero.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import aiohttp
import psutil

from watchdog.discovery import WorkerId
from watchdog.errors import MetricsUnavailable
from watchdog.guard import _metrics as guard_metrics  # the guard's metric names, declared once there
from watchdog.signals import metrics as prom
from watchdog.signals.catalog import SignalRef
from watchdog.signals.cgroup import read_cgroup_memory
from watchdog.signals.metrics import MetricSample
from watchdog.signals.process import thread_schedstat, thread_state
from watchdog.signals.series import Point, SignalStore, slope


@dataclass(frozen=True)
class ProcessReading:
    t: float
    cpu_seconds: float
    rss: int
    fds: int
    sockets: int
    threads: int
    loop_outside_selector: bool | None = None
    loop_runnable_seconds: float | None = None  # the loop thread's time on a CPU plus time waiting for one
    denied: str | None = None  # what could not be read for lack of permission


_SELECTOR_WAITS = ("epoll", "select", "poll", "sys_poll")


def loop_outside_selector(pid: int) -> bool | None:
    """Is the main thread asleep in the kernel outside its selector? None when it cannot be read.

    An idle event loop sleeps in epoll_wait (wchan ``do_epoll_wait``); a running one is ``R``; a loop stuck in a
    blocking call sleeps elsewhere (``hrtimer_nanosleep`` for time.sleep, ``sk_wait_data`` for a socket read).
    """
    state, wchan = thread_state(pid, pid)
    if state == "?":
        return None
    if state not in ("S", "D") or not wchan:
        return False
    return not any(w in wchan for w in _SELECTOR_WAITS)


def fd_counts(pid: int) -> tuple[int, int]:
    """Open fds and how many of them are sockets, from one pass over /proc/PID/fd.

    ``psutil.Process.net_connections`` would parse the whole system's socket tables for every worker on every
    tick; profiling showed it was 90 % of the watchdog's own CPU. A socket count needs only the fd links.
    """
    fds = sockets = 0
    with os.scandir(f"/proc/{pid}/fd") as it:
        for entry in it:
            fds += 1
            try:
                if os.readlink(entry.path).startswith("socket:"):
                    sockets += 1
            except OSError:  # the fd closed between listing and reading
                continue
    return fds, sockets


def read_process(worker: WorkerId, t: float) -> ProcessReading | None:
    """One psutil reading of ``worker``, or None if it is gone or is no longer the same process."""
    try:
        p = psutil.Process(worker.pid)
        if not worker.matches(p):
            return None
        with p.oneshot():
            cpu = p.cpu_times()
            rss = p.memory_info().rss
            threads = p.num_threads()
        denied = None
        try:
            fds, sockets = fd_counts(worker.pid)
        except PermissionError:
            # CPU and memory are world-readable in /proc; a process's fds are not. Missing, not zero.
            fds = sockets = -1
            denied = (
                f"permission denied reading /proc/{worker.pid}/fd: run the watchdog as the server's user or as "
                "root (CAP_SYS_PTRACE; in Kubernetes, shareProcessNamespace and the SYS_PTRACE capability)"
            )
        return ProcessReading(
            t=t, cpu_seconds=cpu.user + cpu.system, rss=rss, fds=fds, sockets=sockets, threads=threads,
            loop_outside_selector=loop_outside_selector(worker.pid), denied=denied,
            loop_runnable_seconds=None if (sched := thread_schedstat(worker.pid, worker.pid)) is None else sum(sched),
        )  # fmt: skip
    except (psutil.NoSuchProcess, psutil.ZombieProcess, FileNotFoundError, ProcessLookupError):
        return None
    except (psutil.AccessDenied, PermissionError):
        return ProcessReading(t=t, cpu_seconds=math.nan, rss=-1, fds=-1, sockets=-1, threads=-1,
                              denied=f"permission denied reading process {worker.pid}: run the watchdog as the "
                              "server's user or as root")  # fmt: skip


def cgroup_memory_limit(pid: int) -> int | None:
    """The memory limit of ``pid``'s own cgroup (v2 or v1), if it has one."""
    mem = read_cgroup_memory(pid)
    return mem.limit_bytes if mem is not None else None


def process_signals(
    store: SignalStore,
    previous: ProcessReading | None,
    now: ProcessReading,
    *,
    memory_limit: int | None,
    memory_window: float,
    fd_window: float,
) -> dict[str, float | None]:
    """Signals from two consecutive readings plus the store's history (the new reading not yet recorded)."""

    def known(v: int) -> float | None:
        return None if v < 0 else float(v)

    out: dict[str, float | None] = {
        "rss_bytes": known(now.rss),
        "open_fds": known(now.fds),
        "sockets": known(now.sockets),
        "threads": known(now.threads),
        "loop_wait_outside_selector": None if now.loop_outside_selector is None else float(now.loop_outside_selector),
        "cpu_percent": None,
        "memory_limit_bytes": float(memory_limit) if memory_limit else None,
    }
    out["loop_runnable_percent"] = None
    if previous is not None and now.t > previous.t and math.isfinite(now.cpu_seconds - previous.cpu_seconds):
        out["cpu_percent"] = max(0.0, 100.0 * (now.cpu_seconds - previous.cpu_seconds) / (now.t - previous.t))
        if now.loop_runnable_seconds is not None and previous.loop_runnable_seconds is not None:
            runnable = now.loop_runnable_seconds - previous.loop_runnable_seconds
            out["loop_runnable_percent"] = min(100.0, max(0.0, 100.0 * runnable / (now.t - previous.t)))
    if now.fds >= 0:
        fd_series = store.series("open_fds")
        fd_points = fd_series.since(now.t - fd_window) if fd_series else []
        out["fd_growth_per_second"] = slope([*fd_points, Point(now.t, float(now.fds))])
    if now.rss < 0:
        return out
    rss_series = store.series("rss_bytes")
    rss_points = rss_series.since(now.t - memory_window) if rss_series else []
    growth = slope([*rss_points, Point(now.t, float(now.rss))])
    out["rss_growth_bytes_per_second"] = growth
    if memory_limit:
        out["memory_used_ratio"] = now.rss / memory_limit
        if growth is not None:
            out["seconds_to_memory_limit"] = (memory_limit - now.rss) / growth if growth > 0 else math.inf
    return out


def http_session() -> aiohttp.ClientSession:
    """The agent's one HTTP session (scrapes, probes, webhooks, Alertmanager). A connection idle for more than
    1 s is not reused: servers close idle ones (gunicorn after 2 s, uvicorn 5 s), and one closed just as a probe
    went out on it failed a healthy FastMCP peer under load ("closed without a complete response")."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(keepalive_timeout=1.0))


@dataclass
class Scrape:
    """One scrape of a target's /metrics: its samples, or the error that prevented it."""

    samples: list[MetricSample]
    error: str | None = None

    def value(self, ref: SignalRef, pid: int) -> float | None:
        """Max over samples named ``ref.metric`` matching its labels and belonging to ``pid`` (or to no pid)."""
        best: float | None = None
        want = dict(ref.labels)
        for s in self.samples:
            if s.name != ref.metric or any(s.labels.get(k) != v for k, v in want.items()):
                continue
            owner = s.labels.get("pid")
            if owner is not None and owner != str(pid):
                continue
            best = s.value if best is None else max(best, s.value)
        return best

    def guard_saturation(self, pid: int) -> float | None:
        """The fullest guard limiter of ``pid``: max over limiter names of in_flight / limit (None if it has none)."""
        in_flight: dict[str, float] = {}
        limit: dict[str, float] = {}
        for s in self.samples:
            if s.labels.get("pid") != str(pid):
                continue
            if s.name == guard_metrics.LIMITER_IN_FLIGHT.name:
                in_flight[s.labels.get("name", "")] = s.value
            elif s.name == guard_metrics.LIMITER_LIMIT.name:
                limit[s.labels.get("name", "")] = s.value
        ratios = [in_flight.get(n, 0.0) / v for n, v in limit.items() if v > 0]
        return max(ratios) if ratios else None

    def in_flight(self, pid: int) -> dict[str, float]:
        """The in-flight gauges carrying ``pid`` (for the stack verdict's "no requests in flight")."""
        return prom.by_pid(self.samples, prom.IN_FLIGHT).get(pid, {})


async def scrape(
    http: aiohttp.ClientSession, url: str, timeout: float, max_bytes: int = prom.DEFAULT_MAX_BYTES
) -> Scrape:
    try:
        return Scrape(await prom.scrape(url, timeout=timeout, session=http, max_bytes=max_bytes))
    except MetricsUnavailable as exc:
        return Scrape([], f"cannot scrape {url}: {exc.reason}")
