"""The verdict engine on stacks recorded from real processes (``data/``), with chosen CPU and memory figures:
each verdict needs its whole combination of evidence, and one number alone never makes a spin."""

from __future__ import annotations

import dataclasses

import pytest

from tests.diagnose.recorded import MiB, evidence, recorded
from watchdog.diagnose import evaluate
from watchdog.diagnose.knowledge import version_tuple, version_warnings
from watchdog.diagnose.verdicts import fd_verdict, memory_verdict, state_verdict
from watchdog.signals.cgroup import CgroupMemory
from watchdog.signals.stacks import StackSamples, ThreadStacks


def without_spin_frames(st: StackSamples) -> StackSamples:
    """The same samples minus every stack that shows _deliver_cancellation: a run where sampling missed it."""
    threads = []
    for t in st.threads:
        kept = tuple(s for s in t.stacks if not any("_deliver_cancellation" in f.name for f in s.frames))
        threads.append(ThreadStacks(t.tid, t.name, sum(s.count for s in kept), kept))
    return dataclasses.replace(st, threads=tuple(threads), samples=sum(t.samples for t in threads))


@pytest.mark.parametrize("name", ["spin-py311", "spin-py313", "spin-py313-nonblocking"])
def test_a_hot_loop_with_deliver_cancellation_samples_is_a_spin(name: str) -> None:
    v = state_verdict(evidence(name, cpu=99.0))
    assert v.kind == "spin"
    assert v.severity == "critical"
    assert v.confidence == "high"
    assert any("_deliver_cancellation" in e for e in v.evidence)
    assert any("CPU 99 %" in e for e in v.evidence)
    assert any("Recycle" in a for a in v.advice)
    assert any("#695" in a for a in v.advice)


def test_the_same_samples_in_a_cool_process_are_not_a_spin() -> None:
    v = state_verdict(evidence("spin-py311", cpu=3.0))
    assert v.kind != "spin"


def test_a_hot_loop_doing_no_application_work_is_a_spin_even_when_the_frame_was_missed() -> None:
    st = without_spin_frames(recorded("spin-py313"))
    assert st.threads[0].count_frame("_deliver_cancellation") == 0
    v = state_verdict(evidence(st, cpu=99.0, sockets={"LISTEN": 1}, clients=0))
    assert v.kind == "spin"
    assert v.confidence == "medium"  # no client connection open: nothing else explains the heat
    assert any("not caught in a sample" in e for e in v.evidence)
    assert any("no requests in flight" in e for e in v.evidence)


def test_a_hot_loop_without_the_frame_but_with_requests_in_flight_is_not_called_a_spin() -> None:
    st = without_spin_frames(recorded("spin-py313"))
    v = state_verdict(evidence(st, cpu=99.0, sockets={"LISTEN": 1, "ESTABLISHED": 30}, clients=30))
    assert v.kind != "spin"
    v = state_verdict(evidence(st, cpu=99.0, in_flight={"demo_downstream_in_flight": 3.0}))
    assert v.kind != "spin"


def test_busy_names_the_hottest_application_frame_and_is_never_a_spin() -> None:
    v = state_verdict(evidence("busy-py311", cpu=98.0))
    assert v.kind == "busy"
    assert "crunch_slice" in v.summary
    assert any("crunch_slice (" in e and "samples" in e for e in v.evidence)
    assert v.severity == "info"  # it yields to the loop between slices


def test_a_loop_stuck_in_a_sleeping_call_is_blocked_and_names_the_call_and_the_kernel_wait() -> None:
    ev = evidence("block-py311", cpu=0.2, state="S hrtimer_nanosleep")
    v = state_verdict(ev)
    assert v.kind == "blocked"
    assert v.severity == "critical"
    assert "main (" in v.summary
    assert "target.py" in v.summary
    assert any("sleeping (time.sleep or similar)" in e for e in v.evidence)


def test_an_idle_loop_is_idle() -> None:
    v = state_verdict(evidence("idle-py311", cpu=0.3))
    assert v.kind == "idle"
    assert not v.is_problem
    assert any("waited in its selector in 199 of 199 samples" in e for e in v.evidence)


def test_an_idle_loop_on_a_machine_short_of_cpu_is_still_idle() -> None:
    """Its few wake-ups wait for a core (runnable 20 % of the window), but it did no work: idle, not active."""
    v = state_verdict(evidence("idle-py311", cpu=0.3, runqueue=20.0))
    assert v.kind == "idle", v


def test_a_spin_starved_of_cpu_is_still_a_spin() -> None:
    v = state_verdict(evidence("spin-py311", cpu=40.0, runqueue=60.0))
    assert v.kind == "spin", v


def test_memory_growth_needs_a_real_ramp_and_says_when_the_cgroup_limit_is_reached() -> None:
    cg = CgroupMemory("v2", "/kubepods/pod1", 512 * MiB, 300 * MiB)
    v = memory_verdict(evidence("idle-py311", cpu=1.0, window=3.0, rss=(100 * MiB, 160 * MiB), cgroup=cg))
    assert v is not None
    assert v.kind == "memory_growth"
    assert v.confidence == "high"
    assert v.data["seconds_to_limit"] == pytest.approx((512 - 300) / 20, rel=0.05)
    assert any("20.0 MiB/s" in e for e in v.evidence)
    assert memory_verdict(evidence("idle-py311", cpu=1.0, rss=(100 * MiB, 101 * MiB))) is None


def test_fd_growth_needs_fds_to_climb() -> None:
    v = fd_verdict(evidence("idle-py311", cpu=1.0, window=3.0, fds=(12, 44), sockets={"ESTABLISHED": 33}))
    assert v is not None
    assert v.kind == "fd_growth"
    assert any("12 -> 44" in e for e in v.evidence)
    assert fd_verdict(evidence("idle-py311", cpu=1.0, fds=(12, 13))) is None


def test_evaluate_gives_the_state_first_then_findings() -> None:
    kinds = [v.kind for v in evaluate(evidence("busy-py311", cpu=97.0, rss=(100 * MiB, 150 * MiB), fds=(10, 40)))]
    assert kinds == ["busy", "memory_growth", "fd_growth"]


@pytest.mark.parametrize(
    ("anyio", "expected"),
    [("4.5.2", "#695"), ("4.14.1", "#1111"), ("4.14.2", None), ("4.16.0", None), ("5.0", None)],
)
def test_known_bad_anyio_versions_are_named(anyio: str, expected: str | None) -> None:
    warnings = version_warnings({"anyio": anyio})
    if expected is None:
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert expected in warnings[0]
        assert anyio in warnings[0]


def test_version_tuple_stops_at_a_pre_release() -> None:
    assert version_tuple("4.15.0rc1") == (4, 15, 0)
    assert version_tuple("4.14.2") == (4, 14, 2)
