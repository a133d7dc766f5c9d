"""Trigger each fault of the demo server through real MCP calls from the official SDK client.

Each function returns what it learned (above all, which worker pid took the fault); the CLI prints it. Tests,
benchmarks and ``make demo`` call these same functions.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
from mcp import Client
from prometheus_client.parser import text_string_to_metric_families

_PID_MESSAGE = re.compile(r"pid=(\d+)")


class InjectError(RuntimeError):
    """Raised when a fault could not be injected (server down, tool failed, no pid reported in time)."""


def _result(res: Any) -> dict[str, Any]:
    if res.is_error:
        text = " ".join(getattr(c, "text", "") for c in res.content)
        raise InjectError(f"tool failed: {text}")
    data = res.structured_content or {}
    return dict(data.get("result", data)) if isinstance(data, dict) else {}


async def call(
    url: str, tool: str, arguments: dict[str, Any] | None = None, *, mode: str = "auto", limit_s: float = 30.0
) -> dict[str, Any]:
    """One tool call on a fresh client, within ``limit_s``; returns the structured result (with the ``pid``)."""
    with anyio.fail_after(limit_s):
        async with Client(url, mode=mode) as client:
            return _result(await client.call_tool(tool, arguments or {}))


@dataclass
class RunningCall:
    """A call in progress: the worker that took it, and (once ``done`` is set) its result or error."""

    pid: int
    done: anyio.Event = field(default_factory=anyio.Event)
    result: dict[str, Any] | None = None
    error: BaseException | None = None


@contextlib.asynccontextmanager
async def running(
    url: str, tool: str, arguments: dict[str, Any] | None = None, *, mode: str = "auto", wait: float = 15.0
) -> AsyncIterator[RunningCall]:
    """Start a call to a tool that reports ``pid=N`` as progress; yield it as soon as the pid is known.

    Leaving the block abandons the call if it is still running, as the war stories' clients did.
    """
    got = anyio.Event()
    pid: list[int] = []
    outcome: dict[str, Any] = {}
    finished = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        m = _PID_MESSAGE.search(message or "")
        if m and not pid:
            pid.append(int(m.group(1)))
            got.set()

    async with Client(url, mode=mode) as client, anyio.create_task_group() as tg:

        async def run() -> None:
            try:
                outcome["result"] = _result(
                    await client.call_tool(tool, arguments or {}, progress_callback=on_progress)
                )
            except Exception as exc:  # noqa: BLE001 - reported to the caller through RunningCall.error
                outcome["error"] = exc
            finally:
                finished.set()
                got.set()

        tg.start_soon(run)
        with anyio.move_on_after(wait):
            await got.wait()
        if not pid:
            tg.cancel_scope.cancel()
            raise InjectError(f"{tool}: no worker reported its pid within {wait:g} s ({outcome.get('error')})")
        call = RunningCall(pid[0])

        async def relay() -> None:
            await finished.wait()
            call.result, call.error = outcome.get("result"), outcome.get("error")
            call.done.set()

        tg.start_soon(relay)
        try:
            yield call
        finally:
            tg.cancel_scope.cancel()


async def spin(url: str, *, mode: str = "auto") -> int:
    """Leave one worker spinning in anyio's ``_deliver_cancellation``: call ``stubborn``, then abandon it."""
    async with running(url, "stubborn", mode=mode) as call:
        await anyio.sleep(0.5)
    return call.pid


async def block(url: str, seconds: float, *, mode: str = "auto") -> int:
    """Block one worker's event loop for ``seconds``; returns as soon as the worker has said who it is."""
    async with running(url, "block", {"seconds": seconds}, mode=mode) as call:
        await anyio.sleep(0.2)
    return call.pid


async def leak(url: str, mb_per_s: float, seconds: float, *, mode: str = "auto") -> int:
    """Start a memory ramp of ``mb_per_s`` MiB/s for ``seconds`` in one worker; returns its pid."""
    return int((await call(url, "leak", {"mb_per_s": mb_per_s, "seconds": seconds}, mode=mode))["pid"])


async def crunch(url: str, seconds: float, *, mode: str = "auto") -> int:
    """Run legitimate CPU work for ``seconds`` in one worker and wait for it; returns the worker's pid."""
    res = await call(url, "crunch", {"seconds": seconds}, mode=mode, limit_s=seconds + 30)
    return int(res["pid"])


async def churn(url: str, calls: int, *, per_call: int = 1, mode: str = "auto") -> Counter[int]:
    """Make ``calls`` churn calls (each opening ``per_call`` clients it never closes); returns calls per pid."""
    pids: Counter[int] = Counter()
    async with Client(url, mode=mode) as client:
        for _ in range(calls):
            pids[int(_result(await client.call_tool("churn", {"calls": per_call}))["pid"])] += 1
    return pids


async def timeouts(url: str, seconds: float, *, tasks: int = 50, mode: str = "auto") -> dict[str, Any]:
    """Run healthy cancel-heavy work (thousands of short timeouts a second) in one worker for ``seconds`` and
    wait for it; returns the result: ``pid``, ``scopes`` run and how many ``fired``."""
    return await call(url, "timeouts", {"seconds": seconds, "tasks": tasks}, mode=mode, limit_s=seconds + 30)


async def set_latency(downstream_url: str, seconds: float) -> float:
    """Set the slow downstream's latency; returns the previous value."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        async with s.get(f"{downstream_url}/latency") as r:
            previous = float((await r.json())["seconds"])
        async with s.put(f"{downstream_url}/latency", params={"seconds": str(seconds)}) as r:
            r.raise_for_status()
    return previous


@dataclass
class Saturation:
    """What ``saturate`` saw: per-pid in-flight and limit gauges while callers waited, calls finished per pid."""

    in_flight: dict[int, float] = field(default_factory=dict)
    limit: dict[int, float] = field(default_factory=dict)
    waiting: dict[int, float] = field(default_factory=dict)
    finished: Counter[int] = field(default_factory=Counter)


def scrape_gauge(text: str, metric: str, /, **labels: str) -> dict[int, float]:
    """Values of a per-worker gauge by ``pid`` label from Prometheus text, among the series with ``labels``."""
    out: dict[int, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != metric or "pid" not in sample.labels:
                continue
            if all(sample.labels.get(k) == v for k, v in labels.items()):
                out[int(sample.labels["pid"])] = sample.value
    return out


async def saturate(
    url: str, downstream_url: str, metrics_url: str, *, callers: int, latency: float, hold: float, mode: str = "auto"
) -> Saturation:
    """Slow the downstream to ``latency`` and keep ``callers`` concurrent ``downstream`` calls going for ``hold``
    seconds, scraping the in-flight gauges once the limiters are full. The latency is restored afterwards.
    """
    seen = Saturation()
    previous = await set_latency(downstream_url, latency)
    try:
        async with anyio.create_task_group() as tg:

            async def caller() -> None:
                async with Client(url, mode=mode) as client:
                    while True:
                        res = _result(await client.call_tool("downstream", {"max_seconds": latency + 30}))
                        seen.finished[int(res["pid"])] += 1

            for _ in range(callers):
                tg.start_soon(caller)
            deadline = time.monotonic() + hold
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
                while time.monotonic() < deadline:
                    await anyio.sleep(0.5)
                    async with s.get(metrics_url) as r:
                        text = await r.text()
                    seen.in_flight = scrape_gauge(text, "watchdog_guard_limiter_in_flight", name="downstream")
                    seen.limit = scrape_gauge(text, "watchdog_guard_limiter_limit", name="downstream")
                    seen.waiting = scrape_gauge(text, "watchdog_guard_limiter_waiting", name="downstream")
                    if seen.in_flight and all(seen.in_flight.get(p) == v for p, v in seen.limit.items()):
                        break
            await anyio.sleep(max(0.0, deadline - time.monotonic()))
            tg.cancel_scope.cancel()
    finally:
        await set_latency(downstream_url, previous)
    return seen
