"""When the sidecar looks at a worker's stacks: plain numbers and recorded windows, no processes."""

from __future__ import annotations

import dataclasses

from tests.diagnose.recorded import evidence
from watchdog.agent.stacks import Churn, LookSchedule, StackLooker
from watchdog.diagnose.spin import ScopeEvidence
from watchdog.diagnose.verdicts import ThreadView, main_view, thread_views
from watchdog.discovery import WorkerId


def run(s: LookSchedule, t: float, verdict: str = "busy", **kw: object) -> str | None:
    """Ask at ``t``; when a look is due, take it and report ``verdict``. Returns why it was due."""
    args = {"cpu": 95.0, "sockets": 8.0, "hot": True, "stalled": False, **kw}
    why = s.due(t, **args)  # type: ignore[arg-type]
    if why is not None:
        s.looked(t, verdict, cpu=args["cpu"], sockets=args["sockets"])  # type: ignore[arg-type]
    return why


def test_a_hot_healthy_worker_is_looked_at_less_and_less_often() -> None:
    s = LookSchedule(min_gap=5, baseline=60)
    looks = [t for t in range(0, 200) if run(s, t) is not None]
    assert looks == [0, 10, 30, 70, 130, 190]  # each healthy look doubles the gap: 10, 20, 40, then the 60 s cap


def test_a_suspicious_verdict_keeps_the_gap_short() -> None:
    s = LookSchedule(min_gap=5, baseline=60)
    looks = [t for t in range(0, 30) if run(s, t, verdict="spin") is not None]
    assert looks == [0, 5, 10, 15, 20, 25]


def test_an_unconfirmed_spin_suspect_is_looked_at_again_soon() -> None:
    s = LookSchedule(min_gap=5, baseline=60, suspect_gap=1, suspect_relooks=2)
    looks = [t for t in range(0, 40) if run(s, t, verdict="spin_suspect") is not None]
    assert looks == [0, 1, 2, 12, 32]  # two quick looks, then backed off: churn is not sampled without end
    s = LookSchedule(min_gap=5, baseline=60, suspect_gap=1)
    looks = [t for t in range(0, 12) if run(s, t, verdict="spin_suspect" if t == 0 else "spin") is not None]
    assert looks == [0, 1, 6, 11]  # once decided, back to the usual gap


def test_sockets_dropping_brings_the_next_look_forward() -> None:
    s = LookSchedule(min_gap=5, baseline=60)
    for t in range(0, 71):
        run(s, t)  # looks at 0, 10, 30, 70: the gap is now 60
    assert run(s, 72) is None
    assert run(s, 76, sockets=1.0) == "changed"  # load stopped: a spin left behind would show now
    assert [t for t in range(77, 140) if run(s, t, sockets=1.0)] == [136]  # healthy: the earned 60 s gap is back


def test_a_snap_back_that_finds_trouble_keeps_watching_closely() -> None:
    s = LookSchedule(min_gap=5, baseline=60)
    for t in range(0, 71):
        run(s, t)
    assert run(s, 76, sockets=1.0, verdict="blocked") == "changed"
    assert run(s, 81, sockets=1.0, verdict="busy") == "hot"  # trouble voids the earned gap: short again
    assert [t for t in range(82, 100) if run(s, t, sockets=1.0)] == [91]  # and it backs off from there


def test_cooling_down_resets_the_gap_and_stalls_bypass_it() -> None:
    s = LookSchedule(min_gap=5, baseline=60)
    for t in range(0, 71):
        run(s, t)
    assert s.due(71, cpu=45.0, sockets=8.0, hot=False, stalled=False) is None  # hovering: the gap stays
    assert run(s, 77) is None
    assert s.due(78, cpu=10.0, sockets=8.0, hot=False, stalled=False, cool=True) is None  # cooled down
    assert run(s, 79) == "hot"  # hot again after cooling: looked at once the short gap has passed
    assert [t for t in range(80, 140) if run(s, t)] == [139]  # it found healthy work: the earned gap is back
    assert run(s, 144, stalled=True, hot=False, cpu=0.0) == "stalled"
    assert s.due(145, cpu=0.0, sockets=8.0, hot=False, stalled=True) is None  # min_gap still holds


def window(name: str, deliveries: float) -> ThreadView:
    """The loop thread's view of a recorded window, with cancel deliveries in that share of its samples."""
    ev = evidence(name, cpu=99.0)
    view = main_view(thread_views(ev), ev.info.pid)
    assert view is not None
    return dataclasses.replace(view, spin_hits=round(deliveries * view.samples))


def serving(deliveries: float) -> ThreadView:
    return window("serving-demo-py311", deliveries)  # a demo worker under load: work advancing, scopes churning


def test_a_series_that_decided_churn_is_not_repeated_for_a_window_like_it() -> None:
    now = [1000.0]
    looker = StackLooker({}, churn_memory=600, clock=lambda: now[0])
    w = WorkerId(7, 1.0)
    churn = Churn(now[0], 0.04, ScopeEvidence(26, 3, (("0xa", 1), ("0xb", 1), ("0xc", 1))), w)
    assert looker.settled("demo", serving(0.04)) is None  # nothing decided yet: take a series
    looker._churn["demo"] = churn  # a series on worker 7 of target demo decided churn
    assert looker.settled("demo", serving(0.05)) is churn  # as frequent: the decision stands, for every worker of demo
    assert looker.settled("demo", serving(0.09)) is None  # deliveries more than twice as frequent: look again
    assert looker.settled("demo", serving(0.12)) is None  # a tenth of samples or more: always look
    # a 3.13 spin on a quiet VM delivers in as few samples, but no scope is entered or left and no work advances
    assert looker.settled("demo", window("spin-py313-quiet", 0.05)) is None
    assert looker.settled("demo", None) is None  # no samples: nothing to stand for
    assert looker.settled("other", serving(0.0)) is None  # another target: its own series
    assert looker.settled(w, serving(0.0)) is None  # a look without kin keeps its own, per worker
    now[0] += 601
    assert looker.settled("demo", serving(0.04)) is None  # ten minutes on: the decision is renewed


def test_a_series_that_decided_nothing_beside_advancing_work_stands_only_for_a_window_whose_work_advances() -> None:
    now = [1000.0]
    looker = StackLooker({}, churn_memory=600, clock=lambda: now[0])
    nothing = Churn(now[0], 0.02, ScopeEvidence(38, 1, (("0xa", 1),)), WorkerId(7, 1.0))
    looker._advancing["demo"] = nothing
    assert looker.settled("demo", window("churn-py311", 0.02)) is None  # scopes churn, but no work advances
    assert looker.settled("demo", serving(0.03)) is nothing
    assert looker.settled("demo", serving(0.05)) is None  # deliveries more than twice as frequent
    churn = Churn(now[0], 0.04, ScopeEvidence(26, 3, (("0xa", 1), ("0xb", 1), ("0xc", 1))), WorkerId(8, 1.0))
    looker._churn["demo"] = churn
    assert looker.settled("demo", serving(0.03)) is churn  # a decision of churn comes first
    del looker._churn["demo"]
    now[0] += 601
    assert looker.settled("demo", serving(0.02)) is None  # ten minutes on: renewed
