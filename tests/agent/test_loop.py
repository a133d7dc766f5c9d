"""The agent's loop with fakes (clock, process table, recorded stack looks): timing, dedupe, budget, dry run,
pause, state across a restart, status. No process, no py-spy; one test runs the real ``run`` (rounds 50 ms
apart, for about a second), the rest drive the rounds themselves: the whole file runs in about two seconds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from tests.agent.fakes import Clock, Rig, Table, config, look, rig
from watchdog.actions.state import StateFile
from watchdog.agent.loop import Agent

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]


async def spin_scene(r: Rig) -> int:
    """Two workers; the first starts spinning: 100 % CPU, and its looks say spin."""
    bad, _ = r.table.spawn(), r.table.spawn()
    await r.tick()
    bad.cpu, bad.ignores_term = 1.0, True
    r.looks.by_pid[bad.id.pid] = look("spin")
    return bad.id.pid


async def test_a_spin_fires_on_its_first_look_and_recycles_only_that_worker(tmp_path: Path) -> None:
    cfg, rules = config(tmp_path)
    with rig(cfg, rules) as r:
        async with anyio.create_task_group() as tg:
            r.agent.act_in(tg)
            onset = r.clock.t
            pid = await spin_scene(r)
            other = next(p for p in r.table.procs if p != pid)
            r.table.procs[other].cpu = 0.01
            fired_at = None
            for _ in range(6):
                await r.tick()
                if fired_at is None and "rule_firing" in r.kinds():
                    fired_at = r.clock.t
        assert fired_at is not None
        print(f"\nfake spin: onset -> firing {fired_at - onset:.1f} s (fake clock); signals sent {r.table.signals}")
        assert fired_at - onset <= 3.0  # the first look decides: no fixed hold after it
        assert r.table.signals == [(pid, "SIGTERM"), (pid, "SIGKILL")]  # the spin ignores SIGTERM
        assert other in r.table.procs
        note, closed = r.notes.sent  # firing, then resolved once the worker is gone: receivers close what opened
        assert note["rule"] == "cancel-delivery-spin"
        assert note["status"] == "firing"
        assert note["evidence"]["stack_verdict"]["kind"] == "spin"
        assert note["evidence"]["recycle"]["outcome"] == "recycled"
        assert (closed["status"], closed["rule"], closed["worker"]) == ("resolved", note["rule"], pid)
        assert closed["evidence"]["resolved_because"] == f"worker {pid} is gone"


async def test_the_look_evidence_is_attached_and_the_diagnosis_does_not_delay_the_sigterm(tmp_path: Path) -> None:
    cfg, rules = config(tmp_path)
    order: list[str] = []
    with rig(cfg, rules) as r:

        async def diagnoser(worker: object) -> dict[str, object]:
            order.append("diagnose started")
            await anyio.lowlevel.checkpoint()
            order.append(f"diagnose sees signals {len(r.table.signals)}")
            return {"verdicts": [{"kind": "spin"}]}

        r.agent.actuator.diagnoser = diagnoser
        async with anyio.create_task_group() as tg:
            r.agent.act_in(tg)
            await spin_scene(r)
            for _ in range(4):
                await r.tick()
        note = r.notes.sent[0]
        assert note["evidence"]["diagnosis"] == {"verdicts": [{"kind": "spin"}]}
        assert order[0] == "diagnose started"
        assert order[1] != "diagnose sees signals 0", "the diagnosis ran before the SIGTERM went out"


async def test_a_replacement_discovery_took_in_before_the_wait_began_is_still_the_replacement(tmp_path: Path) -> None:
    # Discovery runs beside a recycle: it may take the new worker in between the old one's exit and the start of
    # the wait for a replacement (seen in a fresh-clone run under load: "no replacement worker appeared").
    cfg, rules = config(tmp_path)
    seen: list[Agent] = []

    class Discovering(Table):
        def send(self, pid: int, sig: int) -> None:
            super().send(pid, sig)
            for view in self.scan():  # what the next process round does, before the recycler looks
                seen[0].world.sync(seen[0].targets[view.name], view, lambda pid: None)

    with rig(cfg, rules, Discovering(Clock())) as r:
        seen.append(r.agent)
        async with anyio.create_task_group() as tg:
            r.agent.act_in(tg)
            pid = await spin_scene(r)
            for _ in range(4):
                await r.tick()
        rec = r.notes.sent[0]["evidence"]["recycle"]
        new = max(r.table.procs)
        assert r.table.signals == [(pid, "SIGTERM"), (pid, "SIGKILL")]
        assert (rec["outcome"], rec["replacement"]) == ("recycled", new), rec["steps"]


async def test_two_rules_on_one_blocked_worker_give_one_recycle_and_one_notification(tmp_path: Path) -> None:
    both = [
        {"name": name, "severity": "critical", "when": {"all": ["loop_wait_outside_selector == 1"]},
         "actions": ["diagnose", "recycle", "notify"], "advice": name}
        for name in ("event-loop-blocked", "event-loop-stalled")
    ]  # fmt: skip
    cfg, rules = config(tmp_path, both)
    with rig(cfg, rules) as r:
        async with anyio.create_task_group() as tg:
            r.agent.act_in(tg)
            bad, _ = r.table.spawn(ignores_term=True), r.table.spawn()
            await r.tick()
            bad.outside_selector = True
            for _ in range(3):
                await r.tick()
        assert [s for s in r.table.signals if s[1] == "SIGTERM"] == [(bad.id.pid, "SIGTERM")]
        (note,) = [n for n in r.notes.sent if n["status"] == "firing"]
        rules_in_note = {note["rule"], *(j["rule"] for j in note["evidence"]["joined"])}
        assert rules_in_note == {"event-loop-blocked", "event-loop-stalled"}
        assert "budget_denied" not in r.kinds()
        assert "recycle_joined" in r.kinds()


async def test_a_spent_budget_alerts_instead_of_acting(tmp_path: Path) -> None:
    cfg, rules = config(tmp_path, budget={"max_recycles": 1})
    with rig(cfg, rules) as r:
        async with anyio.create_task_group() as tg:
            r.agent.act_in(tg)
            a, b, _ = r.table.spawn(ignores_term=True), r.table.spawn(ignores_term=True), r.table.spawn()
            await r.tick()
            for p in (a, b):
                r.looks.by_pid[p.id.pid] = look("spin")
            for _ in range(8):
                await r.tick()
        terms = [pid for pid, sig in r.table.signals if sig == "SIGTERM"]
        assert len(terms) == 1
        denied = [n for n in r.notes.sent if n["status"] == "budget_denied"]
        assert len(denied) == 1
        assert "recycles in the last" in denied[0]["evidence"]["budget"]


async def test_dry_run_records_what_it_would_do_and_sends_nothing(tmp_path: Path) -> None:
    cfg, rules = config(tmp_path, dry_run=True)
    with rig(cfg, rules) as r:
        async with anyio.create_task_group() as tg:
            r.agent.act_in(tg)
            await spin_scene(r)
            for _ in range(4):
                await r.tick()
        assert r.table.signals == []
        assert any("would recycle" in e.message for e in r.agent.events.recent())
        (note,) = r.notes.sent  # dry run: the worker stays, nothing resolves
        assert note["dry_run"] is True
        assert note["evidence"]["recycle"]["outcome"] == "dry_run"


async def test_the_pause_switch_stops_actions_and_they_resume_within_one_tick(tmp_path: Path) -> None:
    switch = tmp_path / "paused"
    switch.write_text("true\n")
    cfg, rules = config(tmp_path, pause_file=str(switch))
    with rig(cfg, rules) as r:
        async with anyio.create_task_group() as tg:
            r.agent.act_in(tg)
            pid = await spin_scene(r)
            for _ in range(4):
                await r.tick()
            assert r.table.signals == []
            assert r.agent.status()["paused"] is True
            switch.write_text("false\n")
            r.agent.rules.forget(next(k for k in r.agent.targets["demo"].workers if k.startswith(f"{pid}@")))
            await r.tick()
            await r.tick()
        assert r.table.signals[0] == (pid, "SIGTERM")
        assert r.agent.status()["paused"] is False


async def test_the_budget_and_events_survive_a_restart(tmp_path: Path) -> None:
    cfg, rules = config(tmp_path, budget={"max_recycles": 1}, state_dir=str(tmp_path / "state"))
    with rig(cfg, rules) as r:
        async with anyio.create_task_group() as tg:
            r.agent.act_in(tg)
            await spin_scene(r)
            for _ in range(4):
                await r.tick()
        assert [s for _, s in r.table.signals].count("SIGTERM") == 1
        table, clock_t = r.table, r.clock.t
    with rig(cfg, rules, table) as r2:  # the watchdog restarted: a new agent on the same state directory
        r2.clock.t = clock_t + 5
        assert r2.agent.actuator.restore() == []
        assert "recycle" in r2.kinds(), "the earlier recycle's event is back in /v1/status"
        async with anyio.create_task_group() as tg:
            r2.agent.act_in(tg)
            again = table.spawn(ignores_term=True)
            r2.looks.by_pid[again.id.pid] = look("spin")
            for _ in range(4):
                await r2.tick()
        assert [s for _, s in table.signals].count("SIGTERM") == 1, "the restarted watchdog forgot its budget"
        assert "budget_denied" in r2.kinds()


async def test_a_recycle_cut_short_by_a_kill_is_finished_by_the_next_run(tmp_path: Path) -> None:
    cfg, rules = config(tmp_path, state_dir=str(tmp_path / "state"))
    with rig(cfg, rules) as r:
        victim = r.table.spawn(ignores_term=True)
        wall = r.clock.t
        doc = {
            "version": 1, "budget": {}, "events": [],
            "recycles": {victim.id.key: {"pid": victim.id.pid, "create_time": victim.id.create_time,
                                         "target": "demo", "term_sent": wall - 1.0}},
        }  # fmt: skip
        (tmp_path / "state").mkdir()
        (tmp_path / "state" / "state.json").write_text(json.dumps(doc))
        unfinished = r.agent.actuator.restore()
        assert unfinished == [("demo", victim.id, 1.0)]
        await r.agent.actuator.resume(*unfinished[0])
        assert r.table.signals == [(victim.id.pid, "SIGKILL")]  # SIGTERM had been sent: the rest of the grace
        assert "recycle_resumed" in r.kinds()
        assert StateFile(tmp_path / "state").load().recycles == {}


async def test_a_corrupt_state_file_is_a_warning_and_a_fresh_start(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.json").write_text('{"version": 1, "budget": ')
    cfg, rules = config(tmp_path, state_dir=str(tmp_path / "state"))
    with rig(cfg, rules) as r:
        assert r.agent.actuator.restore() == []
        assert "not valid JSON" in (r.agent.status()["state_problem"] or "")


async def test_status_is_strict_json_and_dead_workers_leave_no_series(tmp_path: Path) -> None:
    cfg, rules = config(tmp_path)
    with rig(cfg, rules) as r:
        async with anyio.create_task_group() as tg:
            r.agent.act_in(tg)
            pid = await spin_scene(r)
            for _ in range(4):
                await r.tick()
        doc = r.agent.status()
        json.dumps(doc, allow_nan=False)
        assert {w["pid"] for w in doc["targets"][0]["workers"]} == set(r.table.procs)
        from prometheus_client import generate_latest

        exposed = generate_latest(r.agent.metrics.registry).decode()
        assert f'pid="{pid}"' not in exposed


async def test_the_target_series_are_served_before_the_first_scan(tmp_path: Path) -> None:
    # /healthz answers before the first process round: a scrape then must already find the series the shipped
    # Prometheus rules read (a CI run on a busy machine scraped in that gap and found no target series)
    from prometheus_client import generate_latest

    cfg, rules = config(tmp_path)
    with rig(cfg, rules) as r:
        exposed = generate_latest(r.agent.metrics.registry).decode()
        assert 'watchdog_target_discovered{target="demo"} 0.0' in exposed
        assert 'watchdog_workers{target="demo"} 0.0' in exposed
        assert 'watchdog_budget_denied_total{target="demo"} 0.0' in exposed
        r.table.spawn()
        await r.tick()
        exposed = generate_latest(r.agent.metrics.registry).decode()
        assert 'watchdog_target_discovered{target="demo"} 1.0' in exposed


async def test_looks_are_taken_with_their_target_as_kin_through_the_flame_keeper(tmp_path: Path) -> None:
    # the kin is what lets one --locals series that decided churn stand for every worker of the target; the flame
    # keeper's wrapper sits between the agent and the looker in production, and must pass it on
    from watchdog.agent.flames import FlameKeeper, FlameStore, KeepingSampler

    cfg, rules = config(tmp_path)
    with rig(cfg, rules) as r:
        r.agent.stack_sampler = KeepingSampler(r.looks, FlameKeeper(FlameStore(tmp_path / "flames")))
        for _ in range(2):
            r.table.spawn(cpu=1.0)
        for _ in range(3):
            await r.tick()
        assert len(r.looks.taken) >= 2
        assert set(r.looks.kins) == {"demo"}


async def test_a_worker_that_heats_up_is_looked_at_at_once(tmp_path: Path) -> None:
    """Even when its previous look was moments ago: the jump is how a spin begins (default 5 s look gap)."""
    cfg, rules = config(tmp_path, intervals={"process": "1s", "metrics": "1s", "stacks": "5s", "probes": "2s"})
    with rig(cfg, rules) as r:
        p = r.table.spawn(cpu=0.01)
        await r.tick()
        await r.tick()
        looked = list(r.looks.taken)
        assert looked == [p.id.pid]  # the first look, on the first round
        p.cpu = 1.0
        await r.tick()  # the round that first sees 100 % CPU: 2 s after the previous look, not 5
        assert len(r.looks.taken) == 2


async def test_a_starved_hot_worker_is_not_looked_at_every_second(tmp_path: Path) -> None:
    """On a crowded machine a busy worker gets half a core while its loop wants all of it. The schedule must read
    one heat figure when it decides and when it records a look: mixing CPU and demand once made every round a
    "CPU jump" and a look a second (17 % of a core for the watchdog)."""
    cfg, rules = config(tmp_path, intervals={"process": "1s", "metrics": "1s", "stacks": "5s", "probes": "2s"})
    with rig(cfg, rules) as r:
        r.table.spawn(cpu=0.5, runnable=1.0)
        r.looks.by_pid.clear()
        for _ in range(30):
            await r.tick()
        print(f"\nstarved busy worker: {len(r.looks.taken)} looks in 30 s")
        assert len(r.looks.taken) <= 6  # the first, then backing off while looks find healthy work


async def test_the_running_agent_considers_stack_looks_after_each_round_and_has_no_timer_for_them(
    tmp_path: Path,
) -> None:
    """The real ``run``: what makes a look due is read by the rounds, so the looks are considered after each one
    (a worker heating up is looked at on the round that sees it); a timer of their own woke the sidecar twice a
    second for nothing. Rounds every 50 ms of real time; waits for conditions, never for the clock."""
    cfg, rules = config(tmp_path, intervals={"process": "0.05s", "metrics": "60s", "stacks": "5s", "probes": "60s"})
    with rig(cfg, rules) as r:
        p = r.table.spawn(cpu=0.01)
        rounds, checks, progressed = [0], [0], [anyio.Event()]
        process_round, stacks_round = r.agent.process_round, r.agent.stacks_round

        async def counted_process() -> None:
            await process_round()
            rounds[0] += 1
            progressed[0].set()

        async def until(condition: Callable[[], bool]) -> None:
            while not condition():
                await progressed[0].wait()
                progressed[0] = anyio.Event()

        async def counted_stacks() -> None:
            checks[0] += 1
            await stacks_round()

        r.agent.process_round, r.agent.stacks_round = counted_process, counted_stacks  # type: ignore[method-assign]
        async with anyio.create_task_group() as tg:
            tg.start_soon(r.agent.run)
            with anyio.fail_after(10):
                await until(lambda: bool(r.looks.taken))  # the first look, after the first rounds
                r.clock.t += 2.0  # past ONSET_GAP since that look
                p.cpu = 1.0
                await until(lambda: len(r.looks.taken) >= 2)  # the round that sees the jump makes the look due
                await until(lambda: rounds[0] >= 20)
            tg.cancel_scope.cancel()
        assert r.looks.taken[:2] == [p.id.pid, p.id.pid]
        # one check after each round that read something (the first process and metrics rounds may share one), and
        # none on a timer: a 0.5 s timer would have checked once in ten of these rounds
        assert rounds[0] - 2 <= checks[0] <= rounds[0] + 2, (checks[0], rounds[0])
