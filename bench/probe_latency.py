"""How fast is a full deep probe, next to the same MCP sequence through the official SDK client?

Run:  .venv/bin/python bench/probe_latency.py [--rounds 1000] [--sequential 1000] [--servers demo,everything,fastmcp]

One run starts the demo server twice on 127.0.0.1 (stateless with 2 workers, as `make demo` runs it; and
stateful with 1 worker, so the handshake sequence ends with a real DELETE) and measures, interleaved round by
round so both sides see the same machine:

- ours: ``run_probe`` (aiohttp), from the first request to the session end;
- the SDK: ``mcp.Client`` (httpx2) doing the same requests: ``async with Client(...)`` negotiates and, on
  exit, ends the session; ``call_tool`` lists the tools too (it validates the result against the tool's
  output schema), so our probe runs with ``list_tools: true`` to send the same requests.

Each side is measured twice: reusing one HTTP client across probes (how the sidecar runs) and with a fresh
client per probe (how `Client(url)` is usually written). The ratio is ours / SDK in the same mode; the goal is
at most 1.0. Then 1,000 sequential probes on one shared session: this process's open fds and RSS must stay
flat (first and last printed).

``--servers`` adds servers nobody here wrote (``make npm-tools`` and the [test] extra install them): the
TypeScript reference server (``@modelcontextprotocol/server-everything``, stateful, 2025-11-25 handshake, its
``echo`` tool) and FastMCP 4.x (stateless at 2026-07-28, and stateful with the handshake), same measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import httpx2  # noqa: E402
import psutil  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from examples.demo.harness import DemoServer  # noqa: E402
from watchdog.probes import ProbeSpec, load_probe, run_probe  # noqa: E402

Probe = Callable[[], Awaitable[None]]


def p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.99 * len(s)))]


def ours(spec: ProbeSpec, url: str, session: aiohttp.ClientSession | None) -> Probe:
    async def probe() -> None:
        r = await run_probe(spec, url=url, session=session)
        if not r.ok:
            raise RuntimeError(f"our probe failed: {r.reason}")

    return probe


def sdk(url: str, mode: str, http: httpx2.AsyncClient | None, arguments: dict[str, Any]) -> Probe:
    async def probe() -> None:
        transport = streamable_http_client(url, http_client=http) if http is not None else url
        async with Client(transport, mode=mode) as client:
            res = await client.call_tool("echo", arguments)
            if res.is_error:
                raise RuntimeError("SDK call failed")

    return probe


async def measure(pairs: dict[str, Probe], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in pairs}
    for probe in pairs.values():  # warm-up: connections, lazy imports, server-side caches
        for _ in range(10):
            await probe()
    for _ in range(rounds):
        for name, probe in pairs.items():
            t0 = time.perf_counter()
            await probe()
            times[name].append(time.perf_counter() - t0)
    return times


async def count_requests(probe: Probe, hooks: list[int]) -> int:
    before = hooks[0]
    await probe()
    return hooks[0] - before


async def scenario(title: str, spec: ProbeSpec, url: str, mode: str, rounds: int) -> list[str]:
    assert spec.mcp is not None
    arguments = dict(spec.mcp.arguments)
    seen = [0]

    async def on_aiohttp(*_: Any) -> None:
        seen[0] += 1

    async def on_httpx(_: Any) -> None:
        seen[0] += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_aiohttp)
    async with (
        aiohttp.ClientSession(trace_configs=[trace]) as shared,
        httpx2.AsyncClient(event_hooks={"request": [on_httpx]}, timeout=30) as shared_httpx,
    ):
        pairs = {
            "ours, shared client": ours(spec, url, shared),
            "SDK, shared client": sdk(url, mode, shared_httpx, arguments),
            "ours, fresh client": ours(spec, url, None),
            "SDK, fresh client": sdk(url, mode, None, arguments),
        }
        n_ours = await count_requests(pairs["ours, shared client"], seen)
        n_sdk = await count_requests(pairs["SDK, shared client"], seen)
        times = await measure(pairs, rounds)
    rows = [f"\n{title}: HTTP requests per probe: ours {n_ours}, SDK {n_sdk}; {rounds} rounds"]
    rows.append(f"  {'':<22} {'median ms':>10} {'p99 ms':>10}   ratio ours/SDK (median, p99)")
    for mode_name in ("shared client", "fresh client"):
        o, s = times[f"ours, {mode_name}"], times[f"SDK, {mode_name}"]
        rows.append(f"  {'ours, ' + mode_name:<22} {statistics.median(o) * 1e3:>10.2f} {p99(o) * 1e3:>10.2f}")
        rows.append(
            f"  {'SDK, ' + mode_name:<22} {statistics.median(s) * 1e3:>10.2f} {p99(s) * 1e3:>10.2f}   "
            f"{statistics.median(o) / statistics.median(s):.2f}, {p99(o) / p99(s):.2f}"
        )
    return rows


async def sequential(spec: ProbeSpec, url: str, n: int) -> list[str]:
    me = psutil.Process()
    marks: list[tuple[int, int, float]] = []
    failures = 0
    async with aiohttp.ClientSession() as shared:
        for i in range(1, n + 1):
            r = await run_probe(spec, url=url, session=shared)
            failures += not r.ok
            if i in (1, n // 10, n // 2, n):
                gc.collect()
                marks.append((i, me.num_fds(), me.memory_info().rss / 2**20))
    rows = [f"\n{n} sequential probes on one shared session ({failures} failed): this process's fds and RSS"]
    rows += [f"  after probe {i:>5}: {fds:>3} fds, RSS {rss:6.1f} MiB" for i, fds, rss in marks]
    return rows


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--rounds", type=int, default=1000, help="probes per side and mode (default 1000: p99 of fewer is noise)"
    )
    ap.add_argument("--sequential", type=int, default=1000, help="probes in the fd/RSS run (default 1000)")
    ap.add_argument(
        "--servers", default="demo,everything,fastmcp", help="which servers, comma-separated (default all three)"
    )
    args = ap.parse_args()
    servers = set(args.servers.split(","))
    echo = load_probe(REPO / "probes" / "demo-echo.yaml")
    assert echo.mcp is not None
    with_list = replace(echo, mcp=replace(echo.mcp, list_tools=True, match=None))
    modern = replace(with_list, mcp=replace(echo.mcp, list_tools=True, match=None, protocol="auto"))
    legacy = replace(with_list, mcp=replace(echo.mcp, list_tools=True, match=None, protocol="legacy"))
    rows = [
        f"probe latency, python {sys.version.split()[0]}, {psutil.cpu_count()} cpus, "
        f"load average {', '.join(f'{x:.2f}' for x in psutil.getloadavg())}"
    ]
    if "demo" in servers:
        rows += await demo_rows(modern, legacy, echo, args)
    if "everything" in servers or "fastmcp" in servers:
        rows += await peer_rows(servers, legacy, modern, args.rounds)
    print("\n".join(rows))


async def demo_rows(modern: ProbeSpec, legacy: ProbeSpec, echo: ProbeSpec, args: argparse.Namespace) -> list[str]:
    rows: list[str] = []
    with DemoServer(workers=2) as demo:
        rows += await scenario(
            "2026-07-28 (discover, tools/list, tools/call), stateless demo, 2 workers",
            modern,
            demo.mcp_url,
            "auto",
            args.rounds,
        )
        rows += await sequential(echo, demo.mcp_url, args.sequential)
    with DemoServer(workers=1, stateful=True) as demo:
        rows += await scenario(
            "2025-11-25 handshake (initialize .. DELETE), stateful demo, 1 worker",
            legacy,
            demo.mcp_url,
            "legacy",
            args.rounds,
        )
    return rows


async def peer_rows(servers: set[str], legacy: ProbeSpec, modern: ProbeSpec, rounds: int) -> list[str]:
    """The TypeScript reference server and FastMCP, started as the probe tests start them."""
    import pytest

    from tests.probes.peers import FastMcpSetup, everything

    rows: list[str] = []
    assert legacy.mcp is not None
    assert modern.mcp is not None
    if "everything" in servers:
        ts = replace(legacy, mcp=replace(legacy.mcp, arguments={"message": "watchdog-probe"}))
        try:
            peer = everything("streamableHttp")
        except pytest.skip.Exception as exc:
            rows.append(f"\nTypeScript server-everything: skipped ({exc})")
        else:
            with peer:
                rows += await scenario(
                    "2025-11-25 handshake (initialize .. DELETE), TypeScript server-everything (event store)",
                    ts,
                    peer.url,
                    "legacy",
                    rounds,
                )
    if "fastmcp" in servers:
        for setup, spec, mode, title in (
            (FastMcpSetup("stateless", stateless=True), modern, "auto", "2026-07-28, FastMCP 4 stateless, 1 process"),
            (FastMcpSetup("stateful"), legacy, "legacy", "2025-11-25 handshake, FastMCP 4 stateful, 1 process"),
        ):
            try:
                peer = setup.peer()
            except pytest.skip.Exception as exc:
                rows.append(f"\n{title}: skipped ({exc})")
                continue
            with peer:
                rows += await scenario(title, spec, peer.url, mode, rounds)
    return rows


if __name__ == "__main__":
    asyncio.run(main())
