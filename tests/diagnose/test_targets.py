"""diagnose on real standalone anyio processes, with real py-spy, on Python 3.11, 3.12 and 3.13.

On 3.12 and 3.13 most samples of a spinning loop land in the selector (DESIGN.md), so these tests are what keeps
the spin verdict honest across versions. Each prints what it saw (``pytest -s``).
"""

from __future__ import annotations

import pytest

from tests.conftest import py_spy_path, python_with_anyio
from tests.diagnose.helpers import target
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
