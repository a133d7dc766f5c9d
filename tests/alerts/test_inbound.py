"""POST /v1/alertmanager: what is refused (and how), what is ignored (and counted), what is acted on, once."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from examples.demo.harness import free_port
from watchdog.actions.inbound import AlertRequest, BadWebhook, Inbound, authorized, parse_webhook
from watchdog.agent.alerting import Alerting
from watchdog.agent.loop import Agent
from watchdog.agent.server import make_app
from watchdog.config import load_config
from watchdog.errors import ConfigErrors
from watchdog.rules import LoadedRules

pytestmark = pytest.mark.anyio
TOKEN = "s3cret-token"


def alert(status: str = "firing", fingerprint: str = "f1", starts: str = "2026-12-01T10:00:00Z", **labels: str) -> Any:
    return {
        "status": status,
        "labels": {"alertname": "McpHighLatency", **labels},
        "annotations": {"summary": "slow"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint,
    }


def webhook(*alerts: Any, version: str = "4") -> dict[str, Any]:
    return {
        "version": version,
        "receiver": "mcp-watchdog",
        "status": "firing",
        "alerts": list(alerts),
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
    }


def test_authorization_is_bearer_or_basic_password() -> None:
    basic = base64.b64encode(f"alertmanager:{TOKEN}".encode()).decode()
    assert authorized(f"Bearer {TOKEN}", TOKEN)
    assert authorized(f"Basic {basic}", TOKEN)
    for bad in (None, "", "Bearer", "Bearer wrong", f"Token {TOKEN}", "Basic !!!", f"bearer {TOKEN}x"):
        assert not authorized(bad, TOKEN), bad
    assert not authorized("Bearer ", "")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "expected a JSON object"),
        (json.dumps(webhook(version="3")).encode(), "version \"4\", got '3'"),
        (json.dumps({"version": "4", "alerts": {}}).encode(), "'alerts' must be a list"),
        (json.dumps(webhook({**alert(), "labels": {"a": 1}})).encode(), "alerts[0].labels must map names to strings"),
        (json.dumps(webhook({**alert(), "startsAt": None})).encode(), "alerts[0].startsAt must be a string"),
    ],
)
def test_malformed_webhooks_say_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(BadWebhook, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_webhook(body)


def test_only_new_firing_alerts_for_this_instance_and_a_known_target_become_requests() -> None:
    inbound = Inbound(["demo"], ["pod-a", "10.0.0.5"])
    payload = webhook(
        alert(fingerprint="ok1", target="demo"),
        alert(fingerprint="ok2", target="demo", watchdog_action="recycle", pid="41", pod="pod-a"),
        alert(fingerprint="ok3", target="demo", instance="10.0.0.5:8000"),
        alert(fingerprint="ok4", target="demo", instance="10.9.9.9:8000", pod="pod-a"),
        alert("resolved", fingerprint="r", target="demo"),
        alert(fingerprint="p", target="demo", pod="pod-b"),
        alert(fingerprint="i", target="demo", instance="10.0.0.6:8000"),
        alert(fingerprint="u", target="other"),
        alert(fingerprint="m"),
        alert(fingerprint="a", target="demo", watchdog_action="delete"),
        alert(fingerprint="n", target="demo", pid="-1"),
    )
    got, skipped = inbound.requests(payload)
    assert [(r.fingerprint, r.action, r.pid) for r in got] == [
        ("ok1", "diagnose", None),
        ("ok2", "recycle", 41),
        ("ok3", "diagnose", None),
        ("ok4", "diagnose", None),
    ]
    assert got[0].summary == "Alertmanager alert McpHighLatency asks to diagnose demo the target"
    assert dict(skipped) == {"resolved": 1, "other_instance": 2, "unknown_target": 1, "invalid": 3}
    # Alertmanager re-sends the group every group_interval: the same (fingerprint, startsAt) is acted on once
    again, skipped = inbound.requests(payload)
    assert again == []
    assert skipped["duplicate"] == 4
    # the same alert firing anew (another startsAt) is a new request
    anew, _ = inbound.requests(webhook(alert(fingerprint="ok1", starts="2026-12-01T11:00:00Z", target="demo")))
    assert len(anew) == 1


@pytest.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[tuple[str, Agent, list[AlertRequest]]]:
    (tmp_path / "watchdog.yaml").write_text(
        f"targets: [{{name: demo, match: {{pid: 1}}}}]\nserver: {{token: {TOKEN}, alertmanager_webhook: true}}\n"
        "notify: {external_labels: {pod: pod-a}}\n"
    )
    cfg = load_config(tmp_path / "watchdog.yaml")
    agent = Agent(cfg, LoadedRules())
    alerting = Alerting(cfg, agent.metrics)
    assert alerting.inbox is not None
    acted: list[AlertRequest] = []

    async def act(request: AlertRequest) -> None:
        acted.append(request)

    runner = web.AppRunner(make_app(agent, inbox=alerting.inbox))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(alerting.inbox.run, act)
            yield f"http://127.0.0.1:{port}/v1/alertmanager", agent, acted
            tg.cancel_scope.cancel()
    finally:
        await runner.cleanup()


def test_the_endpoint_without_a_token_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "watchdog.yaml").write_text(
        "targets: [{name: demo, match: {pid: 1}}]\nserver: {alertmanager_webhook: true}\n"
    )
    with pytest.raises(ConfigErrors, match=r"server\.token.*needs a token"):
        load_config(tmp_path / "watchdog.yaml")


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 64 * 1024):
        yield data[i : i + 64 * 1024]


BIG = json.dumps(webhook(alert(target="demo", pad="x" * (1024 * 1024)))).encode()
GOOD = json.dumps(webhook(alert(target="demo"))).encode()
BEARER = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
BAD_REQUESTS: list[tuple[str, dict[str, str], bytes, int, str]] = [
    ("no credentials", {"Content-Type": "application/json"}, GOOD, 401, "unauthorized"),
    ("wrong bearer token", {**BEARER, "Authorization": "Bearer nope"}, GOOD, 401, "unauthorized"),
    (
        "wrong basic password",
        {**BEARER, "Authorization": "Basic " + base64.b64encode(b"am:nope").decode()},
        GOOD,
        401,
        "unauthorized",
    ),
    ("text/plain body", {**BEARER, "Content-Type": "text/plain"}, GOOD, 415, "unsupported_media_type"),
    ("body over 1 MiB", BEARER, BIG, 413, "too_large"),
    ("body over 1 MiB, chunked", BEARER, b"chunked", 413, "too_large"),
    ("malformed JSON", BEARER, b'{"version": "4", "alerts": [', 400, "bad_request"),
    ("version 3", BEARER, json.dumps(webhook(alert(target="demo"), version="3")).encode(), 400, "bad_request"),
    ("alerts not a list", BEARER, b'{"version": "4", "alerts": "all"}', 400, "bad_request"),
    ("resolved alert", BEARER, json.dumps(webhook(alert("resolved", target="demo"))).encode(), 202, "resolved"),
    (
        "alert for pod-b",
        BEARER,
        json.dumps(webhook(alert(target="demo", pod="pod-b"))).encode(),
        202,
        "other_instance",
    ),
    ("unknown target", BEARER, json.dumps(webhook(alert(target="nope"))).encode(), 202, "unknown_target"),
    ("no target label", BEARER, json.dumps(webhook(alert())).encode(), 202, "invalid"),
    (
        "watchdog_action=delete",
        BEARER,
        json.dumps(webhook(alert(target="demo", watchdog_action="delete"))).encode(),
        202,
        "invalid",
    ),
]


async def test_bad_requests_are_refused_or_ignored_counted_and_never_acted_on(
    endpoint: tuple[str, Agent, list[AlertRequest]],
) -> None:
    url, agent, acted = endpoint
    reg = agent.metrics.registry
    rows = []
    async with aiohttp.ClientSession() as http:
        for name, headers, body, status, outcome in BAD_REQUESTS:
            before = reg.get_sample_value("watchdog_alertmanager_inbound_total", {"outcome": outcome}) or 0
            data = _chunks(BIG) if body == b"chunked" else body  # no Content-Length: sent in chunks
            async with http.post(url, data=data, headers=headers) as r:
                text = await r.text()
                assert r.status == status, (name, text)
            after = reg.get_sample_value("watchdog_alertmanager_inbound_total", {"outcome": outcome}) or 0
            assert after == before + 1, name
            rows.append(f"| {name} | {status} | {outcome} | {json.loads(text).get('error', '')[:60]} |")
        # a good request afterwards: acted on once, although Alertmanager sends the group again
        for _ in range(3):
            t0 = time.perf_counter()
            async with http.post(url, data=GOOD, headers=BEARER) as r:
                assert r.status == 202
            assert time.perf_counter() - t0 < 0.1  # answered at once; acting is the agent's, later
    with anyio.fail_after(5):
        while not acted:  # noqa: ASYNC110 - the inbox hands the request over in its own task
            await anyio.sleep(0.01)
    await anyio.sleep(0.2)  # a second action, if the dedupe were broken, would have been handed over by now
    print("\n| request | status | counted as | message |\n|---|---|---|---|\n" + "\n".join(rows))
    assert [(r.target, r.action, r.pid) for r in acted] == [("demo", "diagnose", None)]
    assert reg.get_sample_value("watchdog_alertmanager_inbound_total", {"outcome": "duplicate"}) == 2
