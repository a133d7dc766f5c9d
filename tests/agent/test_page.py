"""The status page rendered from a status document: what it shows, and that hostile values stay text."""

from __future__ import annotations

import re
from typing import Any

from watchdog.agent.page import render_page, sparkline

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def status(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": "1.0",
        "dry_run": False,
        "uptime_seconds": 12.5,
        "rules": ["cancel-delivery-spin", EVIL],
        "targets": [
            {
                "name": "demo",
                "problem": EVIL,
                "metrics_error": None,
                "signals": {"target_workers": 2.0},
                "last_probe": {
                    "ok": False,
                    "worker": 11,
                    "reason": EVIL,
                    "latency": 0.25,
                    "probes": [
                        {
                            "probe": "echo",
                            "phases": [{"name": "tools/call", "ok": False, "latency_s": 0.2, "error": EVIL}],
                        }
                    ],
                },
                "budget": {"recycles_in_window": 1, "max_recycles": 3},
                "workers": [
                    {
                        "pid": 11,
                        "signals": {"cpu_percent": 99.0, "rss_bytes": 100 * 2**20, "open_fds": 12.0, EVIL: 1.0},
                        "stack_error": EVIL,
                        "process_error": None,
                        "stack_verdict": {"kind": "spin", "summary": "event loop spinning in anyio"},
                        "rules": [{"rule": "cancel-delivery-spin", "state": "firing", "values": {"cpu_percent": 99}}],
                    },
                    {
                        "pid": 12,
                        "signals": {},
                        "stack_error": None,
                        "process_error": None,
                        "stack_verdict": None,
                        "rules": [],
                    },
                ],
                "rules": [],
            }
        ],
        "events": [
            {
                "id": 1,
                "time": 1.8e9,
                "kind": "rule_firing",
                "severity": "critical",
                "target": "demo",
                "worker": 11,
                "rule": "cancel-delivery-spin",
                "message": EVIL,
                "evidence": {"flamegraph": "/v1/flamegraphs/a.html"},
            },
            {
                "id": 2,
                "time": 1.8e9 + 5,
                "kind": "recycle",
                "severity": "info",
                "target": "demo",
                "worker": 11,
                "rule": "cancel-delivery-spin",
                "message": "recycled",
                "evidence": {"recycle": {"outcome": "recycled", "steps": [{"step": "SIGTERM", "at": 0.1}]}},
            },
        ],
    }
    doc.update(over)
    return doc


def test_the_page_shows_workers_rules_events_probe_phases_and_flame_links() -> None:
    flames = [{"name": "b.html", "url": "/v1/flamegraphs/b.html", "worker": 11, "why": "diagnose action"}]
    hist = {"demo": {11: {"cpu_percent": [(60.0, 10.0), (30.0, 50.0), (0.0, 99.0)]}}}
    page = render_page(status(), history=hist, flames=flames)
    workers = re.findall(r'<tr class="worker[^"]*" data-pid="(\d+)"', page)
    assert workers == ["11", "12"]
    assert '<tr class="worker firing" data-pid="11"' in page
    assert 'data-rule="cancel-delivery-spin"' in page
    assert "99 %" in page
    assert "100 MiB" in page
    assert "tools/call" in page
    assert 'href="v1/flamegraphs/a.html"' in page  # the event's own flame graph
    assert 'href="v1/flamegraphs/b.html"' in page  # the worker's, from the store
    assert page.index('data-kind="recycle"') < page.index('data-kind="rule_firing"')  # newest first
    assert 'data-signal="cpu_percent"' in page
    assert "SIGTERM at 0.1 s" in page


def test_hostile_values_are_text_never_markup() -> None:
    page = render_page(status())
    assert "<script>alert" not in page
    assert "<img" not in page
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 6
    # the page's only script is its own refresh
    assert page.count("<script>") == 1


def test_sparkline_needs_two_points_and_spans_the_box() -> None:
    assert sparkline("cpu_percent", [(0.0, 1.0)]) == ""
    svg = sparkline("rss_bytes", [(120.0, 2**20), (60.0, 2**21), (0.0, 2**22)])
    xs = [float(x) for x in re.findall(r"([\d.]+),[\d.]+", svg)]
    assert min(xs) == 1.0
    assert max(xs) == 119.0
    assert "1 MiB to 4 MiB, now 4 MiB" in svg


def test_downsample_keeps_the_ends_and_at_most_the_limit() -> None:
    from watchdog.agent.history import downsample

    pts = [(float(100 - i), float(i)) for i in range(101)]
    few = downsample(pts, 10)
    assert len(few) == 10
    assert few[0] == pts[0]
    assert few[-1] == pts[-1]
    assert downsample(pts[:5], 10) == pts[:5]
