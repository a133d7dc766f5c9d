"""The verdict engine on stacks recorded from real processes (``data/``), with chosen CPU and memory figures:
each verdict needs its whole combination of evidence, and one number alone never makes a spin."""

from __future__ import annotations

import dataclasses

import pytest

from tests.diagnose.recorded import MiB, evidence, recorded, recorded_locals
from watchdog.diagnose import evaluate
from watchdog.diagnose.findings import fd_verdict, memory_verdict
from watchdog.diagnose.knowledge import version_tuple, version_warnings
from watchdog.diagnose.spin import LOCALS_READ, ScopeEvidence, find_culprit
from watchdog.diagnose.verdicts import state_verdict
from watchdog.signals.cgroup import CgroupMemory
from watchdog.signals.stacks import Keep, StackSamples, ThreadStacks


def without_spin_frames(st: StackSamples) -> StackSamples:
    """The same samples minus every stack that shows _deliver_cancellation: a run where sampling missed it."""
    threads = []
    for t in st.threads:
        kept = tuple(s for s in t.stacks if not any("_deliver_cancellation" in f.name for f in s.frames))
        threads.append(ThreadStacks(t.tid, t.name, sum(s.count for s in kept), kept))
    return dataclasses.replace(st, threads=tuple(threads), samples=sum(t.samples for t in threads))


@pytest.mark.parametrize("name", ["spin-py311", "spin-py313", "spin-beside-py311", "spin-library-py311"])
def test_a_hot_loop_re_delivering_one_scope_is_a_spin_and_says_what_decided(name: str) -> None:
    v = state_verdict(evidence(name, cpu=99.0, locals=name))
    assert v.kind == "spin"
    assert v.severity == "critical"
    assert v.confidence == "high"
    assert v.scopes is not None
    assert v.scopes.top is not None
    decided = [e for e in v.evidence if e.startswith("the same CancelScope 0x")]
    assert decided == [f"the same CancelScope {v.scopes.top[0]} re-delivered in {v.scopes.top[1]} of 30 samples"]
    assert v.scopes.top[1] >= 5
    assert v.data["scope"] == v.scopes.top[0]
    assert any("_deliver_cancellation" in e for e in v.evidence)
    assert any("CPU 99 %" in e for e in v.evidence)
    assert any("Recycle" in a for a in v.advice)
    assert any("#695" in a for a in v.advice)


@pytest.mark.parametrize("name", ["spin-py311", "spin-py313", "spin-py313-nonblocking"])
def test_without_locals_a_spin_is_never_more_than_low_confidence(name: str) -> None:
    v = state_verdict(evidence(name, cpu=99.0, locals_error="py-spy: Permission Denied"))
    assert v.kind == "spin"
    assert v.confidence == "low"
    assert any("--locals could not be read (py-spy: Permission Denied)" in e for e in v.evidence)


@pytest.mark.parametrize("name", ["churn-py311", "churn-py313", "churn-reuse-py311"])
def test_without_locals_churn_is_still_not_a_spin_for_its_samples_show_scopes_churning(name: str) -> None:
    v = state_verdict(evidence(name, cpu=99.0, locals_error="py-spy dump failed"))
    assert v.kind in ("busy", "active"), v
    assert any("could not be read (py-spy dump failed)" in e and "not a spin" in e for e in v.evidence), v.evidence


@pytest.mark.parametrize("name", ["churn-py311", "churn-py313", "churn-reuse-py311", "serving-demo-py311"])
def test_healthy_timeout_churn_is_never_a_spin(name: str) -> None:
    """Thousands of short move_on_after scopes a second whose timeouts fire, at 99 % CPU: never a spin, with
    locals; churn-reuse is one task whose freed scopes' memory is reused (addresses recur); serving-demo a demo
    worker under load, whose few cancel deliveries (anyio's own, in the SDK's streams) sit beside its work."""
    st = recorded(name)
    assert st.threads[0].count_frame("_deliver_cancellation") >= 2  # the samples alone look like a spin suspect
    for first in (None, 5, 10, 20):
        v = state_verdict(evidence(name, cpu=99.0, locals=recorded_locals(name, first)))
        assert v.kind in ("busy", "active"), (first, v)  # scopes churning: not even a suspect
        assert not v.is_problem
        assert any("not a spin" in e for e in v.evidence), v.evidence


def test_churn_that_shows_several_scopes_says_so() -> None:
    v = state_verdict(evidence("churn-reuse-py311", cpu=99.0, locals="churn-reuse-py311"))
    assert v.kind == "active"
    assert "not a spin" in v.summary
    assert any("not a spin" in e for e in v.evidence)
    # one address recurs there (freed scopes' memory reused), but first-delivered more than once: two scopes
    assert any("first deliveries: new scopes reusing freed memory" in e for e in v.evidence), v.evidence


def test_an_address_first_delivered_twice_is_reuse_never_the_same_scope() -> None:
    reused = ScopeEvidence(20, 6, (("0xaaa", 6),), redelivered=4)
    assert reused.decision() == "churn"
    assert ScopeEvidence(20, 6, (("0xaaa", 6),), redelivered=5).decision() == "same"  # one first delivery: onset


def test_where_scopes_churn_one_address_needs_more_re_deliveries() -> None:
    assert ScopeEvidence(20, 3, (("0xaaa", 3),), redelivered=3).decision() == "same"
    assert ScopeEvidence(20, 3, (("0xaaa", 3),), redelivered=3, lifecycle=0.5).decision() == "unknown"
    assert ScopeEvidence(20, 5, (("0xaaa", 5),), redelivered=5, lifecycle=0.5).decision() == "same"
    assert ScopeEvidence(20, 5, (("0xaaa", 5),), redelivered=4, lifecycle=0.5).decision() == "unknown"


def test_confidence_builds_across_consecutive_looks_at_the_same_scope() -> None:
    series = recorded_locals("spin-py313")
    looks = [dataclasses.replace(series, dumps=series.dumps[i : i + 10], asked=10) for i in (0, 10, 20)]
    earlier = None
    seen = []
    for look in looks:
        v = state_verdict(evidence("spin-py313", cpu=99.0, locals=look), earlier=earlier)
        assert v.scopes is not None
        earlier = v.scopes
        seen.append((v.kind, v.confidence, v.scopes.looks))
    print(seen)
    assert seen[-1][0] == "spin"
    assert seen[-1][2] >= 2  # the last look's verdict rests on more than one look
    assert [c for k, c, _ in seen if k == "spin"][-1] in ("medium", "high")


def test_a_scope_seen_in_an_earlier_look_does_not_count_for_another_scope() -> None:
    a = ScopeEvidence(10, 4, (("0xaaa", 4),), 4)
    b = ScopeEvidence(10, 4, (("0xbbb", 4),), 4)
    assert b.merged(a) == b
    assert a.merged(a).looks == 2
    assert a.merged(a).top == ("0xaaa", 8)
    nothing = ScopeEvidence(12, 0)
    carried = nothing.merged(a)
    assert (carried.top, carried.dumps, carried.looks) == (("0xaaa", 4), 22, 2)  # neither confirms nor denies


def test_the_culprit_is_the_except_line_of_the_task_that_swallows_the_cancellation() -> None:
    for name in ("spin-py311", "spin-py313"):
        v = state_verdict(evidence(name, cpu=99.0, locals=name))
        c = v.culprit
        assert c is not None, name
        assert (c.function, c.application, c.catches) == ("swallow", True, True)
        assert c.path.endswith("tests/diagnose/target.py")
        assert c.line == 42  # `except anyio.get_cancelled_exc_class():` in the recorded target.py
        assert c.share >= 0.2
        assert c.confidence == "high"
        assert f"culprit: {c.summary()}" in v.evidence
        assert "swallow at" in v.summary
        assert any(a.startswith("`swallow` at") and "re-raise" in a for a in v.advice)


def test_code_running_beside_a_spin_in_another_task_is_never_named() -> None:
    v = state_verdict(evidence("spin-beside-py311", cpu=99.0, locals="spin-beside-py311"))
    views = [t for t in recorded("spin-beside-py311").threads[0].stacks if any(f.name == "beside" for f in t.frames)]
    assert sum(s.count for s in views) >= 10  # the other task did run in the window
    assert v.culprit is not None
    assert v.culprit.function == "swallow"


def test_a_spin_inside_a_library_says_no_application_frame_and_names_what_is_awaited() -> None:
    v = state_verdict(evidence("spin-library-py311", cpu=99.0, locals="spin-library-py311"))
    c = v.culprit
    assert c is not None
    assert not c.application
    assert c.function == "swallow"
    assert "stubbornlib/__init__.py" in c.where
    assert c.awaited == "_asyncio.Future"
    assert c.summary().startswith("no application frame")
    assert any("spin sentinel" in a for a in v.advice)
    assert "swallow" not in v.summary


def test_the_same_samples_in_a_cool_process_are_not_a_spin() -> None:
    v = state_verdict(evidence("spin-py311", cpu=3.0))
    assert v.kind != "spin"


def test_a_hot_loop_doing_no_application_work_is_a_spin_even_when_the_frame_was_missed() -> None:
    st = without_spin_frames(recorded("spin-py313"))
    assert st.threads[0].count_frame("_deliver_cancellation") == 0
    v = state_verdict(evidence(st, cpu=99.0, sockets={"LISTEN": 1}, clients=0, locals="spin-py313"))
    assert v.kind == "spin"
    assert v.confidence == "high"  # the locals saw the scope even though the samples missed the frame
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


def test_settled_churn_evidence_judges_a_window_without_locals_churn_and_never_a_spin() -> None:
    # the sidecar skips the series for a window like one whose series decided churn, and passes that evidence
    churn = ScopeEvidence(26, 3, (("0xa", 1), ("0xb", 1), ("0xc", 1)))
    assert churn.decision() == "churn"
    v = state_verdict(evidence("serving-demo-py311", cpu=99.0), settled=churn)  # a demo worker under load
    assert v.kind == "busy"
    assert any("3 different CancelScopes" in e and "not a spin" in e for e in v.evidence), v.evidence
    # a window whose samples show no scope entered or left and no work advancing is a spin's: judged without it
    for spin in ("spin-py311", "spin-py313-quiet"):
        assert state_verdict(evidence(spin, cpu=99.0), settled=churn) == state_verdict(evidence(spin, cpu=99.0))
    # evidence that did not decide churn is no reason to skip anything: the window is judged as without it
    same = ScopeEvidence(20, 8, (("0xa", 8),), redelivered=8)
    assert state_verdict(evidence("spin-py311", cpu=99.0), settled=same) == state_verdict(
        evidence("spin-py311", cpu=99.0)
    )
    # and a window that has its own locals is judged on them: a spin stays a spin
    assert state_verdict(evidence("spin-py311", cpu=99.0, locals="spin-py311"), settled=churn).kind == "spin"


def test_where_the_recording_landed_at_the_selector_the_dumps_name_the_culprit() -> None:
    """A 3.13 spin recorded on a quiet VM: 165 of 199 samples at the loop's system call, the culprit beneath the
    cancelled await in only 11 (low confidence); the dumps, taken on the target's CPU, saw it in more of theirs."""
    ev = evidence("spin-py313-quiet", cpu=99.0, locals="spin-py313-quiet")
    main = recorded("spin-py313-quiet").threads[0]
    from_recording = find_culprit(main.stacks, main.samples, None, main.tid)
    assert from_recording is not None
    assert from_recording.confidence == "low"
    c = state_verdict(ev).culprit
    assert c is not None
    assert (c.function, c.application) == ("swallow", True)
    assert c.of == len(recorded_locals("spin-py313-quiet").dumps)  # counted in the dumps
    assert c.share > from_recording.share


@pytest.mark.parametrize(
    "name", ["churn-py311", "churn-py313", "churn-reuse-py311", "spin-beside-py311", "spin-library-py311",
             "spin-py311", "spin-py313", "spin-py313-quiet", "serving-demo-py311"],
)  # fmt: skip
def test_a_series_kept_to_the_loop_thread_and_the_locals_read_judges_as_the_whole_series(name: str) -> None:
    """What a locals series keeps of each dump (``Keep``: the loop thread, ``LOCALS_READ``) loses nothing the
    verdict reads: a local read but not declared there would change a verdict here."""
    tid = recorded(name).threads[0].tid
    whole = state_verdict(evidence(name, cpu=99.0, locals=recorded_locals(name)))
    kept = state_verdict(evidence(name, cpu=99.0, locals=recorded_locals(name, keep=Keep(tid, LOCALS_READ))))
    assert kept == whole
    assert int(whole.data.get("locals_samples") or 0) > 0  # the locals were read at all
