"""The signal store: bounded, missing data stays missing, and only the signals whose past is read keep it."""

from __future__ import annotations

from watchdog.agent.world import HISTORY, WorkerState
from watchdog.discovery import WorkerId
from watchdog.signals.series import SignalStore, slope


def test_only_signals_whose_past_is_read_keep_it() -> None:
    store = SignalStore(maxlen=100, history={"rss_bytes"})
    for t in range(50):
        store.record(float(t), {"rss_bytes": 1000.0 * t, "threads": 4.0, "gone": None}, stale_after=3.0)
    rss, threads = store.series("rss_bytes"), store.series("threads")
    assert rss is not None
    assert threads is not None
    assert len(rss) == 50
    assert slope(rss.since(40.0)) == 1000.0
    assert len(threads) == SignalStore.SHORT
    assert store.current("threads", 49.0) == 4.0
    assert store.current("threads", 53.0) is None  # stale: missing, not the last value forever
    assert store.series("gone") is None


def test_a_workers_store_keeps_the_history_the_slopes_and_the_charts_read() -> None:
    ws = WorkerState(WorkerId(1, 1.0), "demo")
    for t in range(100):
        ws.store.record(float(t), dict.fromkeys([*HISTORY, "loop_runnable_percent"], 1.0), stale_after=3.0)
    assert {"rss_bytes", "open_fds", "cpu_percent"} <= HISTORY
    assert all(len(ws.store.series(n) or []) == 100 for n in HISTORY)
    assert len(ws.store.series("loop_runnable_percent") or []) == SignalStore.SHORT
