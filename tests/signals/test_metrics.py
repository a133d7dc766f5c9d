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
# HELP watchdog_guard_limiter_in_flight Callers holding a slot.
# TYPE watchdog_guard_limiter_in_flight gauge
watchdog_guard_limiter_in_flight{name="db",pid="101"} 1.0
watchdog_guard_limiter_in_flight{name="downstream",pid="101"} 2.0
# HELP watchdog_guard_connections_active Requests in progress.
# TYPE watchdog_guard_connections_active gauge
watchdog_guard_connections_active{name="http",pid="102"} 4.0
"""


def test_in_flight_gauges_by_pid() -> None:
    samples = parse(TEXT)
    assert by_pid(samples, IN_FLIGHT) == {
        # two limiters in one worker stay two series
        101: {
            "demo_downstream_in_flight": 0.0,
            'watchdog_guard_limiter_in_flight{name="db"}': 1.0,
            'watchdog_guard_limiter_in_flight{name="downstream"}': 2.0,
        },
        102: {"demo_downstream_in_flight": 3.0},  # connections_active is not work in flight (see IN_FLIGHT)
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


def test_label_values_with_escapes_match_as_prometheus_text_writes_them() -> None:
    from watchdog.agent.sources import Scrape
    from watchdog.signals.catalog import parse_ref

    text = 'demo_errors{msg="say \\"hi\\"",path="C:\\\\tmp",note="a\\nb",pid="7"} 3.0\n'
    ref = parse_ref('metric:demo_errors{msg="say \\"hi\\"",path="C:\\\\tmp",note="a\\nb"}')
    assert dict(ref.labels) == {"msg": 'say "hi"', "path": "C:\\tmp", "note": "a\nb"}
    assert Scrape(parse(text)).value(ref, 7) == 3.0


def test_a_label_matcher_other_than_equals_is_a_clear_error() -> None:
    from watchdog.signals.catalog import parse_ref

    with pytest.raises(ValueError, match="a label matcher compares with '=' only, got '>'"):
        parse_ref('metric:demo_errors{code>"499"}')
