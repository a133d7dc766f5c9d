"""The flame graph store: bounded by count and by bytes, oldest removed first, names that cannot escape it."""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import psutil
import pytest

from tests.conftest import py_spy_path, python_with_anyio
from tests.diagnose.helpers import target
from tests.diagnose.recorded import recorded
from watchdog.agent.events import Event, EventLog
from watchdog.agent.flames import FlameStore, attach_flamegraph
from watchdog.agent.page import render_page
from watchdog.agent.stacks import StackLooker
from watchdog.discovery import WorkerId


def clock() -> itertools.count[float]:
    return itertools.count(1_800_000_000.0, 1.0)


def test_keeps_the_last_n_and_their_meta_and_a_new_store_enforces_the_same_bounds(tmp_path: Path) -> None:
    ticks = clock()
    store = FlameStore(tmp_path, keep=3, wall=lambda: next(ticks))
    samples = recorded("spin-py311")
    made = [store.save(f"event-{i}", samples, meta={"worker": 100 + i, "why": "test"}) for i in range(5)]
    assert all(r is not None for r in made)
    names = [r.name for r in store.records()]
    assert len(names) == 3
    assert names[0] == made[-1].name  # type: ignore[union-attr]  # newest first
    assert made[0].name not in names  # type: ignore[union-attr]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names, *(n + ".json" for n in names)])
    assert store.records()[0].meta["worker"] == 104
    assert store.records()[0].url == f"/v1/flamegraphs/{names[0]}"
    FlameStore(tmp_path, keep=1)
    assert [p.name for p in tmp_path.glob("*.html")] == [names[0]]


def test_bytes_are_capped_and_a_file_over_the_cap_is_not_kept(tmp_path: Path) -> None:
    samples = recorded("spin-py311")
    one = FlameStore(tmp_path / "probe").save("x", samples)
    assert one is not None
    store = FlameStore(tmp_path / "cap", keep=100, max_bytes=int(one.size * 2.5))
    for i in range(6):
        store.save(f"e{i}", samples)
    kept = store.records()
    assert len(kept) == 2
    assert sum(r.size for r in kept) <= store.max_bytes
    assert FlameStore(tmp_path / "tiny", max_bytes=100).save("x", samples) is None
    assert FlameStore(tmp_path / "none", keep=0).save("x", samples) is None


def test_names_from_outside_cannot_leave_the_directory(tmp_path: Path) -> None:
    store = FlameStore(tmp_path / "store")
    (tmp_path / "secret.html").write_text("secret")
    rec = store.save("../../etc/passwd <x>", recorded("idle-py311"))
    assert rec is not None
    assert "/" not in rec.name
    assert "<" not in rec.name
    assert store.path(rec.name) == tmp_path / "store" / rec.name
    for bad in ("../secret.html", "..%2Fsecret.html", "/etc/passwd", "x.json", rec.name + ".json", ".tmp-x.html"):
        assert store.path(bad) is None, bad


@pytest.mark.anyio
@pytest.mark.slow
async def test_the_hook_keeps_a_real_spin_look_as_the_evidence_of_its_event(tmp_path: Path) -> None:
    """What the agent does when a stack look fires a rule: the look's samples become the event's flame graph."""
    py_spy_path()
    store = FlameStore(tmp_path)
    with target(python_with_anyio("3.11"), "spin") as pid:
        look = await StackLooker({}).look(WorkerId.of(psutil.Process(pid)), 1.5, 50)
    assert look.samples is not None
    log = EventLog()
    event = log.add(Event("rule_firing", "spin on demo", target="demo", worker=pid, rule="cancel-delivery-spin"))
    rec = await attach_flamegraph(store, event, look.samples)
    assert rec is not None
    assert log.recent()[0].to_json()["evidence"]["flamegraph"] == rec.url
    assert rec.meta["rule"] == "cancel-delivery-spin"
    text = (tmp_path / rec.name).read_text()
    assert "_deliver_cancellation" in text
    assert "k-spin" in text
    page = render_page({"targets": [], "events": [e.to_json() for e in log.recent()]}, flames=[rec.to_json()])
    assert f'href="{rec.url.lstrip("/")}"' in page


@pytest.mark.anyio
async def test_a_store_that_cannot_write_says_so_in_the_evidence(tmp_path: Path) -> None:
    store = FlameStore(tmp_path / "gone")
    (tmp_path / "gone").rmdir()
    (tmp_path / "gone").write_text("a file where the directory was")
    event = EventLog().add(Event("rule_firing", "spin", worker=1, rule="cancel-delivery-spin"))
    assert await attach_flamegraph(store, event, recorded("spin-py311")) is None
    assert "flamegraph" not in event.evidence
    assert event.evidence["flamegraph_error"]


def test_a_private_store_refuses_a_directory_planted_by_someone_else(tmp_path: Path) -> None:
    import os

    planted = tmp_path / "mcp-watchdog-0"
    planted.mkdir()
    if os.geteuid() != 0:
        pytest.skip("planting a directory owned by another user needs root (chown)")
    os.chown(planted, 65534, 65534)
    with pytest.raises(PermissionError, match="not a directory of this user's"):
        FlameStore(planted / "flamegraphs", private=True)
    assert FlameStore(tmp_path / "mine" / "flamegraphs", private=True).records() == []


@pytest.mark.anyio
async def test_the_keeper_gives_stack_rules_and_actions_the_workers_latest_look(tmp_path: Path) -> None:
    from watchdog.agent.flames import FlameKeeper

    keeper = FlameKeeper(FlameStore(tmp_path), max_workers=2)
    log = EventLog()
    spin, idle = recorded("spin-py311"), recorded("idle-py311")
    keeper.looked(1, idle)
    keeper.looked(1, spin)  # the latest look counts
    keeper.looked(2, idle)
    keeper.looked(3, idle)  # bounded: worker 1, the oldest, is dropped ...
    keeper.looked(1, spin)  # ... and comes back with its next look
    on_stacks = log.add(
        Event("rule_firing", "spin", worker=1, rule="r", evidence={"signals": {"stack_spin_confidence": 3}})
    )
    on_memory = log.add(Event("rule_firing", "ramp", worker=1, rule="m", evidence={"signals": {"rss_bytes": 1e9}}))
    recycle = log.add(Event("recycle_started", "recycling", worker=1, rule="r"))
    unknown = log.add(Event("recycle_started", "recycling", worker=99, rule="r"))
    target = log.add(Event("rule_firing", "all failing", rule="p", evidence={"signals": {"stack_x": 1}}))
    kept = [await keeper.keep(e) for e in (on_stacks, on_memory, recycle, unknown, target)]
    assert [r is not None for r in kept] == [True, False, True, False, False]
    assert "_deliver_cancellation" in (tmp_path / on_stacks.evidence["flamegraph"].rsplit("/", 1)[1]).read_text()
    assert recycle.evidence["flamegraph"] != on_stacks.evidence["flamegraph"]
    keeper.forget(1)
    assert keeper.samples_for(log.add(Event("recycle", "done", worker=1))) is None


@pytest.mark.anyio
async def test_the_keeper_as_an_event_log_listener_writes_in_its_own_task(tmp_path: Path) -> None:
    from watchdog.agent.flames import FlameKeeper

    keeper = FlameKeeper(FlameStore(tmp_path), queue=1)
    log = EventLog()
    log.listeners.append(keeper.on_event)
    keeper.looked(7, recorded("spin-py311"))
    first = log.add(Event("recycle_started", "recycling", worker=7, rule="r"))
    second = log.add(Event("recycle", "recycled", worker=7, rule="r"))  # the queue (1) is full: dropped
    log.add(Event("worker_new", "watching", worker=7))  # not evidence of anything: not queued
    assert keeper.dropped == 1
    keeper.close()
    with anyio.fail_after(10):
        await keeper.run()  # writes what was queued, then returns
    assert "flamegraph" in first.evidence
    assert "flamegraph" not in second.evidence
    assert [r.meta["event"] for r in keeper.store.records()] == [first.id]
