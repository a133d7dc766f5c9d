"""One stack look of the sidecar on real processes with real py-spy: the signals rules read, named patterns too."""

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


async def test_the_builtin_spin_pattern_sees_a_real_spin() -> None:
    py_spy_path()
    looker = StackLooker({})
    with target(python_with_anyio("3.11"), "spin") as pid:
        look = await looker.look(WorkerId.of(psutil.Process(pid)), 1.5, 50)
    s = look.signals
    print(f"\nspin target: {s}")
    assert look.verdict["kind"] == "spin"
    assert s["stack_share:deliver_cancellation"] is not None
    assert s["stack_share:deliver_cancellation"] > 0
    assert s["stack_share:deliver_cancellation"] == s["stack_spin_ratio"]
    assert (s["stack_spin_confidence"] or 0.0) >= 2
