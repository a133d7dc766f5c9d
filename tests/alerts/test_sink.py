"""The Alertmanager sink against a real Alertmanager (and a scripted receiver for the retry rules)."""

from __future__ import annotations

import base64
import dataclasses
import ssl
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from examples.demo.harness import free_port
from examples.demo.sidecar import Webhooks
from tests.alerts.harness import Alertmanager as AlertmanagerServer
from tests.alerts.harness import alertmanager_config, make_certificates, running_alertmanager
from watchdog.actions.alertmanager import AlertSink, alert_key, make_alert
from watchdog.agent.metrics import AlertmanagerMetrics
from watchdog.config import Alertmanager, Duration, FilePath

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(90)]


def _alert(name: str = "cancel-delivery-spin", pid: int = 4242) -> tuple[str, Any]:
    return alert_key(name, "demo", pid), make_alert(
        alertname=name,
        severity="critical",
        target="demo",
        worker=pid,
        instance="pod-a",
        summary=f"{name} on demo worker {pid}",
        description="A worker burns a core.",
        advice="Recycle it.",
        evidence="cpu_percent 99.8",
    )


def _sink(url: str, metrics: AlertmanagerMetrics, **kw: Any) -> AlertSink:
    return AlertSink(
        [Alertmanager(url=url, timeout=Duration(2.0))],
        resend_interval=kw.pop("resend_interval", 1.0),
        external_labels={"namespace": "shop"},
        generator_url="http://pod-a:9464/v1/status",
        metrics=metrics,
        **kw,
    )


def _value(reg: CollectorRegistry, name: str, url: str) -> float:
    return reg.get_sample_value(name, {"alertmanager": url}) or 0.0


async def _wait_alerts(am: AlertmanagerServer, name: str, pred: Any, within: float) -> list[dict[str, Any]]:
    """Poll Alertmanager's API (it has no push channel to a test) until ``pred`` holds, for ``within`` seconds."""
    with anyio.fail_after(within):
        while not pred(found := await am.alerts(name)):  # noqa: ASYNC110 - see docstring
            await anyio.sleep(0.05)
    return found


@pytest.fixture
async def receiver() -> AsyncIterator[Webhooks]:
    async with Webhooks().serve() as hooks:
        yield hooks


async def test_fired_alert_is_visible_with_its_labels_and_resolved_is_delivered(receiver: Webhooks) -> None:
    cfg = alertmanager_config(receiver_url=receiver.url)
    async with running_alertmanager(cfg) as am, aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
        reg = CollectorRegistry()
        sink = _sink(am.url, AlertmanagerMetrics(reg))
        tg.start_soon(sink.run, http)
        key, alert = _alert()
        t0 = time.monotonic()
        sink.fire(key, alert)
        (seen,) = await _wait_alerts(am, "cancel-delivery-spin", lambda a: len(a) == 1, within=5)
        took = time.monotonic() - t0
        assert seen["labels"] == {
            "alertname": "cancel-delivery-spin",
            "severity": "critical",
            "target": "demo",
            "worker": "4242",
            "instance": "pod-a",
            "namespace": "shop",
        }
        assert seen["annotations"]["advice"] == "Recycle it."
        assert seen["annotations"]["evidence"] == "cpu_percent 99.8"
        assert seen["generatorURL"] == "http://pod-a:9464/v1/status"
        lifetime = datetime.fromisoformat(seen["endsAt"].replace("Z", "+00:00")) - datetime.fromisoformat(
            seen["startsAt"].replace("Z", "+00:00")
        )
        assert 3.5 <= lifetime.total_seconds() <= 4.5 + 2  # 4 x resend_interval from the latest send
        firing = await receiver.wait_for(lambda n: n["status"] == "firing", within=10)
        assert firing["alerts"][0]["labels"]["worker"] == "4242"
        assert sink.resolve(key)
        t1 = time.monotonic()
        resolved = await receiver.wait_for(lambda n: n["status"] == "resolved", within=10)
        delivered = time.monotonic() - t1
        print(f"\nfire -> visible in Alertmanager {took * 1000:.0f} ms; resolve -> delivered {delivered:.2f} s")
        assert resolved["alerts"][0]["labels"]["alertname"] == "cancel-delivery-spin"
        assert _value(reg, "watchdog_alertmanager_alerts_sent_total", am.url) >= 2
        assert _value(reg, "watchdog_alertmanager_alerts_failed_total", am.url) == 0
        tg.cancel_scope.cancel()


async def test_alert_expires_by_itself_when_the_sender_stops(receiver: Webhooks) -> None:
    cfg = alertmanager_config(receiver_url=receiver.url)
    async with running_alertmanager(cfg) as am, aiohttp.ClientSession() as http:
        sink = _sink(am.url, AlertmanagerMetrics(CollectorRegistry()), resend_interval=0.5)
        key, alert = _alert()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sink.run, http)
            sink.fire(key, alert)
            await _wait_alerts(am, "cancel-delivery-spin", lambda a: len(a) == 1, within=5)
            tg.cancel_scope.cancel()  # the watchdog stops sending (hung, killed, partitioned)
        stopped = time.monotonic()
        resolved = await receiver.wait_for(lambda n: n["status"] == "resolved", within=15)
        took = time.monotonic() - stopped
        print(f"\nsender stopped -> Alertmanager resolved the alert by itself after {took:.1f} s (endsAt 2 s)")
        assert resolved["alerts"][0]["labels"]["worker"] == "4242"
        assert await am.alerts("cancel-delivery-spin") == []


async def test_alertmanager_down_never_blocks_and_alerts_arrive_once_it_is_back(receiver: Webhooks) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    reg = CollectorRegistry()
    sink = _sink(url, AlertmanagerMetrics(reg), retries=1, backoff=0.05)
    async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
        tg.start_soon(sink.run, http)
        key, alert = _alert()
        t0 = time.perf_counter()
        for pid in range(100):  # the caller never waits, whatever the Alertmanager does
            sink.fire(alert_key("x", "demo", pid), _alert("x", pid)[1])
        sink.fire(key, alert)
        fire_cost = (time.perf_counter() - t0) / 101
        with anyio.fail_after(10):
            while _value(reg, "watchdog_alertmanager_alerts_failed_total", url) < 1:  # noqa: ASYNC110 - a counter
                await anyio.sleep(0.05)
        errors = _value(reg, "watchdog_alertmanager_request_errors_total", url)
        assert errors >= 2  # the first attempt and its retry
        cfg = alertmanager_config(receiver_url=receiver.url)
        async with running_alertmanager(cfg, port=port) as am:
            back = time.monotonic()
            await _wait_alerts(am, "cancel-delivery-spin", lambda a: len(a) == 1, within=10)
            arrived = time.monotonic() - back
            await _wait_alerts(am, "x", lambda a: len(a) == 100, within=10)  # the other batches, in their turn
        print(f"\nAlertmanager down: fire() {fire_cost * 1e6:.0f} us each, {errors:.0f} failed requests; "
              f"back -> alerts arrived in {arrived:.2f} s (resend 1 s)")  # fmt: skip
        tg.cancel_scope.cancel()


class Scripted:
    """An Alertmanager stand-in answering with the given statuses in order, then 200."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.posts: list[list[dict[str, Any]]] = []
        self.auth: list[str | None] = []
        self.done = anyio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append(await request.json())
        self.auth.append(request.headers.get("Authorization"))
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.done.set()
        return web.Response(status=status, text="scripted")


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(("statuses", "sent", "failed"), [([503, 429], 1, 0), ([400], 0, 1)])
async def test_retries_on_5xx_and_429_only(statuses: list[int], sent: int, failed: int) -> None:
    scripted = Scripted(list(statuses))
    app = web.Application()
    app.router.add_post("/api/v2/alerts", scripted.handle)
    runner, url = await _serve(app)
    reg = CollectorRegistry()
    sink = _sink(url, AlertmanagerMetrics(reg), backoff=0.01, resend_interval=60)
    try:
        async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
            tg.start_soon(sink.run, http)
            sink.fire(*_alert())
            with anyio.fail_after(10):
                while (  # noqa: ASYNC110 - waiting on counters the sender moves
                    _value(reg, "watchdog_alertmanager_alerts_sent_total", url)
                    + _value(reg, "watchdog_alertmanager_alerts_failed_total", url)
                    < 1
                ):
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
    finally:
        await runner.cleanup()
    assert _value(reg, "watchdog_alertmanager_alerts_sent_total", url) == sent
    assert _value(reg, "watchdog_alertmanager_alerts_failed_total", url) == failed
    assert len(scripted.posts) == len(statuses) + sent
    assert _value(reg, "watchdog_alertmanager_request_errors_total", url) == len(statuses)


def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    reg = CollectorRegistry()
    url = "http://127.0.0.1:9"
    sink = _sink(url, AlertmanagerMetrics(reg), maxsize=2)
    for pid in (1, 2, 3):
        sink.fire(*_alert(pid=pid))
    sink.fire(*_alert(pid=3))  # a newer state of a queued alert replaces it: nothing more is dropped
    assert _value(reg, "watchdog_alertmanager_alerts_dropped_total", url) == 1
    assert reg.get_sample_value("watchdog_alertmanager_active_alerts") == 3
    assert sink.resolve(alert_key("cancel-delivery-spin", "demo", 1))
    assert not sink.resolve(alert_key("cancel-delivery-spin", "demo", 1))
    assert sink.resolve_where(lambda k: k.endswith("/demo/3")) == 1
    assert list(sink.active()) == [alert_key("cancel-delivery-spin", "demo", 2)]


BASIC_PASSWORD = "am-basic-password"
BASIC_HASH = "$2b$04$Jcis2RGn5sSV5fOv9btKt.2.dW4bNPzCTc1tBDB.DbdW6sZKVHw/e"  # bcrypt of BASIC_PASSWORD


async def test_mutual_tls_and_basic_auth_against_a_real_alertmanager(tmp_path: Path, receiver: Webhooks) -> None:
    certs = make_certificates(tmp_path)
    web = {
        "tls_server_config": {
            "cert_file": str(certs["server.crt"]), "key_file": str(certs["server.key"]),
            "client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": str(certs["ca.crt"]),
        },
        "basic_auth_users": {"watchdog": BASIC_HASH},
    }  # fmt: skip
    tls = ssl.create_default_context(cafile=str(certs["ca.crt"]))
    tls.load_cert_chain(str(certs["client.crt"]), str(certs["client.key"]))
    auth = {"Authorization": "Basic " + base64.b64encode(f"watchdog:{BASIC_PASSWORD}".encode()).decode()}
    cfg = alertmanager_config(receiver_url=receiver.url)
    async with running_alertmanager(cfg, web=web, tls=tls, headers=auth) as am, aiohttp.ClientSession() as http:
        reg = CollectorRegistry()
        good = Alertmanager(
            url=am.url,
            ca_file=FilePath(str(certs["ca.crt"])),
            cert_file=FilePath(str(certs["client.crt"])),
            key_file=FilePath(str(certs["client.key"])),
            username="watchdog",
            password=BASIC_PASSWORD,
            timeout=Duration(2.0),
        )
        no_client_cert = dataclasses.replace(good, cert_file=None, key_file=None)
        wrong_password = dataclasses.replace(good, password="nope")
        regs = [reg, CollectorRegistry(), CollectorRegistry()]
        sinks = [
            AlertSink([m], resend_interval=60, metrics=AlertmanagerMetrics(r), retries=0)
            for m, r in zip((good, no_client_cert, wrong_password), regs, strict=True)
        ]
        async with anyio.create_task_group() as tg:
            for i, sink in enumerate(sinks):
                tg.start_soon(sink.run, http)
                sink.fire(*_alert(pid=i + 1))
            (seen,) = await _wait_alerts(am, "cancel-delivery-spin", lambda a: len(a) >= 1, within=10)
            with anyio.fail_after(10):  # the other two: refused by the TLS handshake, and by basic auth
                while any(_value(r, "watchdog_alertmanager_alerts_failed_total", am.url) < 1 for r in regs[1:]):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        assert await am.alerts("cancel-delivery-spin") == [seen]
        assert seen["labels"]["worker"] == "1"
        assert _value(reg, "watchdog_alertmanager_alerts_sent_total", am.url) == 1


async def test_the_bearer_token_file_is_read_at_each_send(tmp_path: Path) -> None:
    scripted = Scripted([])
    app = web.Application()
    app.router.add_post("/api/v2/alerts", scripted.handle)
    runner, url = await _serve(app)
    token = tmp_path / "token"
    token.write_text("first\n")
    sink = AlertSink([Alertmanager(url=url, bearer_token_file=FilePath(str(token)))], resend_interval=60)
    try:
        async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
            tg.start_soon(sink.run, http)
            for n, value in enumerate(("first", "rotated")):
                token.write_text(value + "\n")
                sink.fire(*_alert(pid=n + 1))
                with anyio.fail_after(10):
                    while len(scripted.auth) <= n:  # noqa: ASYNC110 - waiting on the receiver's record
                        await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
    finally:
        await runner.cleanup()
    assert scripted.auth == ["Bearer first", "Bearer rotated"]
