"""Fakes for driving the agent without processes, py-spy or time: a clock, a process table, recorded looks.

``World`` holds pretend workers: each has a CPU share, a loop state and a fate on each signal (a spinning
worker ignores SIGTERM and dies on SIGKILL; a healthy one exits on SIGTERM). The agent sees them through the
same seams the real things use: ``Scanner.scan``, ``read_process``, the recycler's ``send`` and ``identity``.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import yaml

from watchdog.actions.notify import Notifier
from watchdog.actions.recycle import Recycler
from watchdog.agent.loop import Agent
from watchdog.agent.sources import ProcessReading
from watchdog.agent.stacks import StackLook
from watchdog.config import Config, load_config
from watchdog.discovery import TargetView, WorkerId
from watchdog.rules import LoadedRules, load_rules


class Clock:
    """Manual time; ``auto`` seconds pass on every read (the recycler's waits poll it)."""

    def __init__(self, t: float = 1000.0, auto: float = 0.0) -> None:
        self.t = t
        self.auto = auto

    def __call__(self) -> float:
        self.t += self.auto
        return self.t


@dataclass
class Proc:
    id: WorkerId
    cpu: float = 1.0  # share of a core
    runnable: float | None = None  # share of the time its loop wanted a core (a crowded machine: > cpu)
    outside_selector: bool = False
    ignores_term: bool = False
    cpu_seconds: float = 0.0
    runnable_seconds: float = 0.0
    last: float | None = None


@dataclass
class Table:
    """The pretend process table of one target, ``demo``."""

    clock: Clock
    procs: dict[int, Proc] = field(default_factory=dict)
    signals: list[tuple[int, str]] = field(default_factory=list)
    next_pid: int = 100
    respawn: bool = True

    def spawn(self, **kw: Any) -> Proc:
        self.next_pid += 1
        p = Proc(WorkerId(self.next_pid, 1.0e9 + self.next_pid), **kw)
        self.procs[p.id.pid] = p
        return p

    def scan(self) -> list[TargetView]:
        return [TargetView("demo", workers=sorted(p.id for p in self.procs.values()))]

    def read(self, worker: WorkerId, t: float) -> ProcessReading | None:
        p = self.procs.get(worker.pid)
        if p is None or p.id != worker:
            return None
        if p.last is not None:
            p.cpu_seconds += p.cpu * (t - p.last)
            p.runnable_seconds += (p.cpu if p.runnable is None else p.runnable) * (t - p.last)
        p.last = t
        return ProcessReading(
            t, p.cpu_seconds, 100 << 20, 20, 4, 2, loop_outside_selector=p.outside_selector,
            loop_runnable_seconds=p.runnable_seconds,
        )  # fmt: skip

    def alive(self, worker: WorkerId) -> bool:
        p = self.procs.get(worker.pid)
        return p is not None and p.id == worker

    def send(self, pid: int, sig: int) -> None:
        self.signals.append((pid, signal.Signals(sig).name))
        p = self.procs[pid]
        if sig == signal.SIGKILL or (sig == signal.SIGTERM and not p.ignores_term):
            del self.procs[pid]
            if self.respawn:
                self.spawn()


class Looks:
    """Stack looks from a script: what each pid's next look says."""

    def __init__(self) -> None:
        self.by_pid: dict[int, StackLook] = {}
        self.taken: list[int] = []
        self.kins: list[str | None] = []  # the kin each look was taken with (its target)

    async def look(
        self,
        worker: WorkerId,
        duration: float,
        rate: int,
        in_flight: dict[str, float] | None = None,
        *,
        kin: str | None = None,
    ) -> StackLook:
        self.taken.append(worker.pid)
        self.kins.append(kin)
        return self.by_pid.get(worker.pid) or look("busy")


def look(kind: str, confidence: float = 3.0, **signals: float) -> StackLook:
    values: dict[str, float | None] = {
        "stack_samples": 50.0,
        "stack_spin_confidence": confidence if kind == "spin" else 0.0,
        "stack_blocked_confidence": confidence if kind == "blocked" else 0.0,
        "stack_busy_confidence": confidence if kind == "busy" else 0.0,
        **signals,
    }
    return StackLook(values, {"kind": kind, "confidence": "high", "summary": f"recorded {kind}", "evidence": []})


class Recorder(Notifier):
    """A notifier that keeps what it is given instead of posting it."""

    def __init__(self) -> None:
        super().__init__([])
        self.sent: list[dict[str, Any]] = []

    def submit(self, payload: dict[str, Any]) -> None:
        self.sent.append(payload)


def config(tmp: Path, rules: list[dict[str, Any]] | None = None, **overrides: Any) -> tuple[Config, LoadedRules]:
    doc: dict[str, Any] = {
        "targets": [{"name": "demo", "match": {"pid": 1}, "recycle": {"grace": "3s", "replacement_timeout": "5s"}}],
        "intervals": {"process": "1s", "metrics": "1s", "stacks": "2s", "probes": "2s"},
        **overrides,
    }
    paths = []
    if rules is not None:
        (tmp / "rules.yaml").write_text(yaml.safe_dump({"rules": rules}))
        paths = [str(tmp / "rules.yaml")]
        doc["rules"] = paths
    (tmp / "watchdog.yaml").write_text(yaml.safe_dump(doc))
    cfg = load_config(tmp / "watchdog.yaml")
    return cfg, load_rules(cfg.rules)


@dataclass
class Rig:
    agent: Agent
    clock: Clock
    table: Table
    looks: Looks
    notes: Recorder

    async def tick(self, seconds: float = 1.0) -> None:
        """One process round (and a stacks round) ``seconds`` after the previous one."""
        self.clock.t += seconds
        await self.agent.process_round()
        await self.agent.stacks_round()
        await self.settle()

    async def settle(self) -> None:
        """Let action chains run until none is left (bounded: fakes never block)."""
        for _ in range(10_000):
            await anyio.lowlevel.checkpoint()
            if not self.agent.judge.chains:
                return
        raise AssertionError(f"action chains still running: {self.agent.judge.chains}")

    def kinds(self) -> list[str]:
        return [e.kind for e in self.agent.events.recent()]


@contextmanager
def rig(cfg: Config, rules: LoadedRules, table: Table | None = None) -> Iterator[Rig]:
    clock = table.clock if table is not None else Clock()
    table = table or Table(clock)
    looks, notes = Looks(), Recorder()
    recycler = Recycler(send=table.send, identity=table.alive, clock=Clock(auto=0.05), poll=0)
    agent = Agent(
        cfg, rules, clock=clock, wall=clock, discovery=table, read_process=table.read, memory_limit=lambda pid: None,
        recycler=recycler, notifier=notes, stack_sampler=looks,
    )  # fmt: skip
    yield Rig(agent, clock, table, looks, notes)
