"""A recycle cut in half by the watchdog's own stop or death is finished, on the demo's real spin.

The rule here gives a long grace (20 s) so that the watchdog can be stopped or killed for certain between the
worker's SIGTERM (which a spinning uvicorn worker ignores) and its SIGKILL. The moment is read from the state
file, where the actuator records the SIGTERM before anything else can happen.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
import yaml

from examples.demo import inject
from examples.demo.harness import DemoServer
from tests.conftest import py_spy_path
from tests.sidecar.harness import Watchdog, demo_config

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(180)]

GRACE = 20.0


def config(demo: DemoServer, tmp: Path) -> dict[str, Any]:
    py_spy_path()
    rule = {
        "name": "spin-long-grace",
        "severity": "critical",
        "when": {"all": ["stack_spin_confidence >= 2", "loop_runnable_percent > 80"]},
        "actions": ["recycle"],
        "grace": f"{GRACE:g}s",
    }
    (tmp / "rules.yaml").write_text(yaml.safe_dump({"rules": [rule]}))
    return demo_config(demo, None, rules=[str(tmp / "rules.yaml")], state_dir=str(tmp / "state"))


async def sigterm_sent(tmp: Path, within: float) -> float:
    """Wait until the state file says a worker got its SIGTERM; return when (wall clock)."""
    path = tmp / "state" / "state.json"
    with anyio.fail_after(within):
        while True:  # polled: the state file is the only place another process can see this moment
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError):
                doc = {}
            sent = [r["term_sent"] for r in doc.get("recycles", {}).values() if r.get("term_sent")]
            if sent:
                return float(sent[0])
            await anyio.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_sigterm_mid_recycle_finishes_the_recycle_before_exiting(demo: DemoServer, tmp_path: Path) -> None:
    wd = Watchdog(config(demo, tmp_path))
    try:
        await wd.start()
        pid = await inject.spin(demo.mcp_url)
        term_at = await sigterm_sent(tmp_path, within=60)
        assert not gone(pid), "the spinning worker should outlive its SIGTERM"
        assert wd.proc is not None
        wd.proc.send_signal(signal.SIGTERM)
        rc = await anyio.to_thread.run_sync(wd.proc.wait, GRACE + 15)
        print(f"\nwatchdog exited {rc} {time.time() - term_at:.1f} s after the worker's SIGTERM")
        assert gone(pid), "the watchdog stopped without finishing the recycle"
        assert "was carried through its signals" in wd.log()
    except BaseException:
        print(f"--- watchdog log ---\n{wd.log()[-6000:]}")
        raise
    finally:
        wd.stop()


async def test_a_watchdog_killed_mid_recycle_is_finished_by_the_next_run(demo: DemoServer, tmp_path: Path) -> None:
    cfg = config(demo, tmp_path)
    first = Watchdog(cfg)
    second = Watchdog(cfg)
    try:
        await first.start()
        pid = await inject.spin(demo.mcp_url)
        await sigterm_sent(tmp_path, within=60)
        assert first.proc is not None
        first.proc.kill()
        first.proc.wait(10)
        assert not gone(pid), "killing the watchdog should leave the spinning worker behind"
        await second.start()
        status = await second.wait_status(
            lambda s: any(e["kind"] == "recycle_resumed" for e in s["events"]), within=GRACE + 20
        )
        resumed = next(e for e in status["events"] if e["kind"] == "recycle_resumed")
        print(f"\nresumed: {resumed['message']}")
        assert resumed["worker"] == pid
        assert gone(pid)
        steps = [s["step"] for s in resumed["evidence"]["recycle"]["steps"]]
        assert steps[0] == "resumed"
        assert "SIGKILL" in steps
        assert any(e["kind"] == "recycle_started" for e in status["events"]), "the earlier events came back"
    except BaseException:
        print(f"--- first watchdog ---\n{first.log()[-4000:]}\n--- second ---\n{second.log()[-4000:]}")
        raise
    finally:
        first.stop()
        second.stop()
