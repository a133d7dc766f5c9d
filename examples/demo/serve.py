"""The demo launcher: the slow downstream in this process, the MCP server under gunicorn as a child.

It waits until every worker serves, prints one ``ready`` line (JSON with the URLs and pids, for tests and
scripts), and runs until SIGINT or SIGTERM. On the way out it stops gunicorn and then makes sure, by pid, that no
worker outlives it: a spinning worker ignores SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from examples.demo import downstream
from examples.demo.inject import scrape_gauge

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    downstream_port: int = 8001
    workers: int = 2
    latency: float = 0.05
    limit: int = 4
    stateful: bool = False
    pidfile: str | None = None
    json_ready: bool = False
    watch: bool = False
    python: str = sys.executable


def _stop_tree(master: psutil.Process | None, known: list[psutil.Process], grace: float) -> None:
    """SIGTERM the master, wait ``grace``, then SIGKILL every process we know of that is still the same process."""
    if master is not None:
        known = [*known, *_children(master)]
        try:
            master.terminate()
            master.wait(grace)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            pass
    for p in {p.pid: p for p in known}.values():
        try:
            if p.is_running():  # psutil compares create time too: a reused pid is not ours
                p.kill()
        except psutil.NoSuchProcess:
            pass


def _children(p: psutil.Process) -> list[psutil.Process]:
    try:
        return p.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


async def _wait_ready(opts: ServeOptions, master: psutil.Process, proc: asyncio.subprocess.Process) -> list[int]:
    """Until /metrics shows every worker (children of the master) up; returns their pids."""
    url = f"http://{opts.host}:{opts.port}/metrics"
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"gunicorn exited with code {proc.returncode} during start-up")
            try:
                async with s.get(url) as r:
                    up = scrape_gauge(await r.text(), "demo_worker_up")
            except (aiohttp.ClientError, asyncio.TimeoutError):
                up = {}
            children = {c.pid for c in _children(master)}
            ready = sorted(p for p, v in up.items() if v == 1 and p in children)
            if len(ready) >= opts.workers:
                return ready
            await asyncio.sleep(0.2)
    raise RuntimeError("the demo server's workers did not come up within 60 s")


def _table(master: psutil.Process) -> str:
    rows = []
    for w in _children(master):
        try:
            with w.oneshot():
                rows.append(
                    f"  worker {w.pid:>7}  cpu {w.cpu_percent(None):5.1f} %  "
                    f"rss {w.memory_info().rss / 2**20:7.1f} MiB  fds {w.num_fds():4d}"
                )
        except psutil.NoSuchProcess:
            continue
    return "\n".join(rows)


async def serve(opts: ServeOptions) -> int:
    runner = await downstream.start(opts.host, opts.downstream_port, opts.latency)
    metrics_dir = tempfile.mkdtemp(prefix="demo-metrics-")
    pidfile = opts.pidfile or os.path.join(metrics_dir, "gunicorn.pid")
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        "DEMO_DOWNSTREAM_URL": f"http://{opts.host}:{opts.downstream_port}",
        "DEMO_DOWNSTREAM_LIMIT": str(opts.limit),
        "DEMO_STATEFUL": "1" if opts.stateful else "0",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    proc = await asyncio.create_subprocess_exec(
        opts.python,
        "-m",
        "gunicorn",
        "-c",
        str(REPO / "examples/demo/gunicorn_conf.py"),
        "-b",
        f"{opts.host}:{opts.port}",
        "-w",
        str(opts.workers),
        "--pid",
        pidfile,
        "examples.demo.app:app",
        cwd=str(REPO),
        env=env,
    )
    master = psutil.Process(proc.pid)
    known: list[psutil.Process] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        workers = await _wait_ready(opts, master, proc)
        known = _children(master)
        base = f"http://{opts.host}:{opts.port}"
        info = {
            "event": "ready",
            "url": base,
            "mcp_url": f"{base}/mcp",
            "sse_url": f"{base}/sse",
            "metrics_url": f"{base}/metrics",
            "health_url": f"{base}/health",
            "ready_url": f"{base}/ready",
            "downstream_url": f"http://{opts.host}:{opts.downstream_port}",
            "launcher_pid": os.getpid(),
            "master_pid": proc.pid,
            "worker_pids": workers,
            "pidfile": pidfile,
        }
        if opts.json_ready:
            print(json.dumps(info), flush=True)
        else:
            _banner(info)
        waiter = asyncio.ensure_future(proc.wait())
        stopper = asyncio.ensure_future(stop.wait())
        while not stop.is_set() and proc.returncode is None:
            await asyncio.wait({waiter, stopper}, timeout=2.0, return_when=asyncio.FIRST_COMPLETED)
            known = [*known, *_children(master)]
            if opts.watch and not stop.is_set():
                print(_table(master), flush=True)
        for t in (waiter, stopper):
            t.cancel()
        return 0 if stop.is_set() else 1
    finally:
        await asyncio.get_running_loop().run_in_executor(None, _stop_tree, master, known, 10.0)
        await runner.cleanup()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _banner(info: dict[str, object]) -> None:
    py = os.path.relpath(sys.executable)
    url = info["mcp_url"]
    print(
        f"""
demo MCP server ready: {url}   (gunicorn master {info["master_pid"]}, workers {info["worker_pids"]})
  metrics {info["metrics_url"]}   shallow health {info["health_url"]}   readiness {info["ready_url"]}
  downstream {info["downstream_url"]}

Inject a fault from another terminal (each prints the worker pid that took it):
  {py} -m examples.demo inject spin      --url {url}   # anyio _deliver_cancellation spin
  {py} -m examples.demo inject crunch    --url {url}   # busy but healthy (the control)
  {py} -m examples.demo inject leak      --url {url}   # memory ramp
  {py} -m examples.demo inject saturate  --url {url}   # downstream limiter pinned at its limit
  {py} -m examples.demo inject block     --url {url}   # event loop blocked
  {py} -m examples.demo inject churn     --url {url}   # unclosed HTTP clients, fds grow
Watch the workers below (cpu, rss, fds every 2 s). Ctrl-C stops everything.
""",
        flush=True,
    )
