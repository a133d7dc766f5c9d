"""Recycling: the signal sequence, identity re-checks, dry run; on real child processes the test started."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from watchdog.actions.recycle import RecyclePlan, Recycler
from watchdog.discovery import WorkerId

pytestmark = pytest.mark.anyio

IGNORES_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(300)"
)
OBEYS_TERM = "import time; print('ready', flush=True); time.sleep(300)"


@pytest.fixture
def child(request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", request.param], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def identity_of(proc: subprocess.Popen[str]) -> WorkerId:
    return WorkerId.of(psutil.Process(proc.pid))


def reaping_identity(proc: subprocess.Popen[str]):  # type: ignore[no-untyped-def]
    """Identity check for our own child: reap it first, or a zombie would look alive."""
    from watchdog.discovery import still_same

    def check(w: WorkerId) -> bool:
        proc.poll()
        return still_same(w)

    return check


@pytest.mark.parametrize("child", [OBEYS_TERM], indirect=True)
async def test_sigterm_is_enough_for_a_process_that_obeys(child: subprocess.Popen[str]) -> None:
    out = await Recycler(identity=reaping_identity(child)).recycle(identity_of(child), RecyclePlan(grace=5))
    assert out.outcome == "recycled"
    assert [s.name for s in out.steps] == ["SIGTERM", "exited"]
    assert child.wait(10) == -signal.SIGTERM  # dead is a zombie to the recycler: it may not be reaped yet


@pytest.mark.parametrize("child", [IGNORES_TERM], indirect=True)
async def test_sigkill_after_the_grace_period(child: subprocess.Popen[str]) -> None:
    start = time.monotonic()
    out = await Recycler(identity=reaping_identity(child)).recycle(identity_of(child), RecyclePlan(grace=1.0))
    assert out.outcome == "recycled"
    assert [s.name for s in out.steps] == ["SIGTERM", "grace", "SIGKILL", "exited"]
    assert child.wait(10) == -signal.SIGKILL  # (the identity check can see the zombie before its poll() reaps it)
    assert time.monotonic() - start >= 1.0


@pytest.mark.parametrize("child", [OBEYS_TERM], indirect=True)
async def test_a_reused_pid_is_never_signalled(child: subprocess.Popen[str]) -> None:
    real = identity_of(child)
    stale = WorkerId(real.pid, real.create_time - 1000)  # what we recorded for the pid's previous owner
    out = await Recycler().recycle(stale, RecyclePlan(grace=1))
    assert out.outcome == "aborted"
    assert out.steps[0].name == "identity"
    assert child.poll() is None  # the innocent process lives


async def test_identity_is_rechecked_before_every_signal() -> None:
    sent: list[int] = []
    checks = iter([True, True, True, False])  # still there for TERM, through the grace, replaced before KILL
    worker = WorkerId(4242, 1.0)
    rec = Recycler(send=lambda pid, sig: sent.append(sig), identity=lambda w: next(checks, False), poll=0.01)
    out = await rec.recycle(worker, RecyclePlan(grace=0.0))
    assert sent == [signal.SIGTERM]
    assert [s.name for s in out.steps] == ["SIGTERM", "grace", "SIGKILL"]
    assert out.steps[-1].detail == "not sent: pid 4242 is gone or reused"


async def test_dry_run_sends_nothing() -> None:
    sent: list[int] = []
    rec = Recycler(send=lambda pid, sig: sent.append(sig), identity=lambda w: True)
    out = await rec.recycle(WorkerId(1, 1.0), RecyclePlan(), dry_run=True)
    assert out.outcome == "dry_run"
    assert sent == []


async def test_drain_signal_first_then_term_if_the_drain_does_not_finish() -> None:
    sent: list[int] = []
    rec = Recycler(send=lambda pid, sig: sent.append(sig), identity=lambda w: len(sent) < 2, poll=0.01)
    out = await rec.recycle(WorkerId(7, 1.0), RecyclePlan(drain_signal=signal.SIGUSR1, drain_wait=0.05, grace=1))
    assert sent == [signal.SIGUSR1, signal.SIGTERM]
    assert [s.name for s in out.steps] == ["SIGUSR1", "drain_wait", "SIGTERM", "exited"]


async def test_the_replacement_check_decides_the_outcome() -> None:
    async def none_came(w: WorkerId) -> tuple[int | None, str]:
        return None, "no replacement worker appeared within 1 s"

    alive = iter([True, True, False])
    rec = Recycler(send=lambda pid, sig: None, identity=lambda w: next(alive), poll=0.01)
    out = await rec.recycle(WorkerId(7, 1.0), RecyclePlan(grace=1), replacement=none_came)
    assert out.outcome == "failed"
    assert out.steps[-1].detail == "no replacement worker appeared within 1 s"


@pytest.mark.parametrize("child", [OBEYS_TERM], indirect=True)
async def test_a_drain_signal_without_a_handler_is_reported_as_killing_at_once(child: subprocess.Popen[str]) -> None:
    """SIGUSR2's default action terminates: the outcome must say so, not "exited after the drain wait"."""
    wid = WorkerId.of(psutil.Process(child.pid))
    out = await Recycler(poll=0.02).recycle(wid, RecyclePlan(drain_signal=signal.SIGUSR2, drain_wait=10, grace=1))
    names = [s.name for s in out.steps]
    assert names == ["SIGUSR2", "drain_exit"]
    detail = out.steps[1].detail
    print(f"\n{detail}")
    assert "at once, so it did not drain (a process without a handler for SIGUSR2 is killed by it)" in detail
    assert child.wait(5) == -signal.SIGUSR2
