"""Flame graphs kept as evidence: a bounded directory of HTML files, one per stack look that fired a rule or action.

``FlameStore.save(key, samples, meta=...)`` renders the samples (``watchdog.flamegraph``), writes the file
atomically, records ``meta`` (the event it belongs to: target, worker, rule, why) beside it, and then removes
the oldest files until at most ``keep`` remain and together they take at most ``max_bytes``. The files outlive
the watchdog (they are evidence for the morning after); a new store over the same directory picks them up and
keeps enforcing the bounds. File names are made here and checked on the way back in (``path``), so a name from
a URL can never leave the directory.

Writing is blocking file I/O: an async caller uses ``asave`` (a worker thread).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from watchdog.agent.events import Event
from watchdog.agent.stacks import StackLook
from watchdog.discovery import WorkerId
from watchdog.signals.stacks import StackSamples

if TYPE_CHECKING:
    from watchdog.flamegraph import Section

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.html")
URL_PREFIX = "/v1/flamegraphs/"
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class FlameRecord:
    """One stored flame graph: its file ``name`` (and ``url`` on the watchdog's server), ``size`` in bytes, when it
    was written (``created``, Unix time) and what it is evidence of (``meta``)."""

    name: str
    size: int
    created: float
    meta: dict[str, Any]

    @property
    def url(self) -> str:
        return URL_PREFIX + self.name

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "size": self.size, "created": self.created, **self.meta}


class FlameStore:
    """The last ``keep`` flame graphs under ``directory``, at most ``max_bytes`` in all (oldest removed first)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        keep: int = 50,
        max_bytes: int = 20 << 20,
        wall: Callable[[], float] = time.time,
        private: bool = False,
    ) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if private:  # a directory in a shared temp dir that someone else made first is not ours to write into
            for d in (self.dir, self.dir.parent):
                st = d.lstat()
                if st.st_uid != os.getuid() or not d.is_dir() or d.is_symlink():
                    raise PermissionError(f"{d} is not a directory of this user's; set flamegraphs.dir")
        self.keep = max(0, keep)
        self.max_bytes = max(0, max_bytes)
        self._wall = wall
        self._seq = itertools.count(1)
        self._prune()

    def save(
        self,
        key: str,
        samples: StackSamples | Sequence[Section],
        *,
        title: str = "",
        meta: dict[str, Any] | None = None,
    ) -> FlameRecord | None:
        """Render and keep one flame graph; ``key`` (an event id, ``rule-worker``) goes into its name.

        ``samples`` is one process's samples, or several ``Section``\\ s for one file. Returns the record, or None
        when the store keeps nothing (``keep`` or ``max_bytes`` zero) or the file alone exceeds ``max_bytes``.
        """
        if self.keep == 0 or self.max_bytes == 0:
            return None
        from watchdog.flamegraph import Section, render_html  # here: loaded once a rule or action fires

        now = self._wall()
        meta = dict(meta or {})
        sections = [Section(f"process {samples.pid}", samples)] if isinstance(samples, StackSamples) else samples
        title = title or f"flame graph: {key}"
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
        text = render_html(sections, title=title, subtitle=f"taken {when} by mcp-watchdog")
        data = text.encode()
        if len(data) > self.max_bytes:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
        name = f"{stamp}-{_SLUG.sub('-', key).strip('-')[:80] or 'flame'}-{next(self._seq)}.html"
        meta.setdefault("title", title)
        self._write(self.dir / name, data)
        self._write(self.dir / (name + ".json"), json.dumps(meta, default=str).encode())
        self._prune()
        return FlameRecord(name, len(data), now, meta)

    async def asave(
        self,
        key: str,
        samples: StackSamples | Sequence[Section],
        *,
        title: str = "",
        meta: dict[str, Any] | None = None,
    ) -> FlameRecord | None:
        """``save`` in a worker thread, for the event loop."""
        return await anyio.to_thread.run_sync(lambda: self.save(key, samples, title=title, meta=meta))

    def path(self, name: str) -> Path | None:
        """The file of a stored flame graph, or None for an unknown or malformed name."""
        if not NAME.fullmatch(name):
            return None
        p = self.dir / name
        return p if p.is_file() else None

    def records(self) -> list[FlameRecord]:
        """Every stored flame graph, newest first."""
        out = []
        for p in self.dir.glob("*.html"):
            if not NAME.fullmatch(p.name):
                continue
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            try:
                meta = json.loads((self.dir / (p.name + ".json")).read_text())
            except (OSError, ValueError):
                meta = {}
            out.append(FlameRecord(p.name, st.st_size, st.st_mtime, meta if isinstance(meta, dict) else {}))
        out.sort(key=lambda r: (r.created, r.name), reverse=True)
        return out

    def _write(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _prune(self) -> None:
        total = 0
        for i, r in enumerate(self.records()):
            total += r.size
            if i >= self.keep or total > self.max_bytes:
                (self.dir / r.name).unlink(missing_ok=True)
                (self.dir / (r.name + ".json")).unlink(missing_ok=True)


async def attach_flamegraph(store: FlameStore, event: Event, samples: StackSamples) -> FlameRecord | None:
    """Keep a flame graph of ``samples`` as evidence of ``event`` (a rule that fired on a stack look, an action):
    saved as ``event-ID``, its URL put in ``event.evidence["flamegraph"]`` for ``/v1/status``, the page and the
    notifications built from the event afterwards. A failure is put in the evidence (``flamegraph_error``), never
    raised."""
    who = f"worker {event.worker}" if event.worker is not None else "the target"
    meta = {"event": event.id, "kind": event.kind, "target": event.target, "worker": event.worker,
            "rule": event.rule, "why": f"{event.kind} {event.rule or ''}".strip()}  # fmt: skip
    from watchdog.flamegraph import Section

    try:
        rec = await store.asave(
            f"event-{event.id}-{event.rule or event.kind}",
            [Section(f"{who} ({event.target})", samples, event.message)],
            title=f"{who}: {event.kind} {event.rule or ''}".strip(),
            meta=meta,
        )
    except Exception as exc:  # noqa: BLE001 - evidence that cannot be kept is said so, never a crash of the agent
        event.evidence["flamegraph_error"] = str(exc) or type(exc).__name__
        return None
    if rec is not None:
        event.evidence["flamegraph"] = rec.url
    return rec


ACTION_EVENTS = frozenset({"recycle_started", "recycle", "budget_denied"})


class FlameKeeper:
    """Which events get a flame graph, from which samples: the agent's one object for flame graphs.

    The agent tells it every stack look (``looked``) and every event it adds (``on_event``, an ``EventLog``
    listener, with ``run`` as a task of its task group; or ``keep``, awaited): an event of a rule that fired on
    stack signals (``stack_*`` in its evidence), and every action on a worker (``ACTION_EVENTS``), gets the flame
    graph of that worker's latest look. The latest samples are kept for at most ``max_workers`` workers (a worker's
    are dropped when it is ``forget``-ed).

    Wiring (``watchdog.agent.wiring``): the agent's stack sampler is wrapped in ``KeepingSampler`` (which calls
    ``looked``), ``on_event`` listens to the agent's event log, and ``run`` is a task beside the agent.
    """

    def __init__(self, store: FlameStore, *, max_workers: int = 256, queue: int = 16) -> None:
        self.store = store
        self.max_workers = max_workers
        self._latest: dict[int, StackSamples] = {}
        self._send, self._receive = anyio.create_memory_object_stream[tuple[Event, StackSamples]](queue)
        self.dropped = 0

    def on_event(self, event: Event) -> None:
        """An ``EventLog`` listener: queue the event for ``run`` with the samples it should get, taken now (the
        worker's latest look when the event happened). Never blocks: a full queue drops it (counted)."""
        samples = self.samples_for(event)
        if samples is None:
            return
        try:
            self._send.send_nowait((event, samples))
        except anyio.WouldBlock:
            self.dropped += 1

    def close(self) -> None:
        """No more events: ``run`` returns once the queued ones are written."""
        self._send.close()

    async def run(self) -> None:
        """Write the queued flame graphs, one at a time, until cancelled (a task of the agent's task group) or
        ``close``-d. Events that share one look (a rule firing, then the recycle it started) share its file."""
        written: dict[int, tuple[StackSamples, str]] = {}
        async for event, samples in self._receive:
            seen = written.get(id(samples))
            if seen is not None and seen[0] is samples and self.store.path(seen[1].rsplit("/", 1)[-1]) is not None:
                event.evidence["flamegraph"] = seen[1]
                continue
            rec = await attach_flamegraph(self.store, event, samples)
            if rec is not None:
                if len(written) >= 32:
                    written.pop(next(iter(written)))
                written[id(samples)] = (samples, rec.url)

    def looked(self, pid: int, samples: StackSamples | None) -> None:
        if samples is None:
            return
        self._latest.pop(pid, None)
        self._latest[pid] = samples
        while len(self._latest) > self.max_workers:
            self._latest.pop(next(iter(self._latest)))

    def forget(self, pid: int) -> None:
        self._latest.pop(pid, None)

    def samples_for(self, event: Event) -> StackSamples | None:
        """The samples ``event`` should get a flame graph of, or None."""
        if event.worker is None or "flamegraph" in event.evidence:
            return None
        signals = event.evidence.get("signals")
        fired_on_stacks = (
            event.kind == "rule_firing" and isinstance(signals, dict) and any(k.startswith("stack_") for k in signals)
        )
        if fired_on_stacks or event.kind in ACTION_EVENTS:
            return self._latest.get(event.worker)
        return None

    async def keep(self, event: Event) -> FlameRecord | None:
        samples = self.samples_for(event)
        return None if samples is None else await attach_flamegraph(self.store, event, samples)


class KeepingSampler:
    """A stack sampler that tells the keeper of every look it takes (wraps ``StackLooker``, same interface)."""

    def __init__(self, inner: Any, keeper: FlameKeeper) -> None:
        self.inner = inner
        self.keeper = keeper

    async def look(
        self,
        worker: WorkerId,
        duration: float,
        rate: int,
        in_flight: dict[str, float] | None = None,
        *,
        kin: str | None = None,
    ) -> StackLook:
        look: StackLook = await self.inner.look(worker, duration, rate, in_flight=in_flight, kin=kin)
        self.keeper.looked(worker.pid, look.samples)
        return look


def default_directory() -> Path:
    """Where the sidecar keeps flame graphs when the config names no directory: systemd's ``$STATE_DIRECTORY``
    (``StateDirectory=`` in the unit), else a directory of this user's under the system temp directory."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / "flamegraphs"
    return Path(tempfile.gettempdir()) / f"mcp-watchdog-{os.getuid()}" / "flamegraphs"
