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
from prometheus_client.parser import text_string_to_metric_families

from watchdog.discovery import WorkerId
from watchdog.signals.catalog import SignalRef
from watchdog.signals.series import Point, SignalStore, slope


@dataclass(frozen=True)
class ProcessReading:
    t: float
    cpu_seconds: float
    rss: int
    fds: int
    sockets: int
    threads: int


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
        fds, sockets = fd_counts(worker.pid)
        return ProcessReading(
            t=t, cpu_seconds=cpu.user + cpu.system, rss=rss, fds=fds, sockets=sockets, threads=threads
        )
    except (psutil.NoSuchProcess, psutil.ZombieProcess, FileNotFoundError, ProcessLookupError):
        return None


def cgroup_memory_limit(pid: int) -> int | None:
    """The memory limit of ``pid``'s cgroup (v2 ``memory.max`` or v1 ``memory.limit_in_bytes``), if any."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        hid, controllers, path = line.split(":", 2)
        if hid == "0" and controllers == "":
            candidates += [f"/sys/fs/cgroup{path}/memory.max", f"/sys/fs/cgroup/unified{path}/memory.max"]
        elif "memory" in controllers.split(","):
            candidates.append(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
    for c in candidates:
        try:
            with open(c) as f:
                raw = f.read().strip()
        except OSError:
            continue
        if raw == "max":
            return None
        if raw.isdigit() and int(raw) < 1 << 60:  # v1 reports "no limit" as a huge number
            return int(raw)
    return None


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
    out: dict[str, float | None] = {
        "rss_bytes": float(now.rss),
        "open_fds": float(now.fds),
        "sockets": float(now.sockets),
        "threads": float(now.threads),
        "cpu_percent": None,
        "memory_limit_bytes": float(memory_limit) if memory_limit else None,
    }
    if previous is not None and now.t > previous.t:
        out["cpu_percent"] = max(0.0, 100.0 * (now.cpu_seconds - previous.cpu_seconds) / (now.t - previous.t))
    rss_series = store.series("rss_bytes")
    rss_points = rss_series.since(now.t - memory_window) if rss_series else []
    growth = slope([*rss_points, Point(now.t, float(now.rss))])
    out["rss_growth_bytes_per_second"] = growth
    fd_series = store.series("open_fds")
    fd_points = fd_series.since(now.t - fd_window) if fd_series else []
    out["fd_growth_per_second"] = slope([*fd_points, Point(now.t, float(now.fds))])
    if memory_limit:
        out["memory_used_ratio"] = now.rss / memory_limit
        if growth is not None:
            out["seconds_to_memory_limit"] = (memory_limit - now.rss) / growth if growth > 0 else math.inf
    return out


@dataclass
class Scrape:
    """One scrape of a target's /metrics: per (sample name, labels) value; or the error that prevented it."""

    samples: list[tuple[str, dict[str, str], float]]
    error: str | None = None

    def value(self, ref: SignalRef, pid: int) -> float | None:
        """Max over samples named ``ref.metric`` matching its labels and belonging to ``pid`` (or to no pid)."""
        best: float | None = None
        want = dict(ref.labels)
        for name, labels, value in self.samples:
            if name != ref.metric or any(labels.get(k) != v for k, v in want.items()):
                continue
            owner = labels.get("pid")
            if owner is not None and owner != str(pid):
                continue
            best = value if best is None else max(best, value)
        return best


async def scrape(http: aiohttp.ClientSession, url: str, timeout: float) -> Scrape:
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            if r.status != 200:
                return Scrape([], f"HTTP {r.status} from {url}")
            text = await r.text()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Scrape([], f"cannot scrape {url}: {exc or type(exc).__name__}")
    try:
        samples = [
            (s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
    except ValueError as exc:
        return Scrape([], f"malformed metrics from {url}: {exc}")
    return Scrape(samples)
