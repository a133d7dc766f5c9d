"""End to end, real gunicorn, real signals: rules over process signals drive recycles through the budget."""

from __future__ import annotations

from pathlib import Path

import anyio
import psutil
import pytest

from examples.demo import inject
from examples.demo.harness import REPO, DemoServer
from tests.sidecar.harness import Webhooks, demo_config, watching

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_leak_with_a_memory_limit_is_recycled_before_the_limit(demo: DemoServer) -> None:
    limit_mib = 300
    async with Webhooks().serve() as hooks:
        cfg = demo_config(demo, hooks, target={"memory_limit": f"{limit_mib}Mi"}, windows={"memory": "10s"})
        async with watching(cfg) as wd:
            pid = await inject.leak(demo.mcp_url, mb_per_s=10.0, seconds=60.0)
            peak = 0
            note = await hooks.wait_for(lambda n: n["rule"] == "memory-ramp" and n["worker"] == pid, within=40)
            recycle = note["evidence"]["recycle"]
            assert recycle["outcome"] == "recycled"
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            signals = note["evidence"]["signals"]
            peak = signals["memory_used_ratio"]
            print(
                f"\nleak: worker {pid} recycled at {peak:.0%} of {limit_mib} MiB, "
                f"{signals['seconds_to_memory_limit']:.0f} s before the projected limit; "
                f"steps {[(s['step'], s['at']) for s in recycle['steps']]}; replacement {recycle['replacement']}"
            )
            assert peak < 1.0
            assert recycle["replacement"] in demo.worker_pids()
            status = await wd.status()
            assert status["targets"][0]["budget"]["recycles_in_window"] == 1


async def test_dry_run_sends_no_signal(demo: DemoServer) -> None:
    async with Webhooks().serve() as hooks:
        cfg = demo_config(demo, hooks, target={"memory_limit": "300Mi"}, windows={"memory": "10s"}, dry_run=True)
        async with watching(cfg):
            pid = await inject.leak(demo.mcp_url, mb_per_s=20.0, seconds=30.0)
            worker = psutil.Process(pid)
            note = await hooks.wait_for(lambda n: n["rule"] == "memory-ramp", within=40)
            assert note["dry_run"] is True
            assert note["evidence"]["recycle"]["outcome"] == "dry_run"
            await anyio.sleep(1.0)  # a real recycle would have SIGTERMed it by now
            assert worker.is_running()
            assert pid in demo.worker_pids()


async def test_status_metrics_and_healthz(demo: DemoServer) -> None:
    import aiohttp

    async with watching(demo_config(demo, None)) as wd, aiohttp.ClientSession() as http:
        status = await wd.wait_status(
            lambda s: len(ws := s["targets"][0]["workers"]) == 2 and all("cpu_percent" in w["signals"] for w in ws),
            within=15,
        )
        target = status["targets"][0]
        assert target["name"] == "demo"
        assert sorted(w["pid"] for w in target["workers"]) == demo.worker_pids()
        assert {"cpu_percent", "rss_bytes", "open_fds"} <= set(target["workers"][0]["signals"])
        assert [e["kind"] for e in status["events"]].count("worker_new") == 2
        async with http.get(f"{wd.url}/metrics") as r:
            text = await r.text()
        for pid in demo.worker_pids():
            assert f'watchdog_signal_value{{pid="{pid}",signal="rss_bytes",target="demo"}}' in text
        assert 'watchdog_workers{target="demo"} 2.0' in text
        assert "watchdog_process_resident_memory_bytes" in text
        async with http.get(f"{wd.url}/healthz") as r:
            assert r.status == 200
        async with http.post(f"{wd.url}/v1/status") as r:
            assert r.status == 405


async def test_saturation_notifies_and_never_recycles(tmp_path: Path) -> None:
    # The default pack's downstream-saturated rule, its 60 s hold shortened to 5 s for the test's sake.
    pack = (REPO / "rules" / "default.yaml").read_text()
    rule = pack.index("name: downstream-saturated")
    hold = pack.index("for: 60s", rule)
    (tmp_path / "rules.yaml").write_text(pack[:hold] + "for: 5s" + pack[hold + len("for: 60s") :])
    with DemoServer(workers=2, limit=2) as demo:
        before = demo.worker_pids()
        async with Webhooks().serve() as hooks:
            cfg = demo_config(demo, hooks, rules=[str(tmp_path / "rules.yaml")])
            async with watching(cfg) as wd, anyio.create_task_group() as tg:
                tg.start_soon(
                    lambda: inject.saturate(
                        demo.mcp_url, demo.downstream_url, demo.metrics_url, callers=16, latency=30.0, hold=25.0
                    )
                )
                note = await hooks.wait_for(lambda n: n["rule"] == "downstream-saturated", within=30)
                print(f"\nsaturation: worker {note['worker']}: {note['evidence']['signals']}")
                assert note["evidence"]["signals"]["guard_limiter_saturation"] == 1.0
                assert note["severity"] == "warning"
                assert "recycle" not in note["evidence"]
                kinds = [e["kind"] for e in (await wd.status())["events"]]
                assert "recycle_started" not in kinds
                tg.cancel_scope.cancel()
        assert demo.worker_pids() == before
