"""Deep probes in the sidecar, end to end: real probes of the real demo, real rules, real webhooks."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from examples.demo import inject
from examples.demo.harness import REPO, DemoServer
from tests.sidecar.harness import Webhooks, demo_config, watching

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HERE = Path(__file__).parent


async def test_healthy_probes_are_recorded_per_worker(demo: DemoServer) -> None:
    cfg = demo_config(
        demo, None, target={"probes": [str(REPO / "probes" / "demo-echo.yaml")], "probe_url": demo.mcp_url}
    )
    async with watching(cfg) as wd:
        status = await wd.wait_status(
            lambda s: any("probe_ok" in w["signals"] for w in s["targets"][0]["workers"]), within=20
        )
        target = status["targets"][0]
        assert target["last_probe"]["ok"] is True
        assert target["last_probe"]["worker"] in demo.worker_pids()
        phases = {p["name"]: p for p in target["last_probe"]["probes"][0]["phases"]}
        assert phases["tools/call"]["ok"] is True
        answered = [w for w in target["workers"] if "probe_ok" in w["signals"]]
        assert all(w["signals"]["probe_ok"] == 1.0 for w in answered)


async def test_every_worker_failing_the_probe_notifies_and_recycles_nothing(demo: DemoServer) -> None:
    await inject.set_latency(demo.downstream_url, 5.0)
    before = demo.worker_pids()
    async with Webhooks().serve() as hooks:
        cfg = demo_config(
            demo, hooks, target={"probes": [str(HERE / "probe-downstream.yaml")], "probe_url": demo.mcp_url}
        )
        async with watching(cfg) as wd:
            note = await hooks.wait_for(lambda n: n["rule"] == "probe-failing-everywhere", within=40)
            print(
                f"\nevery worker failing: {note['evidence']['signals']}; "
                f"last probe: {(await wd.status())['targets'][0]['last_probe']['reason']}"
            )
            assert note["worker"] is None
            assert note["severity"] == "critical"
            assert note["evidence"]["signals"]["target_probe_consecutive_failures"] >= 3
            await anyio.sleep(2.0)  # a recycle, if one were (wrongly) decided, would have started by now
            kinds = [e["kind"] for e in (await wd.status())["events"]]
            assert "recycle_started" not in kinds
            assert "recycle" not in [n["evidence"] for n in hooks.received]
    assert demo.worker_pids() == before
