"""Prometheus text parsing, per-pid gauges, and a scrape of an endpoint that is down."""

from __future__ import annotations

import pytest

from examples.demo.harness import free_port
from watchdog.errors import MetricsUnavailable
from watchdog.signals.metrics import IN_FLIGHT, by_pid, parse, scrape

TEXT = """\
# HELP demo_downstream_in_flight Downstream calls in flight in this worker.
# TYPE demo_downstream_in_flight gauge
demo_downstream_in_flight{pid="101"} 0.0
demo_downstream_in_flight{pid="102"} 3.0
# HELP demo_tool_calls_total Tool calls started, by tool.
# TYPE demo_tool_calls_total counter
demo_tool_calls_total{tool="echo"} 5.0
"""


def test_in_flight_gauges_by_pid() -> None:
    samples = parse(TEXT)
    assert by_pid(samples, IN_FLIGHT) == {
        101: {"demo_downstream_in_flight": 0.0},
        102: {"demo_downstream_in_flight": 3.0},
    }
    assert by_pid(samples, "demo_tool_calls_total") == {}  # no pid label


def test_text_that_is_not_prometheus_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse("this is { not prometheus\n")


@pytest.mark.anyio
async def test_a_down_endpoint_is_unavailable_not_zero() -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"
    with pytest.raises(MetricsUnavailable) as err:
        await scrape(url, timeout=2.0)
    assert err.value.url == url
    assert url in str(err.value)
