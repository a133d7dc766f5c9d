"""diagnose on the demo MCP server (real SDK, real gunicorn, real py-spy), one fault at a time.

One server serves every fault that leaves no lasting harm (idle, crunch, block, leak, churn); the spin gets a
server of its own, since a spinning worker never recovers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import anyio
import psutil
import pytest

from examples.demo import app, inject
from examples.demo.harness import DemoServer
from tests.conftest import cpu_percent_over, py_spy_path
from tests.diagnose.test_targets import assert_valid, show
from watchdog.diagnose import diagnose

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab() -> Iterator[DemoServer]:
    py_spy_path()
    with DemoServer(workers=2) as server:
        yield server


async def test_an_idle_server_is_idle_master_and_workers(lab: DemoServer) -> None:
    await inject.call(lab.mcp_url, "echo", {"text": "warm up"})
    with anyio.fail_after(60):  # idle first, by another measure: a busy machine delays a worker's start-up work
        while max([await cpu_percent_over(psutil.Process(p), 1.0) for p in [lab.master_pid, *lab.worker_pids()]]) >= 5:
            pass
    report = await diagnose(lab.master_pid, duration=1.5, metrics_url=lab.metrics_url)
    show(report)
    assert_valid(report)
    roles = {p.pid: p.role for p in report.processes}
    assert roles == {lab.master_pid: "master", **{w: "worker" for w in lab.worker_pids()}}
    assert report.processes[0].server == "gunicorn"
    for p in report.processes:
        assert p.state is not None
        assert p.state.kind == "idle", (p.pid, p.state)
    worker = report.process(lab.worker_pids()[0])
    assert worker is not None
    assert worker.evidence is not None
    assert worker.evidence.in_flight == {'watchdog_guard_limiter_in_flight{name="downstream"}': 0.0}
    assert report.exit_code == 0


async def test_crunch_is_busy_in_crunch_slice_and_never_a_spin(lab: DemoServer) -> None:
    async with inject.running(lab.mcp_url, "crunch", {"seconds": 5.0}) as call:
        report = await diagnose(call.pid, metrics_url=lab.metrics_url)
        with anyio.fail_after(30):
            await call.done.wait()
    show(report)
    (p,) = report.processes
    assert p.role == "worker"
    assert p.state is not None
    assert p.state.kind == "busy", p.state
    assert "_crunch_slice" in p.state.summary
    assert all(v.kind != "spin" for v in p.verdicts)


async def test_block_is_blocked_in_the_tool(lab: DemoServer) -> None:
    ends = time.monotonic() + 5.0
    pid = await inject.block(lab.mcp_url, 5.0)
    report = await diagnose(pid)
    show(report)
    (p,) = report.processes
    assert p.state is not None
    assert p.state.kind == "blocked", p.state
    assert "block (" in p.state.summary
    assert "app.py" in p.state.summary
    assert report.exit_code == 1
    # the next test uses the server: wait out the block, then until the worker's loop is seen running again
    await anyio.sleep(max(0.0, ends - time.monotonic()))
    with anyio.fail_after(30):
        while True:
            async with aiohttp.ClientSession() as s, s.get(lab.metrics_url) as r:
                lag = inject.scrape_gauge(await r.text(), "watchdog_guard_loop_lag_seconds")
            if lag.get(pid, 0.0) < 0.5:
                break
            await anyio.sleep(0.2)


async def test_leak_gives_a_memory_growth_finding(lab: DemoServer) -> None:
    pid = await inject.leak(lab.mcp_url, 20.0, seconds=5.0)
    await anyio.sleep(0.5)
    report = await diagnose(pid)
    show(report)
    (p,) = report.processes
    growth = [v for v in p.verdicts if v.kind == "memory_growth"]
    assert growth, p.verdicts
    assert 8 * 2**20 <= float(growth[0].data["slope_bytes_per_s"] or 0) <= 40 * 2**20
    assert report.exit_code == 1


async def test_churn_gives_an_fd_growth_finding(lab: DemoServer) -> None:
    async with anyio.create_task_group() as tg:

        async def keep_churning() -> None:
            for _ in range(20):  # bounded: at most 20 x 5 calls
                await inject.churn(lab.mcp_url, 5)

        tg.start_soon(keep_churning)
        await anyio.sleep(0.3)
        report = await diagnose(lab.master_pid)
        tg.cancel_scope.cancel()
    show(report)
    found = [(p.pid, v) for p in report.processes if p.role == "worker" for v in p.verdicts if v.kind == "fd_growth"]
    assert found, [(p.pid, p.verdicts) for p in report.processes]
    assert report.exit_code == 1


async def test_healthy_timeout_churn_in_a_worker_is_never_a_spin(lab: DemoServer) -> None:
    """The fault lab's `timeouts`: thousands of short timeouts a second fire and complete in a hot worker."""
    async with inject.running(lab.mcp_url, "timeouts", {"seconds": 6.0}) as call:
        report = await diagnose(call.pid, metrics_url=lab.metrics_url)
        with anyio.fail_after(40):
            await call.done.wait()
    show(report)
    assert_valid(report)
    assert call.result is not None, call.error
    (p,) = report.processes
    assert p.state is not None
    assert p.state.kind in ("active", "busy", "spin_suspect"), p.state
    assert report.exit_code == 0
    fired = int(call.result["fired"])
    print(
        f"timeouts: {fired} of {call.result['scopes']} scopes fired in 6 s; verdict {p.state.kind}: {p.state.summary}"
    )
    assert fired >= 1000  # the churn was real


async def test_a_master_report_singles_out_the_spinning_worker() -> None:
    py_spy_path()
    with DemoServer(workers=2) as demo:
        spinning = await inject.spin(demo.mcp_url)
        report = await diagnose(demo.master_pid, metrics_url=demo.metrics_url)
        show(report)
        assert_valid(report)
        assert report.processes[0].role == "master"
        by_pid = {p.pid: p for p in report.processes}
        assert set(by_pid) == {demo.master_pid, *demo.worker_pids()}
        for pid, p in by_pid.items():
            assert p.state is not None
            if pid == spinning:
                assert p.state.kind == "spin", p.state
                assert any("no requests in flight" in e for e in p.state.evidence)
                # the culprit: the demo's `stubborn` tool, the except line that swallows the cancellation
                c = p.state.culprit
                assert c is not None
                assert (c.function, c.application) == ("stubborn", True)
                assert c.path.endswith("examples/demo/app.py")
                assert c.line in stubborn_lines()
                assert c.share >= 0.05
                assert c.task == "stubborn"  # the tool's name, from the SDK frames' locals beneath it
                print(f"stubborn culprit: {c.summary()}")
            else:
                assert p.state.kind != "spin", (pid, p.state)
        assert report.exit_code == 1


def stubborn_lines() -> set[int]:
    """The lines of the `stubborn` tool's loop in the demo app: its await and its except line."""
    lines = Path(app.__file__).read_text().splitlines()
    start = next(i for i, ln in enumerate(lines, 1) if ln.startswith("async def stubborn"))
    body = range(start, start + 20)
    return {
        i for i in body if "await anyio.sleep(3600)" in lines[i - 1] or "except anyio.get_cancelled" in lines[i - 1]
    }
