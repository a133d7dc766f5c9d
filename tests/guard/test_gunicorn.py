"""The guard under real gunicorn + uvicorn workers (the demo server): per-worker lag across scrapes, and drain.

Any worker serves /metrics and reads every worker's values from the multiprocess files, so these check what the
sidecar will see: one worker's stall on every scrape, whichever worker answers; one worker drained by SIGTERM
while the other keeps serving.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import aiohttp
import anyio
import psutil
import pytest

from examples.demo import inject
from examples.demo.harness import DemoServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DRAIN_STARTED = "drain started (signal SIGTERM)"


async def metrics_text(url: str, within: float = 10.0) -> str:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=within)) as s, s.get(url) as r:
        return await r.text()


async def wait_for_scrape(url: str, pred: Callable[[str], bool], within: float) -> str:
    """Scrape until ``pred(text)`` holds (the guard's publisher copies values every 0.5 s); the last text else."""
    text = ""
    with anyio.move_on_after(within):
        while not pred(text := await metrics_text(url)):  # noqa: ASYNC110 - published state: polled
            await anyio.sleep(0.1)
    return text


async def wait_for_log(demo: DemoServer, text: str, within: float = 30) -> str:
    """The demo server's log once it holds ``text`` (a file the workers write: polled)."""
    with anyio.fail_after(within):
        while text not in (log := demo.log_text()):  # noqa: ASYNC110 - a file to poll
            await anyio.sleep(0.05)
    return log


def assert_exited_by_itself(log: str, pid: int) -> None:
    """The worker finished its shutdown before gunicorn's graceful_timeout (5 s) ran out: not killed."""
    assert f"Finished server process [{pid}]" in log
    assert f"Worker (pid:{pid}) was sent SIGTERM" in log
    assert f"Worker (pid:{pid}) was sent SIGKILL" not in log


@pytest.mark.timeout(180)
async def test_a_workers_stall_shows_while_it_lasts_and_after_on_every_scrape(demo: DemoServer) -> None:
    block_s = 8.0
    pid = await inject.block(demo.mcp_url, block_s)
    ends = time.monotonic() + block_s  # at the latest: the call returned once the block had begun
    other = next(p for p in demo.worker_pids() if p != pid)
    during: list[float] = []
    # the published lag grows while the block lasts (heartbeat 0.1 s, publish interval 0.5 s): scrape until it
    # shows a second of it, as long as the block surely lasts
    with anyio.move_on_after(block_s - 2.0):
        while not during or during[-1] < 1.0:  # a scrape the blocked worker accepted waits out the block: retry
            with anyio.move_on_after(0.3):
                lag = inject.scrape_gauge(await metrics_text(demo.metrics_url), "watchdog_guard_loop_lag_seconds")
                during.append(lag[pid])
            await anyio.sleep(0.1)
    seen_during = time.monotonic()

    def stall_kept(text: str) -> bool:
        return inject.scrape_gauge(text, "watchdog_guard_loop_lag_max_seconds").get(pid, 0.0) >= block_s - 0.5

    await wait_for_scrape(demo.metrics_url, stall_kept, within=30)  # the block is over and its max published
    after = []
    for _ in range(5):
        text = await metrics_text(demo.metrics_url)
        after.append(inject.scrape_gauge(text, "watchdog_guard_loop_lag_max_seconds"))
        await anyio.sleep(0.3)
    print(
        f"\ngunicorn lag: worker {pid} blocked {block_s:g} s; lag seen during the block {during}; "
        f"max over the window after it, 5 scrapes: {[round(a[pid], 2) for a in after]}; other worker "
        f"{[round(a[other], 3) for a in after]}"
    )
    assert during, "no scrape came back during the block (the other worker should have answered)"
    assert during[-1] >= 1.0, "a stall in progress is reported by the blocked worker's publisher thread"
    assert seen_during < ends
    assert all(a[pid] >= block_s - 0.5 for a in after), "every scrape, whichever worker served it, shows the stall"
    assert all(a[other] < 0.5 for a in after)


@pytest.mark.timeout(180)
async def test_sigterm_drains_one_worker_while_the_other_serves() -> None:
    with DemoServer(workers=2) as demo:
        await inject.set_latency(demo.downstream_url, 2.5)
        async with anyio.create_task_group() as tg:
            outcome: dict[str, object] = {}

            async def in_flight_call() -> None:
                outcome["result"] = await inject.call(demo.mcp_url, "downstream", {"max_seconds": 30})

            tg.start_soon(in_flight_call)
            busy: dict[int, float] = {}
            with anyio.fail_after(15):
                while not busy:
                    text = await metrics_text(demo.metrics_url)
                    gauge = inject.scrape_gauge(text, "watchdog_guard_limiter_in_flight", name="downstream")
                    busy = {p: v for p, v in gauge.items() if v == 1}
                    await anyio.sleep(0.1)
            pid = next(iter(busy))
            other = next(p for p in demo.worker_pids() if p != pid)
            drains_before = demo.log_text().count(DRAIN_STARTED)
            worker = psutil.Process(pid)  # before it can exit: wait() then returns at once if it is gone
            sent = time.monotonic()
            os.kill(pid, signal.SIGTERM)
            with anyio.fail_after(30):  # logged once its listener is closed: from then on it accepts nothing new
                while demo.log_text().count(DRAIN_STARTED) == drains_before:  # noqa: ASYNC110 - a log to poll
                    await anyio.sleep(0.05)
            text = await wait_for_scrape(  # published within 0.5 s; seen before the drain ends and the files go
                demo.metrics_url, lambda t: inject.scrape_gauge(t, "watchdog_guard_draining").get(pid) == 1, within=15
            )
            draining = inject.scrape_gauge(text, "watchdog_guard_draining")
            served_by: list[int] = []
            refused = 0
            for _ in range(10):  # new work during the drain: the drained worker stopped accepting, the other takes it
                try:
                    served_by.append(int((await inject.call(demo.mcp_url, "echo", limit_s=10))["pid"]))
                except Exception as exc:  # the client turns our 503's JSON-RPC body into an MCPError
                    if "server is draining" not in repr(exc):
                        raise
                    refused += 1
            statuses: list[tuple[int, str | None]] = []
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
                for _ in range(10):
                    async with s.post(demo.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}) as r:
                        statuses.append((r.status, r.headers.get("Retry-After")))
        result = outcome["result"]
        assert isinstance(result, dict)
        exited = await anyio.to_thread.run_sync(lambda: worker.wait(timeout=30))
        took = time.monotonic() - sent
        log = await wait_for_log(demo, f"Worker (pid:{pid}) was sent")
        print(
            f"\ngunicorn drain: worker {pid} SIGTERMed with a call in flight; the call finished on {result['pid']} "
            f"({result['status']}); new calls served by {served_by}, {refused} refused with 503; raw POSTs "
            f"(status, Retry-After) {statuses}; draining gauge "
            f"{draining}; worker exited ({exited}) {took:.1f} s after SIGTERM"
        )
        assert result["pid"] == pid
        assert result["status"] == 200
        # by the other worker, or by the replacement gunicorn starts once the drained one has exited
        assert len(served_by) == 10
        assert pid not in served_by, "every new call was served, by a worker that is not draining"
        assert other in served_by
        assert refused == 0
        assert [status for status, _ in statuses] == [200] * 10, "nothing refused: the drained worker stopped accepting"
        assert draining.get(pid) == 1
        assert draining.get(other) == 0
        assert_exited_by_itself(log, pid)


@pytest.mark.timeout(180)
async def test_the_opt_in_patch_stops_the_demo_spin(monkeypatch: pytest.MonkeyPatch) -> None:
    """DEMO_GUARD_PATCH=1: the real spin through the MCP SDK (``stubborn``, abandoned) stops after 1000 tries."""
    monkeypatch.setenv("DEMO_GUARD_PATCH", "1")
    with DemoServer(workers=1) as demo:
        pid = await inject.spin(demo.mcp_url)
        await wait_for_log(demo, "stopped after 1000 re-deliveries")
        worker = psutil.Process(pid)
        t0, w0 = sum(worker.cpu_times()[:2]), time.monotonic()
        await anyio.sleep(3.0)
        cpu = 100 * (sum(worker.cpu_times()[:2]) - t0) / (time.monotonic() - w0)
        log = demo.log_text()
        answered = await inject.call(demo.mcp_url, "echo", {"text": "still here"})
    stopped = [line for line in log.splitlines() if "stopped after 1000 re-deliveries" in line]
    print(f"\npatch on the demo: worker {pid} CPU {cpu:.1f} % after the abandoned stubborn call; log: {stopped}")
    assert cpu < 20, "without the patch this worker spins at ~100 % (tests/demo/test_faults.py)"
    assert stopped
    assert "stubborn (" in log
    assert answered["pid"] == pid


@pytest.mark.timeout(120)
async def test_sigterm_ends_an_open_sse_stream_cleanly_and_the_worker_exits(demo_one_worker: DemoServer) -> None:
    pid = demo_one_worker.worker_pids()[0]
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s,
        s.get(demo_one_worker.sse_url, headers={"Accept": "text/event-stream"}) as r,
    ):
        assert r.status == 200
        first = await r.content.readline()  # "event: endpoint"
        worker = psutil.Process(pid)
        sent = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        rest = await r.content.read()  # returns at the end of the stream; raises if the connection breaks
        ended = time.monotonic() - sent
    exited = await anyio.to_thread.run_sync(lambda: worker.wait(timeout=30))
    took = time.monotonic() - sent
    log = await wait_for_log(demo_one_worker, f"Worker (pid:{pid}) was sent")
    print(
        f"\nsse drain: stream opened with {first!r}; after SIGTERM it ended cleanly in {ended:.1f} s "
        f"({len(rest)} more bytes); worker exited ({exited}) {took:.1f} s after SIGTERM"
    )
    assert first.startswith(b"event: endpoint")
    assert "drain done" in log
    assert "(1 stream(s) closed)" in log, "the drain closed the open stream: it did not wait for it"
    assert_exited_by_itself(log, pid)
