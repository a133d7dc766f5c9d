"""What each producer emits is exactly what the catalogue declares for it: names cannot drift between the
code that produces a signal and the rules that read it (they did once, 6e78692)."""

from __future__ import annotations

import re

from tests.diagnose.recorded import evidence
from watchdog.agent.sources import ProcessReading, Scrape, process_signals
from watchdog.agent.stacks import signals_of
from watchdog.agent.world import ProbeRun, TargetState, World
from watchdog.config import Config, Match, Target
from watchdog.diagnose.verdicts import main_view, state_verdict, thread_views
from watchdog.discovery import TargetView, WorkerId
from watchdog.rules import RuleEngine
from watchdog.signals.catalog import declared, parse_ref
from watchdog.signals.metrics import MetricSample
from watchdog.signals.series import SignalStore


def test_process_signals() -> None:
    store = SignalStore()
    for t in range(3):
        store.record(float(t), {"rss_bytes": 100.0 + t * 10, "open_fds": 10.0 + t}, stale_after=5)
    before = ProcessReading(2.0, 1.0, 120, 12, 3, 2, loop_outside_selector=False, loop_runnable_seconds=1.0)
    now = ProcessReading(3.0, 1.5, 130, 13, 3, 2, loop_outside_selector=False, loop_runnable_seconds=1.9)
    out = process_signals(store, before, now, memory_limit=1000, memory_window=60, fd_window=60)
    assert set(out) == declared("process")


def test_stack_signals() -> None:
    ev = evidence("spin-py311", cpu=99)
    verdict = state_verdict(ev)
    main = main_view(thread_views(ev), ev.info.pid)
    out = signals_of(verdict, main, {"work": re.compile("crunch")})
    assert {k for k in out if not k.startswith("stack_share:")} == declared("stacks")
    assert {k for k in out if k.startswith("stack_share:")} == {"stack_share:work"}


def world_of_one() -> tuple[World, TargetState]:
    target = Target(name="demo", match=Match(pid=1))
    world = World(Config(targets=[target]), RuleEngine([]))
    ts = world.targets["demo"]
    world.sync(ts, TargetView("demo", workers=[WorkerId(10, 1.0)]), lambda pid: None)
    return world, ts


def test_probe_and_target_signals() -> None:
    world, ts = world_of_one()
    owner, values = world.record_probe(ts, ProbeRun(True, 10, "passed", 0.01))
    assert owner is not None
    assert set(values) == declared("probes")
    assert set(ts.signals) == declared("target")


def test_the_derived_metric_signal() -> None:
    world, ts = world_of_one()
    ts.scrape = Scrape(
        [
            MetricSample("watchdog_guard_limiter_in_flight", {"name": "db", "pid": "10"}, 4.0),
            MetricSample("watchdog_guard_limiter_limit", {"name": "db", "pid": "10"}, 8.0),
        ]
    )
    ts.scraped_at = 0.0
    (name,) = declared("metrics")
    ws = next(iter(ts.workers.values()))
    assert world.lookup(ts, ws, 0.0)(parse_ref(name)) == 0.5
