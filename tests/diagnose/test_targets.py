"""diagnose on real standalone anyio processes, with real py-spy, on Python 3.11, 3.12 and 3.13.

On a quiet VM a blocking sample taken from another CPU of a 3.12/3.13 spin lands at its one system call, in the
selector (``watchdog.signals.affinity``; ``python -m bench.stop_points``); the locals dumps run on the target's CPU
for that. Run on a quiet machine as well as a loaded one, these tests keep the spin verdict honest across
versions. Each prints what it saw (``pytest -s``).
"""

from __future__ import annotations

import pytest

from tests.conftest import py_spy_path, python_with_anyio
from tests.diagnose.helpers import TARGET, target
from watchdog.diagnose import DiagnoseReport, diagnose, render_text, schema
from watchdog.errors import ProcessGone

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def show(report: DiagnoseReport) -> None:
    print("\n" + render_text(report))


def assert_valid(report: DiagnoseReport) -> None:
    import jsonschema

    jsonschema.validate(report.to_dict(), schema())


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
async def test_a_real_anyio_spin_is_a_spin(version: str) -> None:
    python, _ = python_with_anyio(version), py_spy_path()
    with target(python, "spin") as pid:
        report = await diagnose(pid)
    show(report)
    assert_valid(report)
    (p,) = report.processes
    assert p.role == "process"
    assert p.state is not None
    assert p.state.kind == "spin", p.state
    assert p.evidence is not None
    assert p.evidence.interpreter is not None
    assert p.evidence.interpreter.python_version.startswith(version)
    assert "anyio" in p.evidence.interpreter.packages
    assert report.exit_code == 1
    # what decided: the same scope re-delivered, seen through py-spy --locals
    assert p.state.confidence in ("medium", "high"), p.state
    assert p.state.scopes is not None
    assert any(e.startswith("the same CancelScope 0x") for e in p.state.evidence)
    # who keeps it going: the task that swallows the cancellation
    c = p.state.culprit
    assert c is not None
    assert (c.function, c.application) == ("swallow", True)
    assert c.path.endswith("tests/diagnose/target.py")
    assert c.line in swallow_lines()
    assert c.share >= 0.1
    assert report.to_dict()["processes"][0]["verdicts"][0]["culprit"]["function"] == "swallow"
    print(f"culprit on {version}: {c.summary()}")


def swallow_lines() -> set[int]:
    """The lines of target.py's ``swallow`` body: its await and its except line."""
    lines = TARGET.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines, 1) if ln.startswith("async def swallow"))
    return {start + 3, start + 4}


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
@pytest.mark.parametrize("mode", ["churn", "churn-reuse"])
async def test_healthy_timeout_churn_is_never_a_spin(version: str, mode: str) -> None:
    """Thousands of short move_on_after scopes a second whose timeouts fire, each completing, hot loop: whatever
    the samples look like, never a spin and never a problem (churn-reuse: freed scopes' addresses recur)."""
    python, _ = python_with_anyio(version), py_spy_path()
    with target(python, mode) as pid:
        report = await diagnose(pid)
    show(report)
    assert_valid(report)
    (p,) = report.processes
    assert p.state is not None
    assert p.state.kind in ("active", "busy", "spin_suspect"), p.state
    assert p.state.culprit is None
    assert report.exit_code == 0
    print(f"{mode} on {version}: {p.state.kind}: {p.state.summary}")


# On a quiet VM the recording (py-spy on another CPU) stops a 3.13 loop at its system calls or at a timer tick; the
# honest task beside the spin runs 3000-step slices without a system call, so ticks land there and the window can
# read as busy (1 of 5 quiet runs, 2026-12-01): no locals are taken then. A missed spin, never a false one.
BESIDE_313 = pytest.mark.xfail(reason="quiet VM: the recording can call a 3.13 spin-beside window busy (see above)",
                               strict=False)  # fmt: skip


@pytest.mark.parametrize("version", ["3.11", pytest.param("3.13", marks=BESIDE_313)])
async def test_code_running_beside_a_spin_is_not_named_the_culprit(version: str) -> None:
    python, _ = python_with_anyio(version), py_spy_path()
    with target(python, "spin-beside") as pid:
        report = await diagnose(pid)
    show(report)
    (p,) = report.processes
    assert p.state is not None
    assert p.state.kind == "spin", p.state
    assert p.evidence is not None
    beside = sum(
        s.count for t in p.evidence.stacks.threads for s in t.stacks if any(f.name == "beside" for f in s.frames)
    )
    assert beside > 0  # the other task ran in the window
    c = p.state.culprit
    assert c is None or c.function == "swallow", c
    assert c is not None
    print(f"spin-beside on {version}: {c.summary()} (beside ran in {beside} samples)")


@pytest.mark.parametrize("version", ["3.11", "3.13"])
async def test_a_spin_inside_a_library_says_plainly_no_application_frame_shows(version: str) -> None:
    python, _ = python_with_anyio(version), py_spy_path()
    with target(python, "spin-library") as pid:
        report = await diagnose(pid)
    show(report)
    (p,) = report.processes
    assert p.state is not None
    assert p.state.kind == "spin", p.state
    c = p.state.culprit
    assert c is not None
    assert not c.application
    assert "stubbornlib/__init__.py" in c.where
    assert "no application frame" in render_text(report)
    print(f"spin-library on {version}: {c.summary()}")


@pytest.mark.parametrize("version", ["3.11", "3.13"])
async def test_honest_cpu_work_is_busy_and_never_a_spin(version: str) -> None:
    python, _ = python_with_anyio(version), py_spy_path()
    with target(python, "busy") as pid:
        report = await diagnose(pid)
    show(report)
    (p,) = report.processes
    assert p.state is not None
    assert p.state.kind == "busy", p.state
    assert "crunch_slice" in p.state.summary
    assert all(v.kind != "spin" for v in p.verdicts)


async def test_a_loop_blocked_in_time_sleep_is_blocked_and_named() -> None:
    py_spy_path()
    with target(python_with_anyio("3.11"), "block") as pid:
        report = await diagnose(pid)
    show(report)
    (p,) = report.processes
    assert p.state is not None
    assert p.state.kind == "blocked", p.state
    assert "main (" in p.state.summary
    assert any("sleeping" in e for e in p.state.evidence)  # the kernel's wait channel, not a guess
    assert report.exit_code == 1


async def test_an_idle_loop_is_idle_and_exits_0() -> None:
    py_spy_path()
    with target(python_with_anyio("3.11"), "idle") as pid:
        report = await diagnose(pid, duration=1.5)
    show(report)
    assert_valid(report)
    (p,) = report.processes
    assert p.state is not None
    assert p.state.kind == "idle", p.state
    assert report.exit_code == 0


async def test_a_process_that_exits_mid_sampling_is_reported_as_gone() -> None:
    py_spy_path()
    with target(python_with_anyio("3.11"), "exit", "1.0") as pid, pytest.raises(ProcessGone) as err:
        await diagnose(pid, duration=4.0)
    assert "during sampling" in str(err.value)
    assert err.value.pid == pid
