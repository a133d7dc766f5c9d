"""The sidecar's memory of ``--locals`` series, over windows recorded off real processes (``tests/diagnose/data``:
real py-spy output of real spins, churn and the demo under load). The real ``StackLooker`` and the real
``with_locals`` decide; only py-spy is replaced, by those recordings (``collect_evidence`` returns a recorded
window, ``dump_locals`` its recorded dumps), so no process runs and each series taken is counted."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.diagnose.recorded import evidence, recorded_locals
from watchdog.agent import stacks
from watchdog.agent.stacks import Churn, StackLook, StackLooker
from watchdog.diagnose import collect
from watchdog.diagnose.evidence import ProcessEvidence
from watchdog.diagnose.spin import ScopeEvidence
from watchdog.diagnose.verdicts import state_verdict
from watchdog.discovery import WorkerId
from watchdog.signals.stacks import Keep, LocalsSeries

pytestmark = pytest.mark.anyio

SERVING = "serving-demo-py311"
"""A demo worker under the overhead bench's load (2 of 199 samples in ``_deliver_cancellation``, 47 % in
application code, 11 % entering or leaving scopes): its samples alone make it a spin suspect, so it takes a
series. Its 40 dumps caught 2 deliveries to 2 scopes (churn); its first 38 caught one (decides nothing)."""
SPINS = ("spin-py311", "spin-py313", "spin-py313-quiet", "spin-beside-py311", "spin-library-py311")


class Recorded:
    """Stands in for py-spy: the window named ``name`` with its first ``dumps`` dumps, at a pid of its own per
    worker (``create_time`` tells workers apart; the recordings fix the pid)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.name = ""
        self.dumps: int | None = None
        self.series = 0
        monkeypatch.setattr(stacks, "collect_evidence", self.collect)
        monkeypatch.setattr(stacks, "find_py_spy", lambda *a, **kw: "py-spy (recorded)")
        monkeypatch.setattr(collect, "dump_locals", self.dump_locals)

    def window(self) -> ProcessEvidence:
        return evidence(self.name, cpu=99.0)

    async def collect(self, pid: int, **kw: Any) -> ProcessEvidence:
        return self.window()

    async def dump_locals(self, pid: int, *, keep: Keep, **kw: Any) -> LocalsSeries:
        self.series += 1
        return recorded_locals(self.name, self.dumps, keep)

    async def look(self, looker: StackLooker, name: str, worker: int, dumps: int | None = None) -> StackLook:
        self.name, self.dumps = name, dumps
        return await looker.look(WorkerId(self.window().info.pid, float(worker)), 1.0, 100, kin="demo")


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> Recorded:
    return Recorded(monkeypatch)


async def test_a_series_beside_advancing_work_that_decided_nothing_stands_for_the_next_such_window(
    rec: Recorded,
) -> None:
    now = [1000.0]
    looker = StackLooker({}, clock=lambda: now[0])
    first = await rec.look(looker, SERVING, worker=1, dumps=38)
    assert rec.series == 1
    assert first.verdict["kind"] == "busy"
    now[0] += 120  # the next look at a busy worker of the target comes a baseline later
    second = await rec.look(looker, SERVING, worker=2, dumps=38)
    assert rec.series == 1, "the second window, like the first, took a series of its own"
    assert second.verdict["kind"] == "busy"
    borrowed = [e for e in second.verdict["evidence"] if "no new series was taken" in e]
    assert borrowed, second.verdict["evidence"]
    assert "too few deliveries to tell, application work advancing" in borrowed[0]
    assert "the look at worker" in borrowed[0]
    now[0] += 601  # the memory ends: the next such window pays again
    await rec.look(looker, SERVING, worker=3, dumps=38)
    assert rec.series == 2


async def test_a_series_that_decided_churn_is_remembered_by_the_real_looker(rec: Recorded) -> None:
    # busy and active verdicts dropped the scopes their series saw, so the looker never remembered one
    now = [1000.0]
    looker = StackLooker({}, clock=lambda: now[0])
    await rec.look(looker, SERVING, worker=1)
    now[0] += 120
    second = await rec.look(looker, SERVING, worker=2)
    assert rec.series == 1
    assert any("(timeout churn)" in e for e in second.verdict["evidence"]), second.verdict["evidence"]


@pytest.mark.parametrize("spin", SPINS)
@pytest.mark.parametrize("dumps", [38, None], ids=["decided-nothing", "decided-churn"])
async def test_a_remembered_series_never_stands_for_a_spin(rec: Recorded, spin: str, dumps: int | None) -> None:
    """Whatever the target's last series settled, a spin in one of its workers takes a series of its own and is
    judged a spin on it."""
    now = [1000.0]
    looker = StackLooker({}, clock=lambda: now[0])
    await rec.look(looker, SERVING, worker=1, dumps=dumps)
    assert rec.series == 1
    now[0] += 5
    look = await rec.look(looker, spin, worker=2)
    assert rec.series == 2, f"{spin} was judged on the remembered series"
    assert look.verdict["kind"] == "spin", look.summary
    assert not any("no new series was taken" in e for e in look.verdict["evidence"])


@pytest.mark.parametrize("spin", SPINS)
async def test_a_remembered_series_whose_share_covers_a_spin_still_never_stands_for_it(
    rec: Recorded, spin: str
) -> None:
    """The sidecar's looks are 50 samples: two deliveries are 4 %, and a series kept at that share stands for
    windows up to 8 %. A 3.13 spin on a quiet VM shows its deliveries in 5 % of samples; what a spin's samples
    never show is a scope entered or left, or application work advancing (under 30 % in every spin recorded)."""
    now = [1000.0]
    looker = StackLooker({}, clock=lambda: now[0])
    churn = ScopeEvidence(40, 3, (("0xa", 1), ("0xb", 1), ("0xc", 1)))
    nothing = ScopeEvidence(38, 1, (("0xa", 1),))
    looker._churn["demo"] = Churn(now[0], 0.09, churn, WorkerId(1, 1.0))
    looker._advancing["demo"] = Churn(now[0], 0.09, nothing, WorkerId(1, 1.0))
    look = await rec.look(looker, spin, worker=2)
    assert rec.series == 1, f"{spin} was judged on the remembered series"
    assert look.verdict["kind"] == "spin", look.summary


def test_evidence_that_decided_nothing_stands_only_for_a_window_whose_work_advances() -> None:
    nothing = state_verdict(evidence(SERVING, cpu=99.0, locals=recorded_locals(SERVING, 38))).scopes
    assert nothing is not None
    assert nothing.decision() == "unknown"
    # the serving window itself: its application work advances, so it is not a spin on its own samples
    v = state_verdict(evidence(SERVING, cpu=99.0), settled=nothing)
    assert v.kind == "busy"
    assert v.scopes is nothing
    # a spin beside honest work (29 % application code, just under the line) is judged as without that evidence
    for spin in SPINS:
        assert state_verdict(evidence(spin, cpu=99.0), settled=nothing) == state_verdict(evidence(spin, cpu=99.0))


def test_a_spin_suspects_scopes_ride_on_the_verdict_whatever_it_comes_to() -> None:
    v = state_verdict(evidence(SERVING, cpu=99.0, locals=SERVING))
    assert (v.kind, v.confidence) == ("busy", "high")
    assert isinstance(v.scopes, ScopeEvidence)
    assert (v.scopes.dumps, v.scopes.hits, v.scopes.decision()) == (40, 2, "churn")
    healthy = state_verdict(evidence("busy-py311", cpu=99.0))
    assert dataclasses.replace(healthy, scopes=None) == healthy  # not a suspect: no series, no scopes


async def test_a_look_judged_healthy_carries_no_scopes_on_to_the_next(rec: Recorded) -> None:
    # scopes chain across looks only from a suspect: a healthy look's addresses, reused later, must not add up
    now = [1000.0]
    looker = StackLooker({}, clock=lambda: now[0])
    look = await rec.look(looker, SERVING, worker=1, dumps=38)
    assert look.verdict["kind"] == "busy"
    assert looker.earlier(WorkerId(rec.window().info.pid, 1.0)) is None
