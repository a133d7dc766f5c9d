"""The sidecar with the bundled probes on healthy servers nobody here wrote: a minute, and no rule may fire.

One ``watchdog run`` watches five peers at once (the TypeScript reference server over streamable HTTP and SSE,
FastMCP stateful with an event store, over SSE, and under gunicorn with 2 workers), probing each every 2 s with
``probes/tools-list.yaml`` (and, where the tool fits, ``probes/demo-echo.yaml``). This is the false alert storm of
issue 12 (priming events read as malformed answers) held to account: every probe passes, nothing fires.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from examples.demo.harness import REPO, free_port
from tests.probes.peers import FastMcpSetup, Peer, everything
from tests.sidecar.harness import Webhooks, watching

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(240)]

WATCH_S = 60.0
TOOLS_LIST = REPO / "probes" / "tools-list.yaml"
DEMO_ECHO = REPO / "probes" / "demo-echo.yaml"


def sse_copy(probe: Path, tmp: Path) -> str:
    """The bundled probe with ``transport: sse``: the same file a user copies for an SSE server."""
    data = yaml.safe_load(probe.read_text())
    data["mcp"]["transport"] = "sse"
    out = tmp / f"{probe.stem}-sse.yaml"
    out.write_text(yaml.safe_dump(data))
    return str(out)


async def test_a_minute_of_bundled_probes_on_healthy_peers_fires_no_rule(tmp_path: Path) -> None:
    peers: list[tuple[str, Peer, str, list[str]]] = [
        ("ts-http", everything("streamableHttp"), "self", [str(TOOLS_LIST)]),
        ("ts-sse", everything("sse"), "self", [sse_copy(TOOLS_LIST, tmp_path)]),
        (
            "fastmcp-event-store",
            FastMcpSetup("stateful+event-store", event_store=True).peer(),
            "self",
            [str(TOOLS_LIST), str(DEMO_ECHO)],
        ),
        ("fastmcp-sse", FastMcpSetup("sse", sse=True).peer(), "self", [sse_copy(TOOLS_LIST, tmp_path)]),
        (
            "fastmcp-gunicorn",
            FastMcpSetup("gunicorn stateless", stateless=True, workers=2).peer(),
            "children",
            [str(TOOLS_LIST), str(DEMO_ECHO)],
        ),
    ]
    with contextlib.ExitStack() as stack:
        for _, peer, _, _ in peers:
            stack.enter_context(peer)
        targets = [
            {
                "name": name,
                "match": {"pid": peer.proc.pid if peer.proc else 0},
                "workers": workers,
                "probes": probes,
                "probe_url": peer.url,
            }
            for name, peer, workers, probes in peers
        ]
        cfg: dict[str, Any] = {
            "targets": targets,
            "server": {"listen": f"127.0.0.1:{free_port()}"},
            "intervals": {"process": "1s", "stacks": "2s", "probes": "2s"},
            "log": {"format": "json", "level": "info"},
        }
        async with Webhooks().serve() as hooks:
            cfg["notify"] = {"webhooks": [{"url": hooks.url, "retries": 1}]}
            async with watching(cfg) as wd:
                seen: dict[str, dict[tuple[float, ...], Any]] = {name: {} for name, *_ in peers}
                end = time.monotonic() + WATCH_S
                while time.monotonic() < end:  # the watchdog has no push channel for probe results: polled
                    for t in (await wd.status())["targets"]:
                        if (last := t["last_probe"]) is not None:
                            seen[t["name"]][tuple(p["started_at"] for p in last["probes"])] = last
                    await anyio.sleep(1.0)
                status = await wd.status()
    for name, results in seen.items():
        oks = [r["ok"] for r in results.values()]
        failures = [r["reason"] for r in results.values() if not r["ok"]]
        print(f"\n{name}: {sum(oks)} probe rounds passed, {len(failures)} failed {failures[:3]}")
        assert failures == [], name
        assert len(oks) >= 5, (name, results)
    kinds = [e["kind"] for e in status["events"]]
    assert "rule_firing" not in kinds
    assert hooks.received == []
