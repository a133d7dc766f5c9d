"""The status page and the flame graphs as a person sees them: headless Chromium against a running watchdog
watching the demo while one worker spins and is recycled. Screenshots are kept under ``.artifacts/``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from examples.demo import inject
from examples.demo.harness import REPO, DemoServer
from tests.browser import chromium, dump_dom, screenshot
from tests.conftest import py_spy_path
from tests.sidecar.harness import Webhooks, demo_config, watching

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(240)]


def rows(dom: str, cls: str) -> list[str]:
    return re.findall(rf'<tr class="{cls}[^"]*"[^>]*>.*?</tr>', dom, re.S)


async def test_the_page_shows_the_spin_firing_then_the_recycle_with_its_flame_graph(
    demo: DemoServer, tmp_path: Path
) -> None:
    py_spy_path()
    chromium()
    # The default pack, its spin rule's cross-check on the loop thread's demand lowered from 80 % to 5 %: this test
    # judges the page, and on a 2-core machine shared with other test runs the demand of a spinning worker dips
    # below 80 % now and then, which resolves the rule before Chromium has the page (seen: 68 % mid-recycle).
    pack = (REPO / "rules" / "default.yaml").read_text()
    rule = pack.index("name: cancel-delivery-spin")
    demand = pack.index("loop_runnable_percent > 80", rule)
    relaxed = pack[:demand] + "loop_runnable_percent > 5" + pack[demand + len("loop_runnable_percent > 80") :]
    (tmp_path / "rules.yaml").write_text(relaxed)
    cfg = demo_config(
        demo,
        None,
        target={
            "probes": [str(REPO / "probes" / "demo-echo.yaml")],
            "probe_url": demo.mcp_url,
            # a drain step the spinning worker ignores (SIGWINCH is ignored by default) keeps it on the page,
            # firing, for up to 30 s after the recycle starts: long enough for Chromium on a loaded machine
            "recycle": {"drain_signal": "SIGWINCH", "drain_wait": "30s", "replacement_timeout": "30s"},
        },
        rules=[str(tmp_path / "rules.yaml")],
        flamegraphs={"dir": str(tmp_path / "flames"), "keep": 10},
    )
    async with Webhooks().serve() as hooks:
        cfg["notify"] = {"webhooks": [{"url": hooks.url, "retries": 1}]}
        async with watching(cfg) as wd:
            pid = await inject.spin(demo.mcp_url)
            # during the spin: the rule fires on that worker (awaited through /v1/status, bounded)
            await wd.wait_status(lambda s: _firing(s, pid), within=60)
            dom = dump_dom(wd.url + "/")
            spinning = next((r for r in rows(dom, "worker") if f'data-pid="{pid}"' in r), None)
            assert spinning is not None, dom[-4000:]
            assert 'class="worker firing"' in spinning
            assert 'data-rule="cancel-delivery-spin"' in spinning
            assert "st-firing" in spinning
            assert len(rows(dom, "worker")) == 2
            fired = [r for r in rows(dom, "event") if f'data-worker="{pid}"' in r and 'data-kind="rule_firing"' in r]
            assert fired
            assert "cancel-delivery-spin firing" in fired[0]
            assert 'class="spark"' in dom  # the last minutes of CPU, RSS and fds
            during = screenshot(wd.url + "/", "status-page-spin.png", size=(1280, 1100))
            # the same picture in a terminal, and the document itself with --json
            term = await _status_cli("--url", wd.url)
            assert term.returncode == 1, term.stderr
            assert "cancel-delivery-spin: firing" in term.stdout
            assert str(pid) in term.stdout
            js = await _status_cli("--url", wd.url, "--json")
            assert pid in {w["pid"] for w in json.loads(js.stdout)["targets"][0]["workers"]}

            # after the recycle: the rule's event and the recycle's carry the flame graph of the look that fired
            # (the events' own), the notification the diagnose action's; both open in Chromium with the spin in them
            note = await hooks.wait_for(lambda n: n["worker"] == pid and "recycle" in n["evidence"], within=90)
            diagnosed = note["evidence"]["diagnosis"]["flamegraph"]
            assert diagnosed.startswith("/v1/flamegraphs/")
            dom = dump_dom(wd.url + "/")
            links = {}
            for kind in ("rule_firing", "recycle"):
                row = next(r for r in rows(dom, "event") if f'data-kind="{kind}"' in r and f'data-worker="{pid}"' in r)
                link = re.search(r'<a class="flame" href="([^"]+)"', row)
                assert link is not None, row
                links[kind] = "/" + link.group(1)
            firing = next(e for e in (await wd.status())["events"] if e["kind"] == "rule_firing" and e["worker"] == pid)
            assert firing["evidence"]["flamegraph"] == links["rule_firing"]
            for url in (links["rule_firing"], links["recycle"], diagnosed):
                flame = dump_dom(f"{wd.url}{url}#q=_deliver_cancellation")
                assert f"worker {pid}" in flame
                assert "_deliver_cancellation" in flame
                assert "k-spin hit" in flame
            shot = screenshot(f"{wd.url}{diagnosed}", "flamegraph-spin-worker.png", size=(1280, 900))
            print(f"\npage during the spin: {during}; flame graphs of worker {pid}: {links} and {diagnosed} ({shot})")


async def _status_cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "watchdog", "status", *args]
    return await anyio.to_thread.run_sync(
        lambda: subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=REPO, check=False)
    )


def _firing(status: dict[str, object], pid: int) -> bool:
    for t in status["targets"]:  # type: ignore[attr-defined]
        for w in t["workers"]:
            if w["pid"] == pid and any(r["state"] == "firing" for r in w["rules"]):
                return True
    return False
