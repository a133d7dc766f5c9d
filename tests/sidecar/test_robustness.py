"""The watchdog itself must never crash: a target that goes away and comes back, its metrics down meanwhile."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from examples.demo.harness import DemoServer, free_port
from tests.conftest import ReadableInstall
from tests.sidecar.harness import watching

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_survives_a_target_restart_and_a_metrics_endpoint_that_is_down(tmp_path: Path) -> None:
    pidfile = str(tmp_path / "gunicorn.pid")
    port = free_port()
    cfg = {
        "targets": [
            {
                "name": "demo",
                "match": {"pidfile": pidfile},
                "workers": "children",
                "metrics_url": f"http://127.0.0.1:{port}/metrics",
            }
        ],
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "intervals": {"process": "0.5s", "metrics": "0.5s"},
        "log": {"format": "json"},
    }
    first = DemoServer(workers=2, port=port, pidfile=pidfile).start()
    try:
        async with watching(cfg) as wd:
            await wd.wait_status(lambda s: len(s["targets"][0]["workers"]) == 2, within=15)
            old = set(first.worker_pids())
            first.stop()
            # gunicorn stops its workers before it exits: "no workers right now" first, then the pidfile's process
            # is gone; wait for the second state rather than race the master's exit
            gone = await wd.wait_status(
                lambda s: s["targets"][0]["workers"] == [] and "pidfile" in (s["targets"][0]["problem"] or ""),
                within=20,
            )
            target = gone["targets"][0]
            print(f"\ntarget down: problem={target['problem']!r}; metrics_error={target['metrics_error']!r}")
            assert "pidfile" in target["problem"]
            assert target["metrics_error"] is not None
            assert "cannot scrape" in target["metrics_error"]

            second = DemoServer(workers=2, port=port, pidfile=pidfile).start()
            try:
                back = await wd.wait_status(
                    lambda s: len(s["targets"][0]["workers"]) == 2 and s["targets"][0]["metrics_error"] is None,
                    within=30,
                )
                pids = {w["pid"] for w in back["targets"][0]["workers"]}
                assert pids == set(second.worker_pids())
                assert not pids & old
                kinds = [e["kind"] for e in back["events"]]
                assert kinds.count("worker_gone") == 2
                assert kinds.count("worker_new") == 4
                assert "metrics_down" in kinds
            finally:
                second.stop()
            assert wd.proc is not None
            assert wd.proc.poll() is None, "the watchdog died"
        assert wd.proc.returncode == 0  # and it stopped cleanly on SIGTERM
    finally:
        first.stop()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


async def test_healthz_fails_while_its_own_loop_stalls_and_recovers(sleeper: subprocess.Popen[bytes]) -> None:
    import os
    import signal

    import aiohttp

    cfg = {
        "targets": [{"name": "s", "match": {"pid": sleeper.pid}, "workers": "self"}],
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "stacks": {"enabled": False},
    }
    async with watching(cfg) as wd, aiohttp.ClientSession() as http:
        assert wd.proc is not None
        os.kill(wd.proc.pid, signal.SIGSTOP)  # the watchdog's whole process, event loop included, stalls
        await anyio.sleep(3.0)
        os.kill(wd.proc.pid, signal.SIGCONT)
        async with http.get(f"{wd.url}/healthz") as r:
            stalled = (r.status, await r.json())
        print(f"\nhealthz after a 3 s stall: {stalled}")
        assert stalled[0] == 503
        assert stalled[1]["status"] == "stalled"
        with anyio.fail_after(20):  # the stall leaves the 10 s window
            while True:
                async with http.get(f"{wd.url}/healthz") as r:
                    if r.status == 200:
                        break
                await anyio.sleep(0.5)


async def test_without_permission_every_gap_is_a_visible_state_and_it_keeps_running(
    readable_install: ReadableInstall,
) -> None:
    with DemoServer(workers=2) as demo:
        cfg = {
            "targets": [{"name": "demo", "match": {"pid": demo.master_pid}, "workers": "children",
                         "metrics_url": demo.metrics_url}],
            "server": {"listen": f"127.0.0.1:{free_port()}"},
        }  # fmt: skip
        async with watching(cfg, python=str(readable_install.python), prefix=readable_install.as_user([])) as wd:
            status = await wd.wait_status(
                lambda s: (
                    all(w["stack_error"] and w["process_error"] for w in s["targets"][0]["workers"])
                    and len(s["targets"][0]["workers"]) == 2
                ),
                within=30,
            )
            worker = status["targets"][0]["workers"][0]
            print(f"\nas nobody: stack_error={worker['stack_error']!r}\n  process_error={worker['process_error']!r}")
            assert "CAP_SYS_PTRACE" in worker["stack_error"]
            assert "permission denied" in worker["process_error"]
            assert "open_fds" not in worker["signals"]  # missing, not zero
            assert "rss_bytes" in worker["signals"]  # what can be read still is
            kinds = [e["kind"] for e in status["events"]]
            assert "stacks_unavailable" in kinds
            assert "process_unreadable" in kinds
            assert wd.proc is not None
            assert wd.proc.poll() is None


async def test_sigterm_stops_cleanly_and_leaves_no_py_spy_behind(demo: DemoServer) -> None:
    import psutil

    from tests.conftest import py_spy_path

    py_spy_path()
    cfg = {
        "targets": [{"name": "demo", "match": {"pid": demo.master_pid}, "workers": "children"}],
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "stacks": {"duration": "20s", "baseline": "1s"},  # a long look is under way when SIGTERM comes
    }
    async with watching(cfg) as wd:
        assert wd.proc is not None
        me = psutil.Process(wd.proc.pid)
        with anyio.fail_after(20):  # another process's children can only be polled

            def spies_now() -> list[psutil.Process]:
                return [c for c in me.children(recursive=True) if "py-spy" in " ".join(c.cmdline())]

            while not (spies := spies_now()):  # noqa: ASYNC110
                await anyio.sleep(0.1)
        code = wd.stop()
    print(
        f"\nSIGTERM during a stack look: exit code {code}; py-spy {[s.pid for s in spies]} left running: "
        f"{[s.pid for s in spies if s.is_running()]}"
    )
    assert code == 0
    assert not any(s.is_running() for s in spies)
