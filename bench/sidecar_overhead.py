"""Sidecar overhead: demo throughput with the watchdog watching 4 workers at default intervals, against without.

Phases alternate, A B A B ... A: A without the watchdog, B with it. Before each B a fresh watchdog starts and
warms up under the same load for ``--warmup`` seconds (unmeasured), and it is stopped after B. Each B is
compared with the mean of the two A phases around it, so drift over the run (another job on the machine, the
server warming up) hits both sides of every ratio; the figure is the median of those ratios with their spread
(min-max). (Pausing one watchdog with SIGSTOP between phases was tried and rejected: its stack looks then bunch
up in the phases it runs, overstating its cost about threefold.) With the defaults each B starts when the look
schedule takes a round of looks (at 0, 10, 30, 70, 150 s, then every 120 s per worker): 4 looks in 8 s, so the
ratio is pessimistic; ``--seconds 120`` covers a whole look period per phase, at about six times the run time.

The watchdog's own CPU (py-spy children included) is measured apart on one watchdog under load: over its first
``--cpu-warmup`` seconds (the look schedule ramping up: looks at 0, 10, 30, 70 and 150 s per worker, each first
look of a kind of window paying for a ``--locals`` series), then in its steady state over ``--cpu-window``
seconds, two whole ``stacks.baseline`` periods (a window of one period or less over- or under-counts looks that
come every 120 s per worker). The goal is on the steady state. Its peak RSS is the kernel's high-water mark
(VmHWM) over every watchdog of the run. ``--rounds 0`` measures only these.

The watchdog runs from this checkout with its bytecode compiled first (``as_installed``), as ``pip install``
leaves the wheel; ``--source`` skips that and measures what a checkout pays where no bytecode is written.

    .venv/bin/python -m bench.sidecar_overhead [--rounds 4] [--seconds 8] [--clients 16] [--workers 4] [--warmup 30]
                                               [--cpu-warmup 160] [--cpu-window 240] [--source]
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import psutil

from bench._load import pct, run_load
from examples.demo.harness import REPO, DemoServer, free_port
from examples.demo.sidecar import Watchdog


def _tree_cpu(p: psutil.Process) -> float:
    """CPU seconds of ``p``, its live children and the children it has reaped (py-spy runs)."""
    total = 0.0
    for q in [p, *p.children(recursive=True)]:
        try:
            t = q.cpu_times()
            total += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
        except psutil.NoSuchProcess:
            continue
    return total


def _own_cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


async def _looks(url: str) -> dict[str, float]:
    """``watchdog_stack_looks_total`` by reason, and the ``--locals`` series (``series``, ``series_cpu_s``), from
    the watchdog's own /metrics."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        text = await resp.text()
    out = {}
    for line in text.splitlines():
        if line.startswith("watchdog_stack_looks_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("watchdog_stack_locals_series_total "):
            out["series"] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("watchdog_stack_locals_cpu_seconds_total "):
            out["series_cpu_s"] = float(line.rsplit(" ", 1)[1])
    return out


def _peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Figures:
    without: list[float] = field(default_factory=list)
    with_wd: list[float] = field(default_factory=list)
    p99: dict[str, list[float]] = field(default_factory=lambda: {"without": [], "with": []})
    wd_cpu_seconds: float = 0.0
    wd_wall_seconds: float = 0.0
    peak_rss: list[int] = field(default_factory=list)
    looks: dict[str, float] = field(default_factory=dict)  # stack looks in the CPU window, by why
    own_cpu_seconds: float = 0.0  # the watchdog alone, py-spy children not counted
    ramp_share: float = 0.0  # % of a core over the first --cpu-warmup seconds, py-spy included

    def ratios(self) -> list[float]:
        return [b / ((a0 + a1) / 2) for b, a0, a1 in zip(self.with_wd, self.without, self.without[1:], strict=False)]


def as_installed(source: bool = False) -> str:
    """Compile the watchdog package's bytecode, as ``pip install`` does for the wheel (unless ``source``), and say
    which way it runs. Where ``PYTHONDONTWRITEBYTECODE`` is set (CI images set it) a checkout compiles every module
    from source at each start: that cost 1.2 MB more RSS (4.56 against 5.74 MB for the watchdog's imports) and
    start-up CPU, which no installed watchdog pays."""
    package = REPO / "watchdog"
    if source:
        return "from source (no bytecode compiled)"
    if not compileall.compile_dir(package, quiet=1):
        raise SystemExit(f"could not compile {package}")
    return "bytecode compiled, as pip installs it"


def watchdog_config(demo: DemoServer) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "targets": [{"name": "demo", "match": {"pid": demo.master_pid}, "workers": "children",
                     "metrics_url": demo.metrics_url}],
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "log": {"format": "json", "level": "warning"},
    }  # fmt: skip
    probe = REPO / "probes" / "demo-echo.yaml"
    if probe.exists():
        cfg["targets"][0]["probes"] = [str(probe)]
        cfg["targets"][0]["probe_url"] = demo.mcp_url
    return cfg


async def main(
    rounds: int, seconds: float, clients: int, workers: int, warmup: float, cpu_warmup: float, cpu_window: float
) -> None:
    fig = Figures()
    with DemoServer(workers=workers) as demo:

        async def phase(key: str) -> None:
            res = await run_load(demo.mcp_url, clients=clients, seconds=seconds)
            (fig.with_wd if key == "with" else fig.without).append(res.rate)
            fig.p99[key].append(pct(res.latencies, 0.99))

        await run_load(demo.mcp_url, clients=clients, seconds=min(5.0, seconds))  # the server warms up
        if rounds:
            await phase("without")
        for _ in range(rounds):
            wd = Watchdog(watchdog_config(demo))
            await wd.start()
            try:
                assert wd.proc is not None
                await run_load(demo.mcp_url, clients=clients, seconds=warmup)  # into its steady state
                await phase("with")
                fig.peak_rss.append(_peak_rss(wd.proc.pid))
            finally:
                wd.stop()
            await phase("without")
        wd = Watchdog(watchdog_config(demo))
        await wd.start()
        try:
            assert wd.proc is not None
            proc = psutil.Process(wd.proc.pid)
            ramp0, tr = _tree_cpu(proc), time.monotonic()
            await run_load(demo.mcp_url, clients=clients, seconds=cpu_warmup)
            fig.ramp_share = 100 * (_tree_cpu(proc) - ramp0) / (time.monotonic() - tr)
            looks0 = await _looks(wd.url)
            own0, cpu0, t0 = _own_cpu(proc), _tree_cpu(proc), time.monotonic()
            await run_load(demo.mcp_url, clients=clients, seconds=cpu_window)
            fig.wd_cpu_seconds = _tree_cpu(proc) - cpu0
            fig.own_cpu_seconds = _own_cpu(proc) - own0
            fig.looks = {k: v - looks0.get(k, 0.0) for k, v in (await _looks(wd.url)).items()}
            fig.wd_wall_seconds = time.monotonic() - t0
            fig.peak_rss.append(_peak_rss(proc.pid))
        finally:
            wd.stop()
    report(fig, rounds, seconds, clients, workers, warmup, cpu_warmup)


def throughput(fig: Figures, ratios: list[float]) -> None:
    wo, w = statistics.median(fig.without), statistics.median(fig.with_wd)
    spread = f"{min(ratios):.3f}-{max(ratios):.3f}"
    print(f"{'throughput (calls/s, median)':30} {wo:10.0f} {w:10.0f} {statistics.median(ratios):7.3f}  "
          f"{spread:>13}  >= 0.97 (ratio: median of B / mean of the As beside it)")  # fmt: skip
    pw, pwo = statistics.median(fig.p99["with"]) * 1000, statistics.median(fig.p99["without"]) * 1000
    print(f"{'echo p99 (ms, median)':30} {pwo:10.1f} {pw:10.1f} {pw / pwo:7.3f}")


def report(
    fig: Figures, rounds: int, seconds: float, clients: int, workers: int, warmup: float, cpu_warmup: float
) -> None:
    ratios = fig.ratios()
    cpu_share = 100 * fig.wd_cpu_seconds / fig.wd_wall_seconds
    print(f"\nSidecar overhead: demo server with {workers} workers, {clients} clients calling echo; phases of "
          f"{seconds:g} s alternating without/with the watchdog ({rounds} with, {rounds + 1} without), each "
          f"watchdog at its default intervals, started fresh and warmed up {warmup:g} s under load before its "
          f"phase\n")  # fmt: skip
    print(f"{'':30} {'without':>10} {'with':>10} {'ratio':>7}  {'spread':>13}  goal")
    if rounds:  # --rounds 0: the CPU and RSS figures only
        throughput(fig, ratios)
    print(f"{'watchdog CPU (% of a core)':30} {'':10} {cpu_share:10.2f} {'':7}  {'':13}  <= 1   (py-spy included; "
          f"steady state: {fig.wd_wall_seconds:.0f} s under load after {cpu_warmup:g} s)")  # fmt: skip
    own = 100 * fig.own_cpu_seconds / fig.wd_wall_seconds
    series, series_cpu = fig.looks.pop("series", 0.0), fig.looks.pop("series_cpu_s", 0.0)
    looks = ", ".join(f"{k} {v:g}" for k, v in sorted(fig.looks.items()) if v) or "none"
    looks += f"; --locals series {series:g} ({series_cpu:.2f} s of py-spy CPU)"
    print(f"{'  of which the watchdog itself':30} {'':10} {own:10.2f} {'':7}  {'':13}        (py-spy: the rest; "
          f"stack looks in the window: {looks})")  # fmt: skip
    print(f"{'  its first minutes':30} {'':10} {fig.ramp_share:10.2f} {'':7}  {'':13}        (the first "
          f"{cpu_warmup:g} s under load: the look schedule ramping up)")  # fmt: skip
    print(f"{'watchdog peak RSS (MB)':30} {'':10} {max(fig.peak_rss) / 1e6:10.1f} {'':7}  {'':13}  <= 50")
    if rounds:
        print(f"\nper phase, calls/s without: {[round(x) for x in fig.without]}, "
              f"with: {[round(x) for x in fig.with_wd]}; ratios {[round(r, 3) for r in ratios]}")  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--warmup", type=float, default=30.0)
    p.add_argument("--cpu-warmup", type=float, default=160.0)
    p.add_argument("--cpu-window", type=float, default=240.0)
    p.add_argument("--source", action="store_true", help="run the watchdog without compiled bytecode")
    a = p.parse_args()
    print(f"watchdog: {as_installed(a.source)}")
    anyio.run(main, a.rounds, a.seconds, a.clients, a.workers, a.warmup, a.cpu_warmup, a.cpu_window)
