"""Stack looks of the sidecar on real processes with real py-spy: the signals rules read, named patterns too, and
the spin verdict that rests on the cancel scope's identity, look after look, with the culprit named."""

from __future__ import annotations

import psutil
import pytest

from tests.conftest import py_spy_path, python_with_anyio
from tests.diagnose.helpers import target
from watchdog.agent.stacks import StackLooker
from watchdog.discovery import WorkerId

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_a_named_pattern_is_the_share_of_loop_samples_matching_it() -> None:
    py_spy_path()
    looker = StackLooker({"work": r"crunch_slice"})
    with target(python_with_anyio("3.11"), "busy") as pid:
        look = await looker.look(WorkerId.of(psutil.Process(pid)), 1.0, 50)
    s = look.signals
    print(f"\nbusy target: {s}")
    assert look.verdict["kind"] == "busy"
    assert s["stack_share:work"] is not None
    assert s["stack_share:work"] > 0.5
    assert s["stack_share:deliver_cancellation"] == 0.0
    assert s["stack_busy_confidence"] == 3.0  # high
    assert look.culprit is None
    assert look.locals_cpu_s == 0.0  # healthy windows take no locals dumps


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
async def test_a_real_spin_is_confirmed_by_its_scope_look_after_look_and_its_culprit_named(version: str) -> None:
    """One look at the default duration often decides (on 3.11 nearly always); the next looks at the same scope
    add to it, as the sidecar's schedule takes them (stack_spin_confidence >= 2 is medium). Each look is printed."""
    py_spy_path()
    looker = StackLooker({})
    with target(python_with_anyio(version), "spin") as pid:
        wid = WorkerId.of(psutil.Process(pid))
        looks = [await looker.look(wid, 1.0, 100)]
        while (looks[-1].signals["stack_spin_confidence"] or 0.0) < 2 and len(looks) < 4:
            looks.append(await looker.look(wid, 1.0, 100))
    for i, look in enumerate(looks, 1):
        print(f"\n{version} look {i}: {look.summary} (locals cost {look.locals_cpu_s:.3f} CPU s)")
    last = looks[-1]
    s = last.signals
    assert last.verdict["kind"] == "spin", last.summary
    assert (s["stack_spin_confidence"] or 0.0) >= 2
    assert "the same CancelScope 0x" in last.summary
    assert s["stack_share:deliver_cancellation"] == s["stack_spin_ratio"]
    assert last.culprit is not None
    assert (last.culprit["function"], last.culprit["application"]) == ("swallow", True)
    assert last.culprit["file"].endswith("target.py")
    assert last.culprit["share"] >= 0.05
    assert last.verdict["culprit"] == last.culprit
    assert last.verdict["look_summary"] == last.summary
    assert "culprit swallow at" in last.summary
    assert last.locals_cpu_s > 0


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
async def test_healthy_timeout_churn_is_never_a_spin_look_after_look(version: str) -> None:
    py_spy_path()
    looker = StackLooker({})
    with target(python_with_anyio(version), "churn") as pid:
        wid = WorkerId.of(psutil.Process(pid))
        looks = [await looker.look(wid, 1.0, 100) for _ in range(3)]
    for i, look in enumerate(looks, 1):
        print(f"\nchurn {version} look {i}: {look.summary}")
        assert look.verdict["kind"] != "spin", look.summary
        assert look.signals["stack_spin_confidence"] == 0.0
        assert look.culprit is None


async def test_the_look_at_a_spinning_demo_worker_names_the_stubborn_tool() -> None:
    """Through the official SDK under gunicorn: the evidence a rule event carries names the tool and its line."""
    from examples.demo import inject
    from examples.demo.harness import DemoServer

    py_spy_path()
    looker = StackLooker({})
    with DemoServer(workers=2) as demo:
        pid = await inject.spin(demo.mcp_url)
        wid = WorkerId.of(psutil.Process(pid))
        looks = [await looker.look(wid, 1.0, 100)]
        while (looks[-1].signals["stack_spin_confidence"] or 0.0) < 2 and len(looks) < 4:
            looks.append(await looker.look(wid, 1.0, 100))
    for i, look in enumerate(looks, 1):
        print(f"\ndemo look {i}: {look.summary}")
    last = looks[-1]
    assert last.verdict["kind"] == "spin", last.summary
    assert last.culprit is not None
    assert (last.culprit["function"], last.culprit["task"]) == ("stubborn", "stubborn")
    assert last.culprit["file"].endswith("examples/demo/app.py")
    assert "culprit stubborn at" in last.summary
    assert "(task 'stubborn')" in last.summary
