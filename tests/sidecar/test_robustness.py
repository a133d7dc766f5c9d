"""The watchdog itself must never crash: a target that goes away and comes back, its metrics down meanwhile."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.demo.harness import DemoServer, free_port
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
            gone = await wd.wait_status(lambda s: s["targets"][0]["workers"] == [], within=20)
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
