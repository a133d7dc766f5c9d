"""Every metric in METRICS is exported as declared (name, type, labels, pid), and the README lists them all."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests.guard.asgi import SlowApp, http_scope, request
from watchdog.guard import (
    METRICS,
    ConnectionLimit,
    Drain,
    LagMonitor,
    Limiter,
    SpinSentinel,
    cleanup_timeout,
    metrics_app,
    patch_cancel_delivery,
    unpatch_cancel_delivery,
)

pytestmark = pytest.mark.anyio

README = Path(__file__).resolve().parents[2] / "README.md"


async def test_every_declared_metric_is_exported_with_its_type_and_labels() -> None:
    registry = CollectorRegistry()
    limiter = Limiter(1, name="db", max_wait=0, registry=registry)
    app = SlowApp()
    app.release.set()
    limit = ConnectionLimit(app, 5, registry=registry)
    drain = Drain(limit, exit=False, registry=registry)
    lag = LagMonitor(interval=0.01, registry=registry)
    sentinel = SpinSentinel(interval=0.01, registry=registry)
    try:
        assert patch_cancel_delivery(registry=registry)
    finally:
        unpatch_cancel_delivery()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lag.run)
        tg.start_soon(sentinel.run)
        async with limiter:
            with pytest.raises(Exception, match="no free slot"):
                await limiter.acquire()
        with cleanup_timeout(0.01, name="close", registry=registry):
            await anyio.sleep(1)
        await request(drain, http_scope("/mcp"))
        await anyio.sleep(0.05)
        response = await request(metrics_app(registry), http_scope("/metrics", "GET"))
        tg.cancel_scope.cancel()
    assert response.status == 200
    assert response.headers[b"content-type"].startswith(b"text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
    pid = str(os.getpid())
    for spec in METRICS:
        family_name = spec.name.removesuffix("_total")
        assert family_name in families, f"{spec.name} is not exported"
        family = families[family_name]
        assert family.type == spec.kind, spec.name
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            labels = set(sample.labels) - {"le"}
            expected = {*spec.labels, "pid"} if spec.per_worker else set(spec.labels)
            assert labels == expected, (spec.name, sample.labels)
            if spec.per_worker:
                assert sample.labels["pid"] == pid


def test_names_follow_prometheus_conventions() -> None:
    names = [spec.name for spec in METRICS]
    assert len(names) == len(set(names))
    for spec in METRICS:
        assert spec.name.startswith("watchdog_guard_")
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name
        assert spec.help.endswith("."), spec.name


def test_the_readme_lists_every_metric() -> None:
    text = README.read_text()
    missing = [spec.name for spec in METRICS if f"`{spec.name}`" not in text]
    assert not missing, f"README.md does not list {missing}"
