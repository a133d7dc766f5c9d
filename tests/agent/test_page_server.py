"""The page and the flame graph routes on the real server: behind the token like /v1/status, names that cannot
leave the store, and headers that let nothing but the page's own markup run."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from examples.demo.harness import free_port
from tests.diagnose.recorded import recorded
from watchdog.agent import server
from watchdog.agent.flames import FlameStore
from watchdog.agent.wiring import build_agent, load_everything

pytestmark = pytest.mark.anyio


async def test_page_and_flame_graphs_need_the_token_and_stay_in_their_store(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    cfg = tmp_path / "watchdog.yaml"
    cfg.write_text(f"targets:\n  - name: me\n    match: {{pid: 1}}\n    workers: self\n"
                   f"server: {{listen: '{listen}', token: s3cret}}\n")  # fmt: skip
    store = FlameStore(tmp_path / "flames")
    rec = store.save("event-1", recorded("spin-py311"), meta={"worker": 1})
    assert rec is not None
    (tmp_path / "secret.html").write_text("not for you")
    agent = build_agent(load_everything(cfg), flames=store)
    runner = await server.start(agent, listen, flames=store)
    auth = {"Authorization": "Bearer s3cret"}
    got: dict[str, tuple[int, str, str]] = {}
    try:
        async with aiohttp.ClientSession() as http:
            for name, path, headers in [
                ("page, no token", "/", {}),
                ("flame, no token", rec.url, {}),
                ("page", "/", auth),
                ("list", "/v1/flamegraphs", auth),
                ("flame", rec.url, auth),
                ("unknown", "/v1/flamegraphs/nope.html", auth),
                ("escape", "/v1/flamegraphs/..%2Fsecret.html", auth),
            ]:
                async with http.get(f"http://{listen}{path}", headers=headers) as r:
                    got[name] = (r.status, r.headers.get("Content-Security-Policy", ""), await r.text())
    finally:
        await runner.cleanup()
    assert got["page, no token"][0] == 401
    assert got["flame, no token"][0] == 401
    status, csp, page = got["page"]
    assert status == 200
    assert "default-src 'none'" in csp
    assert "target me" in page
    assert rec.name in page  # listed among the flame graphs kept
    assert got["list"][0] == 200
    assert rec.name in got["list"][2]
    status, csp, flame = got["flame"]
    assert status == 200
    assert "default-src 'none'" in csp
    assert "_deliver_cancellation" in flame
    assert got["unknown"][0] == 404
    assert got["escape"][0] == 404
    assert "not for you" not in got["escape"][2]
