"""Build ``ProcessEvidence`` from stacks recorded off real processes (``data/*.raw``, py-spy ``record --format
raw --threads --idle --full-filenames`` of ``target.py``) plus chosen process figures, for verdict tests that
need no process and no sleep."""

from __future__ import annotations

import time
from pathlib import Path

from watchdog.diagnose.evidence import Poll, ProcessEvidence
from watchdog.signals.cgroup import CgroupMemory
from watchdog.signals.interpreter import Interpreter
from watchdog.signals.process import ProcessInfo, Snapshot
from watchdog.signals.stacks import Keep, LocalsSeries, StackSamples, parse_dump, parse_raw

DATA = Path(__file__).with_name("data")
MiB = 1 << 20


def recorded(name: str) -> StackSamples:
    return parse_raw((DATA / f"{name}.raw").read_text(), duration_s=2.0, rate_hz=100)


def recorded_locals(name: str, first: int | None = None, keep: Keep = Keep()) -> LocalsSeries:  # noqa: B008 - frozen
    """The ``py-spy dump --locals`` series recorded with ``name``'s stacks (the same process), or its ``first``;
    each dump parsed keeping what ``keep`` says (all of it by default)."""
    lines = [ln for ln in (DATA / f"{name}.locals.jsonl").read_text().splitlines() if ln.strip()][:first]
    return LocalsSeries(tuple(parse_dump(ln, i * 0.05, keep) for i, ln in enumerate(lines)), len(lines))


def evidence(
    stacks: StackSamples | str,
    *,
    cpu: float,
    window: float = 2.5,
    rss: tuple[int, int] = (100 * MiB, 100 * MiB),
    fds: tuple[int, int] = (12, 12),
    sockets: dict[str, int] | None = None,
    clients: int = 0,
    in_flight: dict[str, float] | None = None,
    state: str = "R",
    cgroup: CgroupMemory | None = None,
    packages: dict[str, str] | None = None,
    locals: LocalsSeries | str | None = None,
    locals_error: str | None = None,
    runqueue: float = 0.0,
) -> ProcessEvidence:
    """Evidence of one process whose main (first) thread used ``cpu`` % over ``window`` seconds and waited
    ``runqueue`` % of it for a CPU (a busy machine)."""
    st = recorded(stacks) if isinstance(stacks, str) else stacks
    tid = st.threads[0].tid
    info = ProcessInfo(tid, 1, time.time() - 600, ("python", "server.py"), "/usr/bin/python3.11", "root", "process")
    socks = sockets or {}

    def snap(at: float, r: int, f: int) -> Snapshot:
        used = cpu / 100 * at
        waited = {tid: runqueue / 100 * at}
        return Snapshot(at, used, {tid: used}, r, f, 1, socks, clients, 10, 10, (), {tid: (state, "")}, waited)

    n = 12
    polls = tuple(
        Poll(
            window * i / (n - 1),
            rss[0] + (rss[1] - rss[0]) * i // (n - 1),
            fds[0] + (fds[1] - fds[0]) * i // (n - 1),
            {tid: state},
        )
        for i in range(n)
    )
    interp = Interpreter("3.11.7", "/usr/bin/python3.11", (), packages or {"anyio": "4.16.0"})
    series = recorded_locals(locals) if isinstance(locals, str) else locals
    return ProcessEvidence(info, snap(0.0, rss[0], fds[0]), snap(window, rss[1], fds[1]), polls, st, interp, cgroup,
                           {tid: "MainThread"}, in_flight, None, series, locals_error)  # fmt: skip
