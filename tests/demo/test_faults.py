"""Each fault of the demo server is real: observed from outside with psutil, py-spy and /metrics.

The figures each test sees are printed (``pytest -s``) so they can be quoted; assertions never trust a tool's
own account of what it did.
"""

from __future__ import annotations

import subprocess
import time

import aiohttp
import anyio
import psutil
import pytest

from examples.demo import inject
from examples.demo.harness import DemoServer
from tests.conftest import cpu_percent_over, py_spy_path, runnable_percent_over

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SPIN_FRAME = "_deliver_cancellation"


def py_spy_dump(pid: int) -> str:
    out = subprocess.run([py_spy_path(), "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20)
    return out.stdout


async def metrics_text(demo: DemoServer) -> str:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s, s.get(demo.metrics_url) as r:
        return await r.text()


async def count_frame(pid: int, frame: str, dumps: int) -> int:
    """How many of ``dumps`` blocking py-spy dumps of ``pid`` contain ``frame``."""
    hits = 0
    for _ in range(dumps):
        text = await anyio.to_thread.run_sync(py_spy_dump, pid)
        hits += frame in text
        await anyio.sleep(0.05)
    return hits


async def test_every_tool_result_names_its_worker_and_metrics_show_every_worker(demo: DemoServer) -> None:
    res = await inject.call(demo.mcp_url, "echo", {"text": "hello"})
    assert res["text"] == "hello"
    assert res["pid"] in demo.worker_pids()
    async with aiohttp.ClientSession() as s, s.get(demo.metrics_url) as r:
        text = await r.text()
    up = inject.scrape_gauge(text, "demo_worker_up")
    assert sorted(p for p, v in up.items() if v == 1) == demo.worker_pids()
    limits = inject.scrape_gauge(text, "watchdog_guard_limiter_limit", name="downstream")
    assert {limits[p] for p in demo.worker_pids()} == {4.0}
    # the guard's per-worker gauges: every worker runs the lag monitor and the spin sentinel, none is draining
    for gauge, healthy in [
        ("watchdog_guard_cancel_spin_scopes", {0.0}),
        ("watchdog_guard_draining", {0.0}),
        ("watchdog_guard_connections_limit", {64.0}),
    ]:
        values = inject.scrape_gauge(text, gauge)
        assert {values[p] for p in demo.worker_pids()} == healthy, gauge
    lags = inject.scrape_gauge(text, "watchdog_guard_loop_lag_max_seconds")
    assert set(lags) >= set(demo.worker_pids())


async def test_sse_transport_serves_tools(demo_one_worker: DemoServer) -> None:
    from mcp import ClientSession
    from mcp.client.sse import sse_client

    with anyio.fail_after(30):
        async with sse_client(demo_one_worker.sse_url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            res = await session.call_tool("echo", {"text": "over sse"})
    assert not res.is_error
    assert res.structured_content is not None
    assert res.structured_content["pid"] == demo_one_worker.worker_pids()[0]


async def test_spin_keeps_the_worker_hot_in_deliver_cancellation(demo: DemoServer) -> None:
    pid = await inject.spin(demo.mcp_url)
    assert pid in demo.worker_pids()
    windows = [await runnable_percent_over(pid, 2.0) for _ in range(5)]  # 10 s: running, or waiting for a core
    hits = await count_frame(pid, SPIN_FRAME, dumps=30)
    others = [p for p in demo.worker_pids() if p != pid]
    other_cpu = await cpu_percent_over(psutil.Process(others[0]), 1.0)
    sentinel = inject.scrape_gauge(await metrics_text(demo), "watchdog_guard_cancel_spin_scopes")
    print(
        f"\nspin: worker {pid} running or runnable per 2 s window {[round(w) for w in windows]} %, "
        f"{hits}/30 py-spy dumps in {SPIN_FRAME}; other worker {other_cpu:.0f} %; "
        f"spin sentinel (watchdog_guard_cancel_spin_scopes) {sentinel}"
    )
    assert min(windows) > 80, windows
    assert hits >= 1
    assert other_cpu < 20
    assert sentinel[pid] >= 1, "the in-process sentinel sees the spin"
    assert sentinel[others[0]] == 0


async def test_crunch_is_busy_while_it_runs_idle_after_and_never_a_spin(demo: DemoServer) -> None:
    async with inject.running(demo.mcp_url, "crunch", {"seconds": 8.0}) as call:
        worker = psutil.Process(call.pid)
        busy = await runnable_percent_over(call.pid, 2.0)  # running, or waiting for a core
        dumps: list[str] = []
        while len(dumps) < 15 and not call.done.is_set():  # only while it crunches
            dumps.append(await anyio.to_thread.run_sync(py_spy_dump, call.pid))
        sentinel = inject.scrape_gauge(await metrics_text(demo), "watchdog_guard_cancel_spin_scopes")
        with anyio.fail_after(30):
            await call.done.wait()
    assert call.error is None
    assert call.result is not None
    assert call.result["pid"] == call.pid
    idle = await cpu_percent_over(worker, 2.0)
    crunch_hits = sum("_crunch_slice" in d for d in dumps)
    spin_hits = sum(SPIN_FRAME in d for d in dumps)
    print(
        f"\ncrunch: worker {call.pid} running or runnable {busy:.0f} % while it crunched, CPU {idle:.1f} % after; "
        f"{crunch_hits}/{len(dumps)} dumps in _crunch_slice, {spin_hits} in {SPIN_FRAME}; spin sentinel {sentinel}"
    )
    assert busy > 70
    assert idle < 10
    assert crunch_hits >= 5  # the sampling saw the work, so the absence of the spin frame means something
    assert spin_hits == 0
    assert sentinel[call.pid] == 0  # busy, not spinning


async def test_leak_ramps_rss_at_the_asked_rate(demo: DemoServer) -> None:
    rate_mib = 20.0
    pid = await inject.leak(demo.mcp_url, rate_mib, seconds=8.0)
    worker = psutil.Process(pid)
    await anyio.sleep(1.0)  # measure the steady ramp, not its first step
    rss0, t0 = worker.memory_info().rss, time.monotonic()
    await anyio.sleep(4.0)
    rss1, t1 = worker.memory_info().rss, time.monotonic()
    slope = (rss1 - rss0) / (t1 - t0) / 2**20
    print(
        f"\nleak: worker {pid} RSS {rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB, {slope:.1f} MiB/s (asked {rate_mib:g})"
    )
    assert rate_mib * 0.5 <= slope <= rate_mib * 1.5


async def test_saturate_pins_the_in_flight_gauge_at_its_limit() -> None:
    with DemoServer(workers=2, limit=2) as demo:
        seen = await inject.saturate(
            demo.mcp_url, demo.downstream_url, demo.metrics_url, callers=16, latency=8.0, hold=6.0
        )
        print(f"\nsaturate: in flight {seen.in_flight}, limit {seen.limit}, waiting {seen.waiting}")
        assert set(seen.limit) == set(demo.worker_pids())
        waiting_workers = [p for p, n in seen.waiting.items() if n > 0]
        assert waiting_workers, "no caller waited: the limiter never filled"
        for pid in waiting_workers:
            assert seen.in_flight[pid] == seen.limit[pid] == 2.0


async def test_block_leaves_a_second_call_unanswered_for_the_block_time(demo_one_worker: DemoServer) -> None:
    url = demo_one_worker.mcp_url
    block_s = 5.0
    started = time.monotonic()
    pid = await inject.block(url, block_s)
    assert pid == demo_one_worker.worker_pids()[0]
    answered = None
    with anyio.move_on_after(block_s - 1.5):
        answered = await inject.call(url, "echo", {"text": "anyone?"})
    assert answered is None, "the blocked worker answered during its block"
    with anyio.fail_after(30):
        after = await inject.call(url, "echo", {"text": "back"})
    waited = time.monotonic() - started
    print(
        f"\nblock: worker {pid} unanswered for {block_s - 1.5:g} s; answered again {waited:.1f} s after the block began"
    )
    assert after["pid"] == pid
    assert waited >= block_s - 0.5


async def test_churn_grows_the_workers_open_fds(demo: DemoServer) -> None:
    before = {p: psutil.Process(p).num_fds() for p in demo.worker_pids()}
    calls = await inject.churn(demo.mcp_url, 30)
    after = {p: psutil.Process(p).num_fds() for p in demo.worker_pids()}
    pid, n = calls.most_common(1)[0]
    grown = after[pid] - before[pid]
    print(f"\nchurn: worker {pid} took {n} churn calls; fds {before[pid]} -> {after[pid]} (+{grown})")
    assert grown >= 0.8 * n
