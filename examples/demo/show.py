"""``make demo``: the demo server and the watchdog with its default rules, a real fault, and what happens next.

It starts the demo MCP server (gunicorn, 2 uvicorn workers) and ``watchdog run`` beside it, injects the fault
into one worker through a real MCP call, and narrates from the watchdog's own event log: detection with its
evidence, the graceful recycle step by step, the replacement passing its probe. Then it stops everything and
exits (about a minute at most), unless ``--keep`` asks it to stay up for exploring (``/v1/status``, ``/metrics``).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import psutil

from examples.demo import browser, inject
from examples.demo.harness import REPO, DemoServer, free_port
from examples.demo.sidecar import Watchdog, Webhooks

FLAMES = REPO / ".artifacts" / "demo-flamegraphs"
"""Where the demo's watchdog keeps its flame graphs (git-ignored; they outlive the demo, to be opened after)."""
BOLD, DIM, RED, GREEN, YELLOW, RESET = "\033[1m", "\033[2m", "\033[31m", "\033[32m", "\033[33m", "\033[0m"


class Narrator:
    def __init__(self, color: bool) -> None:
        self.color = color
        self.t0 = time.monotonic()

    def say(self, who: str, text: str, tone: str = "") -> None:
        stamp = f"{time.monotonic() - self.t0:5.1f}s"
        if self.color:
            tag = {"demo": f"{BOLD}demo{RESET}", "watchdog": f"{BOLD}{YELLOW}watchdog{RESET}"}.get(who, who)
            print(f"{DIM}{stamp}{RESET} {tag:>8}  {tone}{text}{RESET if tone else ''}", flush=True)
        else:
            print(f"{stamp} {who:>8}  {text}", flush=True)


def _port_or_free(port: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def _describe_event(ev: dict[str, Any]) -> tuple[str, str] | None:
    """A line (and tone) for the events an operator cares about; None for the rest."""
    kind = ev.get("kind")
    if kind in ("rule_firing", "recycle_started", "budget_denied", "stacks_unavailable", "target_problem"):
        return ev["message"], RED if kind in ("rule_firing", "budget_denied") else YELLOW
    if kind == "recycle":
        rec = ev.get("evidence", {}).get("recycle", {})
        steps = ", ".join(f"{s['step']} at {s['at']:.1f} s" for s in rec.get("steps", []))
        return f"{ev['message']} [{steps}]", GREEN if rec.get("outcome") == "recycled" else RED
    if kind == "rule_resolved":
        return ev["message"], GREEN
    return None


async def _follow_log(wd: Watchdog, narrator: Narrator, seen: set[int]) -> None:
    """Print the watchdog's notable events as they are logged."""
    while True:
        for ev in wd.events():
            if ev.get("id") in seen or "kind" not in ev:
                continue
            seen.add(ev["id"])
            line = _describe_event(ev)
            if line is not None:
                narrator.say("watchdog", *line)
        await anyio.sleep(0.2)


async def show(fault: str, keep: bool, color: bool, screenshots: Path | None = None) -> int:
    n = Narrator(color)
    n.say("demo", "starting the demo MCP server: gunicorn with 2 uvicorn workers, on 127.0.0.1")
    with DemoServer(workers=2, port=_port_or_free(8000)) as demo:
        n.say("demo", f"up at {demo.mcp_url}; workers {demo.worker_pids()}")
        async with Webhooks().serve() as hooks:
            cfg: dict[str, Any] = {
                "targets": [
                    {
                        "name": "demo",
                        "match": {"pid": demo.master_pid},
                        "workers": "children",
                        "metrics_url": demo.metrics_url,
                        "memory_limit": "400Mi",
                        "recycle": {"grace": "5s", "replacement_timeout": "30s"},
                    }
                ],
                "server": {"listen": f"127.0.0.1:{_port_or_free(9464)}"},
                "notify": {"webhooks": [{"url": hooks.url, "retries": 1}]},
                "log": {"format": "json"},
                "flamegraphs": {"dir": str(FLAMES), "keep": 20},
            }
            probe = REPO / "probes" / "demo-echo.yaml"
            if probe.exists():
                cfg["targets"][0]["probes"] = [str(probe)]
                cfg["targets"][0]["probe_url"] = demo.mcp_url
            wd = Watchdog(cfg)
            n.say(
                "demo",
                f"starting the watchdog with the default rules ({Path('rules/default.yaml')}) on http://{wd.listen}",
            )
            await wd.start()
            n.say("demo", f"the watchdog's status page: http://{wd.listen}/ (in a terminal: watchdog status "
                          f"--url http://{wd.listen})")  # fmt: skip
            try:
                seen: set[int] = set()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_follow_log, wd, n, seen)
                    await anyio.sleep(2.5)  # let the watchdog take its first readings, for the story's sake
                    onset, onset_wall = time.monotonic(), time.time()
                    pid = await _inject(fault, demo, n)
                    if screenshots is not None:
                        tg.start_soon(_shoot_page_when_firing, wd, pid, screenshots, n)
                    await _show_shallow_health(demo, pid, n)
                    note = await hooks.wait_for(
                        lambda x: x.get("worker") == pid and "recycle" in x["evidence"], within=90
                    )
                    rec = note["evidence"]["recycle"]
                    await anyio.sleep(0.5)  # let the log follower print the recycle line
                    took = time.monotonic() - onset
                    firing = next(e for e in wd.events() if e.get("kind") == "rule_firing" and e.get("worker") == pid)
                    detected = firing["time"] - onset_wall
                    if rec.get("outcome") == "recycled":
                        n.say(
                            "demo",
                            f"done: {note['rule']} detected {detected:.1f} s after the fault began; "
                            f"replacement worker {rec['replacement']} healthy {took:.1f} s after it. "
                            f"Workers now {demo.worker_pids()}.",
                            GREEN,
                        )
                    else:
                        n.say("demo", f"the recycle ended as {rec.get('outcome')}: {json.dumps(rec)}", RED)
                    flame = (note["evidence"].get("diagnosis") or {}).get("flamegraph")
                    if isinstance(flame, str):
                        path = FLAMES / flame.rsplit("/", 1)[-1]
                        n.say("demo", f"flame graph of worker {pid}, kept as the evidence: {path} "
                                      f"(served at http://{wd.listen}{flame})")  # fmt: skip
                        if screenshots is not None:
                            await _shoot(f"http://{wd.listen}{flame}", screenshots / "flamegraph-spin-worker.png", n)
                    if keep:
                        n.say(
                            "demo",
                            f"--keep: watchdog status at http://{wd.listen}/v1/status, metrics at "
                            f"http://{wd.listen}/metrics; inject more faults with "
                            f"'python -m examples.demo inject ... --url {demo.mcp_url}'. Ctrl-C stops.",
                        )
                        await anyio.sleep_forever()
                    tg.cancel_scope.cancel()
            finally:
                wd.stop()
    n.say("demo", "stopped the watchdog and the demo server")
    return 0


async def _shoot_page_when_firing(wd: Watchdog, pid: int, into: Path, n: Narrator) -> None:
    """A screenshot of the status page once a rule fires on the faulty worker (while it still spins)."""
    with anyio.move_on_after(90):
        while not any(e.get("kind") == "rule_firing" and e.get("worker") == pid for e in wd.events()):  # noqa: ASYNC110
            await anyio.sleep(0.2)  # the watchdog's log is a file: polled, bounded above
        await _shoot(f"http://{wd.listen}/", into / "status-page-spin.png", n, size=(1100, 900))


async def _shoot(url: str, path: Path, n: Narrator, size: tuple[int, int] = (1100, 760)) -> None:
    out = await anyio.to_thread.run_sync(lambda: browser.screenshot(url, path, size=size))
    if out.returncode == 0 and await anyio.Path(path).exists():
        n.say("demo", f"screenshot of {url}: {path}")
    else:
        n.say("demo", f"no screenshot of {url}: {out.stderr.strip()[-300:]}", RED)


async def _inject(fault: str, demo: DemoServer, n: Narrator) -> int:
    if fault == "spin":
        n.say("demo", "injecting the spin: a client calls the `stubborn` tool and walks away (anyio #695)")
        pid = await inject.spin(demo.mcp_url)
    elif fault == "leak":
        n.say("demo", "injecting a memory leak: fire-and-forget tasks hold 10 MiB more every second (seed 000)")
        pid = await inject.leak(demo.mcp_url, 10.0, 60.0)
    else:
        n.say("demo", "blocking one worker's event loop with a synchronous sleep")
        pid = await inject.block(demo.mcp_url, 60.0)
    n.say("demo", f"worker {pid} took it")
    return pid


async def _show_shallow_health(demo: DemoServer, pid: int, n: Narrator) -> None:
    worker = psutil.Process(pid)
    worker.cpu_percent(None)
    await anyio.sleep(1.0)
    cpu = worker.cpu_percent(None)
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{demo.url}/health", timeout=aiohttp.ClientTimeout(3)) as r:
            health = f"/health says {r.status} {'OK' if r.status == 200 else ''}"
    except (aiohttp.ClientError, TimeoutError):
        health = "/health does not answer"
    n.say("demo", f"worker {pid}: CPU {cpu:.0f} %; {health} (what a shallow health check sees)")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.demo.show", description=__doc__)
    p.add_argument("--fault", choices=("spin", "leak", "block"), default="spin")
    p.add_argument("--keep", action="store_true", help="keep everything running after the show")
    p.add_argument("--screenshots", type=Path, metavar="DIR",
                   help="screenshots of the status page during the fault and of a flame graph (Chromium)")  # fmt: skip
    args = p.parse_args(argv)
    if args.screenshots is not None:
        if browser.find_chromium() is None:
            p.error("--screenshots needs Chromium (Debian package `chromium`)")
        args.screenshots.mkdir(parents=True, exist_ok=True)
    try:
        return anyio.run(show, args.fault, args.keep, sys.stdout.isatty(), args.screenshots)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
