"""FastMCP 4.x in the fault lab: a worker that spins and one that blocks, under gunicorn with 2 uvicorn workers.

The same faults as the demo's (``examples/demo``: a tool that swallows cancellation while its client walks away,
and a tool that blocks the loop with a synchronous sleep), driven by the same ``examples.demo.inject`` helpers,
against a server built on FastMCP instead of the official SDK's ``MCPServer``. ``watchdog diagnose`` must name
them, and ``watchdog run`` with the default rules must recycle exactly those workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from examples.demo import inject
from examples.demo.harness import REPO, free_port
from tests.conftest import py_spy_path
from tests.diagnose.test_targets import assert_valid, show
from tests.probes.peers import FastMcpSetup, Peer
from tests.sidecar.harness import Webhooks, watching
from watchdog.diagnose import diagnose

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(240)]

SETUP = FastMcpSetup("gunicorn stateless", stateless=True, workers=2)


@pytest.fixture
def lab() -> Iterator[Peer]:
    """A fresh FastMCP server per test: a spinning worker never recovers on its own."""
    py_spy_path()
    with SETUP.peer() as peer:
        yield peer


def master(peer: Peer) -> int:
    assert peer.proc is not None
    return peer.proc.pid


async def test_diagnose_singles_out_the_spinning_worker_and_sees_the_blocked_one(lab: Peer) -> None:
    spinning = await inject.spin(lab.url)
    report = await diagnose(master(lab))
    show(report)
    assert_valid(report)
    by_pid = {p.pid: p for p in report.processes}
    assert set(by_pid) == {master(lab), *lab.children()}
    assert by_pid[master(lab)].role == "master"
    for pid, p in by_pid.items():
        assert p.state is not None
        if pid == spinning:
            assert p.state.kind == "spin", p.state
        else:
            assert p.state.kind != "spin", (pid, p.state)
    assert report.exit_code == 1

    blocked = await inject.block(lab.url, 8.0)
    assert blocked != spinning  # the spinning worker still takes connections, but its loop answers slowly
    report = await diagnose(blocked)
    show(report)
    (p,) = report.processes
    assert p.state is not None
    assert p.state.kind == "blocked", p.state
    assert "block (" in p.state.summary
    assert "fastmcp_app.py" in p.state.summary


def config(lab: Peer, hooks: Webhooks) -> dict[str, Any]:
    """The default rules, the bundled echo probe (FastMCP's ``echo`` is the demo's: ``{text}`` -> ``pid``)."""
    target = {
        "name": "fastmcp",
        "match": {"pid": master(lab)},
        "workers": "children",
        "probes": [str(REPO / "probes" / "demo-echo.yaml")],
        "probe_url": lab.url,
        "recycle": {"grace": "3s", "replacement_timeout": "30s"},
    }
    return {
        "targets": [target],
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "intervals": {"process": "1s", "stacks": "2s", "probes": "2s"},
        "log": {"format": "json", "level": "info"},
        "notify": {"webhooks": [{"url": hooks.url, "retries": 1}]},
    }


async def test_watchdog_run_recycles_a_spinning_fastmcp_worker(lab: Peer) -> None:
    async with Webhooks().serve() as hooks, watching(config(lab, hooks)):
        other = [p for p in lab.children()]
        pid = await inject.spin(lab.url)
        other.remove(pid)
        note = await hooks.wait_for(lambda n: n["worker"] == pid and "recycle" in n["evidence"], within=90)
        rec = note["evidence"]["recycle"]
        print(f"\nFastMCP spin: worker {pid} -> {note['rule']}; {[s['step'] for s in rec['steps']]}")
        assert note["rule"] == "cancel-delivery-spin"
        assert note["evidence"]["stack_verdict"]["kind"] == "spin"
        assert rec["outcome"] == "recycled"
        assert f"probe passed on worker {rec['replacement']}" in rec["steps"][-1]["detail"]
        workers = lab.children()
        assert pid not in workers
        assert rec["replacement"] in workers
        assert other[0] in workers, "the healthy worker was touched"


async def test_watchdog_run_recycles_a_blocked_fastmcp_worker(lab: Peer) -> None:
    async with Webhooks().serve() as hooks, watching(config(lab, hooks)):
        pid = await inject.block(lab.url, 120.0)
        note = await hooks.wait_for(lambda n: n["worker"] == pid and "recycle" in n["evidence"], within=90)
        ev = note["evidence"]
        print(f"\nFastMCP block: worker {pid} -> {note['rule']}: {ev['stack_verdict']['summary']}")
        assert note["rule"] == "event-loop-blocked"
        assert ev["stack_verdict"]["summary"].startswith("event loop blocked in block (")
        assert "fastmcp_app.py" in ev["stack_verdict"]["summary"]
        assert ev["recycle"]["outcome"] == "recycled"
        assert pid not in lab.children()
