"""Finding each target's workers, every tick, by pid, pidfile or command line.

A worker is identified by ``WorkerId(pid, create_time)``, never by pid alone: pids are reused, and a signal sent
to a reused pid would hit an innocent process. Discovery is synchronous psutil work; the agent runs it in a
thread.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from watchdog.config import Target

log = logging.getLogger("watchdog.discovery")

NOT_SERVERS = frozenset(
    (
        *("less", "more", "most", "tail", "head", "cat", "grep", "egrep", "fgrep", "rg", "ag", "vim", "vi", "nvim"),
        *("nano", "emacs", "man", "ps", "pgrep", "pkill", "top", "htop", "watch", "strace", "ltrace", "gdb"),
        *("py-spy", "journalctl", "ssh", "tmux", "screen", "sudo", "su"),
    )
)
"""Executables a ``cmdline`` match never adopts: a pager, editor or search showing the server's name in its
arguments (``less app.log``, ``grep gunicorn``) is not the server."""


@dataclass(frozen=True, order=True)
class WorkerId:
    """One process, for as long as it lives: its pid and its create time (seconds since the epoch)."""

    pid: int
    create_time: float

    @property
    def key(self) -> str:
        return f"{self.pid}@{self.create_time:.2f}"

    def matches(self, proc: psutil.Process) -> bool:
        """True if ``proc`` is still this very process (same pid and same create time)."""
        try:
            return proc.pid == self.pid and abs(proc.create_time() - self.create_time) < 0.01
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return False

    @classmethod
    def of(cls, proc: psutil.Process) -> WorkerId:
        return cls(proc.pid, proc.create_time())


def still_same(worker: WorkerId) -> bool:
    """Re-check identity: the pid exists, is not a zombie, and was created when we first saw it."""
    try:
        proc = psutil.Process(worker.pid)
        return worker.matches(proc) and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return False


@dataclass
class TargetView:
    """What discovery found for one target on this tick."""

    name: str
    roots: list[WorkerId] = field(default_factory=list)
    workers: list[WorkerId] = field(default_factory=list)
    problem: str | None = None
    matched: list[str] = field(default_factory=list)
    """For a ``cmdline`` match: what matched, as ``pid 123 (gunicorn): gunicorn app:app …``."""

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "roots": [w.pid for w in self.roots],
            "workers": [{"pid": w.pid, "create_time": w.create_time} for w in self.workers],
            "problem": self.problem,
            "matched": self.matched,
        }


ProcessLister = Callable[[], Iterable[psutil.Process]]


_ATTRS = ["pid", "ppid", "cmdline", "create_time"]


class CommandLines:
    """The machine's processes with their command lines (``.info``, as ``psutil.process_iter`` gives them), for
    ``cmdline`` matches, reading again only what can have changed.

    ``psutil.process_iter`` reads every process's ``cmdline`` and ``stat`` at each call: 3.3 ms of CPU on a box
    with 72 processes, every second, for the command line the README's example config matches on (a third of a
    percent of a core; several percent on a host with hundreds of processes). A command line changes when its
    process execs or sets its title (setproctitle), which servers do as they start: a process younger than
    ``young`` seconds is read again on every call, an older one is kept until it exits. The whole table is read
    again at least every ``max_age`` seconds all the same (a pid that exits and comes back as another process
    between two calls, a second apart, would otherwise keep its predecessor's line). Where ``/proc`` cannot be
    listed it asks psutil every time.
    """

    def __init__(
        self,
        *,
        young: float = 10.0,
        max_age: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        list_pids: Callable[[], frozenset[int]] | None = None,
    ) -> None:
        self.young, self.max_age = young, max_age
        self.clock, self.wall = clock, wall
        self.list_pids = list_pids or _proc_pids
        self._procs: dict[int, psutil.Process] = {}
        self._built = -float("inf")
        self.reads = 0  # processes read, for tests and benchmarks

    def __call__(self) -> list[psutil.Process]:
        try:
            pids = self.list_pids()
        except OSError:
            return list(psutil.process_iter(_ATTRS))
        if self.clock() - self._built > self.max_age:
            self._procs, self._built = {}, self.clock()
        for pid in self._procs.keys() - pids:
            del self._procs[pid]
        settled = self.wall() - self.young
        for pid in pids:
            known = self._procs.get(pid)
            if known is not None and (known.info.get("create_time") or 0.0) < settled:
                continue
            self.reads += 1
            try:
                proc = known or psutil.Process(pid)
                proc.info = proc.as_dict(_ATTRS, ad_value=None)
                self._procs[pid] = proc
            except psutil.Error:  # gone between the listing and the read, or a zombie
                self._procs.pop(pid, None)
        return list(self._procs.values())


class ChildIndex:
    """Who is whose child, kept up to date by reading only what changed in the process table.

    ``psutil.Process.children()`` reads ``/proc/PID/stat`` of every process on the machine at each call: ~2 ms
    of CPU a second on a dev box with 140 processes, more on a busy host, for an answer that rarely changes.
    A process's parent changes only when its parent exits (it is re-parented then), so each call lists ``/proc``
    and reads the parent of new pids and of the orphans of pids that went, nothing else. The whole table is
    read again at least every ``max_age`` seconds all the same (a pid reused between two calls would otherwise
    keep its predecessor's parent). Where ``/proc`` cannot be listed it asks psutil every time.
    """

    def __init__(
        self,
        *,
        max_age: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        list_pids: Callable[[], frozenset[int]] | None = None,
    ) -> None:
        self.max_age = max_age
        self.clock = clock
        self.list_pids = list_pids or _proc_pids
        self._ppid: dict[int, int] = {}
        self._built = -float("inf")
        self.reads = 0  # /proc/PID/stat files read, for tests and benchmarks

    def children(self, proc: psutil.Process) -> list[psutil.Process]:
        """``proc``'s children now, as psutil finds them (zombies included)."""
        try:
            pids = self.list_pids()
        except OSError:
            return proc.children()
        self._refresh(pids)
        out = []
        for pid, ppid in self._ppid.items():
            if ppid == proc.pid:
                try:
                    out.append(psutil.Process(pid))
                except psutil.NoSuchProcess:
                    continue
        return out

    def _refresh(self, pids: frozenset[int]) -> None:
        if self.clock() - self._built > self.max_age:
            self._ppid, self._built = {}, self.clock()
        gone = self._ppid.keys() - pids
        orphans = {pid for pid, ppid in self._ppid.items() if ppid in gone and pid in pids}
        for pid in gone:
            del self._ppid[pid]
        fresh = (pids - self._ppid.keys()) | orphans
        self.reads += len(fresh)
        for ppid, pid in _parents(fresh):
            self._ppid[pid] = ppid


def _proc_pids() -> frozenset[int]:
    return frozenset(int(n) for n in os.listdir("/proc") if n.isdigit())


def _parents(pids: Iterable[int]) -> Iterable[tuple[int, int]]:
    """(ppid, pid) of each process that still exists, from ``/proc/PID/stat``."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
        except OSError:  # gone since the listing
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
        fields = data[data.rfind(b")") + 2 :].split(b" ", 2)
        yield int(fields[1]), pid


class Discovery:
    """Resolves configured targets to their current workers."""

    def __init__(self, targets: Iterable[Target], *, lister: ProcessLister | None = None) -> None:
        self.targets = list(targets)
        self._lister = lister or CommandLines()
        self._own = {os.getpid()}
        self._explained: dict[str, list[str]] = {}
        self._regex = {t.name: re.compile(t.match.cmdline) for t in self.targets if t.match.cmdline}
        self._index = ChildIndex()

    def scan(self) -> list[TargetView]:
        table: list[psutil.Process] | None = None
        views = []
        for t in self.targets:
            if t.match.cmdline and table is None:
                table = list(self._lister())
            views.append(self._resolve(t, table or []))
        return views

    def _resolve(self, t: Target, table: list[psutil.Process]) -> TargetView:
        view = TargetView(t.name)
        try:
            roots = self._roots(t, table, view)
        except _NotFound as exc:
            view.problem = str(exc)
            return view
        for root in roots:
            try:
                view.roots.append(WorkerId.of(root))
                children = [c for c in self._index.children(root) if c.status() != psutil.STATUS_ZOMBIE]
                chosen = (
                    children if t.workers == "children" else [root] if t.workers == "self" else (children or [root])
                )
                for proc in chosen:
                    view.workers.append(WorkerId.of(proc))
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            except psutil.AccessDenied as exc:
                view.problem = f"permission denied reading process {exc.pid}: run as the same user or root"
        if not view.workers and view.problem is None:
            view.problem = "the process has no workers right now"
        view.workers.sort()
        return view

    def _roots(self, t: Target, table: list[psutil.Process], view: TargetView) -> list[psutil.Process]:
        m = t.match
        if m.pid is not None:
            return [_process(m.pid, f"no process with pid {m.pid}")]
        if m.pidfile is not None:
            try:
                text = Path(m.pidfile).read_text().strip()
            except FileNotFoundError:
                raise _NotFound(f"pidfile {m.pidfile} does not exist") from None
            except OSError as exc:
                raise _NotFound(f"cannot read pidfile {m.pidfile}: {exc.strerror}") from None
            if not text.isdigit():
                raise _NotFound(f"pidfile {m.pidfile} does not hold a pid (it holds {text[:40]!r})")
            return [_process(int(text), f"pidfile {m.pidfile} names pid {text}, which is not running")]
        regex = self._regex[t.name]
        matched: dict[int, psutil.Process] = {}
        own = self._own  # the watchdog itself; its helpers (py-spy) are in NOT_SERVERS
        skipped: list[str] = []
        for p in table:
            try:
                if p.pid in own:
                    continue
                argv = p.info.get("cmdline") or []
                cmd = " ".join(argv)
                if cmd and regex.search(cmd):
                    if os.path.basename(argv[0]) in NOT_SERVERS:
                        skipped.append(f"pid {p.pid} ({os.path.basename(argv[0])})")
                        continue
                    matched[p.pid] = p
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        roots = sorted((p for p in matched.values() if p.info.get("ppid") not in matched), key=lambda p: p.pid)
        view.matched = [_explain(p) for p in roots]
        if view.matched != self._explained.get(t.name):
            self._explained[t.name] = view.matched
            for line in view.matched:
                log.info("%s: cmdline %r matched %s", t.name, regex.pattern, line)
            if skipped:
                log.info("%s: cmdline %r also matched, not adopted: %s", t.name, regex.pattern, ", ".join(skipped))
        if not roots:
            extra = f" (not adopted: {', '.join(skipped)})" if skipped else ""
            raise _NotFound(f"no process command line matches {regex.pattern!r}{extra}")
        return roots


def _explain(p: psutil.Process) -> str:
    argv = p.info.get("cmdline") or []
    name = os.path.basename(argv[0]) if argv else "?"
    cmd = " ".join(argv)
    return f"pid {p.pid} ({name}): {cmd[:200]}{'…' if len(cmd) > 200 else ''}"


class _NotFound(Exception):
    pass


def _process(pid: int, missing: str) -> psutil.Process:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            raise _NotFound(missing)
        return proc
    except psutil.NoSuchProcess:
        raise _NotFound(missing) from None
