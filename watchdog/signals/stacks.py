"""Python stacks of a running process, sampled from outside with py-spy, aggregated per thread.

One ``py-spy record --format raw`` subprocess samples the target ``rate`` times a second for ``duration``
seconds (we stop it with SIGINT, so durations need not be whole seconds) and writes collapsed stacks with
counts; ``--idle`` keeps the samples of sleeping threads (an event loop waiting in ``select`` is evidence too)
and ``--threads`` keeps native thread ids, which match psutil's, so per-thread CPU joins per-thread stacks.

The API is async and never blocks the event loop: the subprocess is an ``anyio`` process, every wait has a
timeout, ``limiter`` bounds how many py-spy processes run at once, and a cancelled sampler kills and reaps its
py-spy before it returns (no orphans).

Blocking or not: by default py-spy pauses the target for each sample (``nonblocking=False``). Measured on a
real anyio spin (README, "Blocking or nonblocking sampling"; ``bench/sampling_modes.py``), blocking samples
saw ``_deliver_cancellation`` more often on 3.11, 3.12 and 3.13 and 10-20 % more samples were kept; the price
is a pause per sample, measured by ``bench/diagnose_speed.py`` as echo latency with and without a diagnose.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
import anyio.to_thread

from watchdog.errors import (
    InspectError,
    NotPython,
    ProcessGone,
    PtraceDenied,
    PySpyMissing,
    SamplerFailed,
    UnsupportedPython,
)
from watchdog.signals.affinity import pin_to_target

SUPPORTED_PYTHON = "CPython 3.8 to 3.13"
_SUPPORTED_MINORS = range(8, 14)

_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>.*):(?P<line>\d+)\)$")
_THREAD = re.compile(r"^thread \((?P<tid>0x[0-9a-fA-F]+|\d+)\)(?::\s*(?P<name>.*))?$")
_SAMPLES = re.compile(r"Samples:\s*(\d+)\s+Errors:\s*(\d+)")
_SHORT = re.compile(r"^.*/(?:site-packages|dist-packages|lib/python\d+\.\d+)/")


@dataclass(frozen=True, slots=True)
class Frame:
    """One Python frame: function ``name``, source ``path`` (as the target sees it) and ``line``."""

    name: str
    path: str
    line: int

    @property
    def short_path(self) -> str:
        """The path from the package down (``anyio/_backends/_asyncio.py``), as py-spy shows it."""
        return _SHORT.sub("", self.path)

    def __str__(self) -> str:
        return f"{self.name} ({self.short_path}:{self.line})"


@dataclass(frozen=True, slots=True)
class Stack:
    """A distinct stack (``frames`` innermost first, like ``py-spy dump``) and how many samples had it."""

    frames: tuple[Frame, ...]
    count: int


@dataclass(frozen=True)
class ThreadStacks:
    """The samples of one thread: native ``tid``, ``name``, total ``samples``, and its distinct ``stacks``, most
    frequent first."""

    tid: int
    name: str
    samples: int
    stacks: tuple[Stack, ...]

    def count(self, match: Callable[[Stack], bool]) -> int:
        """How many of this thread's samples have a stack for which ``match`` is true."""
        return sum(s.count for s in self.stacks if match(s))

    def count_frame(self, pattern: str | re.Pattern[str]) -> int:
        """How many samples have a frame whose ``name`` matches ``pattern`` (a regex, searched) anywhere."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        seen: dict[str, bool] = {}  # stacks share most of their frames: each name is searched once

        def hit(name: str) -> bool:
            found = seen.get(name)
            if found is None:
                found = seen[name] = rx.search(name) is not None
            return found

        return self.count(lambda s: any(hit(f.name) for f in s.frames))


@dataclass(frozen=True)
class StackSamples:
    """What one sampling run saw: per-thread stacks, the ``samples`` py-spy took (thread-samples: one per thread
    per tick) and the ``errors`` it had (torn reads, mostly with ``nonblocking``), over ``duration_s``."""

    pid: int
    duration_s: float
    rate_hz: int
    nonblocking: bool
    samples: int
    errors: int
    threads: tuple[ThreadStacks, ...]

    def thread(self, tid: int) -> ThreadStacks | None:
        return next((t for t in self.threads if t.tid == tid), None)

    def files(self) -> set[str]:
        """Every source path seen in any frame (to find the target's site-packages)."""
        return {f.path for t in self.threads for s in t.stacks for f in s.frames}


@functools.lru_cache(maxsize=2048)
def _frame(text: str) -> Frame:
    """One ``name (file:line)`` of py-spy's output as a ``Frame``, shared: the same frames recur in every sample of
    every look, and the looks kept for flame graphs held one object per frame per stack. The cache is bounded
    (least recently used out): a busy server shows new lines in every look (the demo under load: 370 frames after
    6 looks, 640 after 24), and at 8192 entries of about 540 bytes it grew the sidecar by megabytes over hours.
    Names and paths are interned: the lines of one function share them."""
    fm = _FRAME.match(text)
    if fm is None:
        return Frame(text, "", 0)
    return Frame(sys.intern(fm.group("name")), sys.intern(fm.group("file")), int(fm.group("line")))


def parse_raw(text: str, *, pid: int = 0, duration_s: float = 0.0, rate_hz: int = 0, nonblocking: bool = False,
              samples: int | None = None, errors: int = 0) -> StackSamples:  # fmt: skip
    """Parse py-spy's ``--format raw --threads`` output (collapsed stacks, outermost first, then a count)."""
    per_thread: dict[int, dict[tuple[Frame, ...], int]] = defaultdict(lambda: defaultdict(int))
    names: dict[int, str] = {}
    for line in text.splitlines():
        body, _, count_text = line.rstrip().rpartition(" ")
        if not body or not count_text.isdigit():
            continue
        parts = body.split(";")
        tid, name = 0, ""
        if parts and (m := _THREAD.match(parts[0])):
            tid = int(m.group("tid"), 16) if m.group("tid").startswith("0x") else int(m.group("tid"))
            name = (m.group("name") or "").strip()
            parts = parts[1:]
        frames = [_frame(part) for part in reversed(parts)]
        names.setdefault(tid, name)
        per_thread[tid][tuple(frames)] += int(count_text)
    threads = []
    for tid, stacks in per_thread.items():
        ordered = sorted((Stack(f, c) for f, c in stacks.items()), key=lambda s: -s.count)
        threads.append(ThreadStacks(tid, names.get(tid, ""), sum(s.count for s in ordered), tuple(ordered)))
    threads.sort(key=lambda t: -t.samples)
    total = sum(t.samples for t in threads)
    return StackSamples(pid, duration_s, rate_hz, nonblocking, total if samples is None else samples, errors,
                        tuple(threads))  # fmt: skip


def find_py_spy(explicit: str | None = None, *, pid: int = 0) -> str:
    """The py-spy to run: ``explicit`` if given (it must exist), else next to this interpreter, else on PATH."""
    candidates = [explicit] if explicit else [str(Path(sys.executable).with_name("py-spy")), "py-spy (on PATH)"]
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise PySpyMissing(pid, candidates)
    local = Path(sys.executable).with_name("py-spy")
    if local.is_file():
        return str(local)
    found = shutil.which("py-spy")
    if found:
        return found
    raise PySpyMissing(pid, candidates)


def classify_failure(pid: int, returncode: int | None, stderr: str) -> InspectError:
    """Map py-spy's complaint to the error that says what to do about it."""
    low = stderr.lower()
    if "permission denied" in low or "operation not permitted" in low:
        first = next((ln for ln in stderr.splitlines() if "ermission" in ln or "permitted" in ln), "py-spy")
        return PtraceDenied(pid, first.strip()[:200])
    if "unsupported version of python" in low:
        m = re.search(r"unsupported version of python:?\s*([\w.+]+)", stderr, re.I)
        return UnsupportedPython(pid, m.group(1) if m else "unknown", SUPPORTED_PYTHON)
    if "no such process" in low or "failed to get process executable name" in low:
        return ProcessGone(pid, "before py-spy could attach")
    if "failed to find python version" in low or "failed to find a python interpreter" in low:
        return NotPython(pid, "no Python interpreter found by py-spy")
    return SamplerFailed(pid, returncode, stderr)


def check_supported(pid: int, version: str) -> None:
    """Raise ``UnsupportedPython`` unless ``version`` (``3.11.7`` or ``3.11``) is one diagnose can read."""
    m = re.match(r"(\d+)\.(\d+)", version)
    if m and (int(m.group(1)) != 3 or int(m.group(2)) not in _SUPPORTED_MINORS):
        raise UnsupportedPython(pid, version, SUPPORTED_PYTHON)


MAX_RAW_BYTES = 16 * 2**20
"""py-spy's raw output folds identical stacks into one counted line: a few KiB to a few hundred KiB. Past this
(a runaway recursion, an attacker's deep stacks) the rest is not read: the samples read are still evidence."""


def _read_bounded(path: str, limit: int) -> str:
    """At most ``limit`` bytes of ``path``, cut at the last whole line."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        data = data[: data.rfind(b"\n", 0, limit) + 1]
    return data.decode(errors="replace")


async def _read_all(stream: anyio.abc.ByteReceiveStream | None, into: bytearray, limit: int = 1 << 16) -> None:
    if stream is None:
        return
    async for chunk in stream:
        if len(into) < limit:
            into.extend(chunk)


async def sample_stacks(
    pid: int,
    *,
    duration: float = 3.0,
    rate: float = 100,
    nonblocking: bool = False,
    py_spy: str | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    grace: float = 5.0,
) -> StackSamples:
    """Sample ``pid``'s Python stacks for ``duration`` seconds at ``rate`` Hz with one py-spy process.

    Raises ``PySpyMissing``, ``PtraceDenied``, ``ProcessGone`` (before attaching), ``NotPython``,
    ``UnsupportedPython`` or ``SamplerFailed``. A target that exits mid-window ends the run early without an
    error: the result's ``duration_s`` says how long it really lasted, and the caller decides what that means.
    ``grace`` bounds how long py-spy may take to write its output after the window (then it is killed).
    """
    exe = find_py_spy(py_spy, pid=pid)
    duration = max(0.2, float(duration))
    hz = max(1, round(rate))
    if limiter is None:
        return await _sample(exe, pid, duration, hz, nonblocking, grace)
    async with limiter:
        return await _sample(exe, pid, duration, hz, nonblocking, grace)


async def _sample(exe: str, pid: int, duration: float, hz: int, nonblocking: bool, grace: float) -> StackSamples:
    with tempfile.TemporaryDirectory(prefix="watchdog-stacks-") as tmp:
        out = os.path.join(tmp, "stacks.raw")
        cmd = [exe, "record", "--pid", str(pid), "--format", "raw", "--output", out, "--rate", str(hz)]
        cmd += ["--duration", str(math.ceil(duration) + 1), "--threads", "--idle", "--full-filenames"]
        if nonblocking:
            cmd.append("--nonblocking")
        err = bytearray()
        started = anyio.current_time()
        proc = await anyio.open_process(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_read_all, proc.stderr, err)
                with anyio.move_on_after(duration):
                    await proc.wait()
                if proc.returncode is None:
                    proc.send_signal(signal.SIGINT)  # py-spy stops sampling and writes what it has
                with anyio.move_on_after(grace):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
        finally:
            await _reap(proc)
        elapsed = anyio.current_time() - started
        stderr = err.decode(errors="replace").replace("\r", "\n")
        path = anyio.Path(out)
        if proc.returncode != 0 or not await path.exists():
            raise classify_failure(pid, proc.returncode, stderr)
        text = await anyio.to_thread.run_sync(_read_bounded, out, MAX_RAW_BYTES)
    m = _SAMPLES.search(stderr)
    samples, errors = (int(m.group(1)), int(m.group(2))) if m else (None, 0)
    return parse_raw(text, pid=pid, duration_s=round(min(elapsed, duration), 3), rate_hz=hz,
                     nonblocking=nonblocking, samples=samples, errors=errors)  # fmt: skip


# ---- py-spy dump --locals: object identities --------------------------------------------------------------------
# ``record`` cannot show local variables; ``dump --locals --json`` can: a frame's arguments and locals, objects as
# ``<CancelScope at 0x7f...>`` (type and address), strings, numbers and small containers by value. A series of
# dumps tells whether the *same* object recurs sample after sample (a cancel scope re-delivered forever) or
# another one each time (healthy timeouts firing). Each dump pauses the target once (unless ``nonblocking``).


@dataclass(frozen=True, slots=True)
class LocalFrame:
    """A frame of one dump with its arguments and locals (name -> py-spy's repr of the value)."""

    frame: Frame
    locals: tuple[tuple[str, str], ...] = ()

    def local(self, name: str) -> str | None:
        return next((v for k, v in self.locals if k == name), None)


@dataclass(frozen=True)
class LocalsDump:
    """One ``py-spy dump --locals``: ``t`` seconds since the series began, each thread's frames (innermost first)."""

    t: float
    threads: tuple[tuple[int, tuple[LocalFrame, ...]], ...]

    def thread(self, tid: int) -> tuple[LocalFrame, ...] | None:
        return next((f for t, f in self.threads if t == tid), None)


@dataclass(frozen=True)
class LocalsSeries:
    """What a series of dumps saw: the ``dumps`` that worked, how many were ``asked`` for, the ``failed`` ones
    (torn reads, mostly with ``nonblocking``) and the last ``error``, over ``duration_s``; ``cpu_s`` is the CPU
    the py-spy processes used (what the watchdog paid; read from this process's reaped children, so py-spy
    processes of other looks finishing meanwhile count too)."""

    dumps: tuple[LocalsDump, ...]
    asked: int
    failed: int = 0
    error: str | None = None
    duration_s: float = 0.0
    cpu_s: float = 0.0


@dataclass(frozen=True)
class Keep:
    """What a series keeps of each dump: one ``thread``'s frames (every thread's when None) and the locals in
    ``names`` (all when None). A dump holds every local of every thread; the spin check reads a few locals of the
    loop thread. Kept whole, a series of 40 dumps held 0.6 MB of reprs (secrets among them, wherever a frame had
    one) and left that much of the allocator's memory pinned beside long-lived objects after it ended."""

    thread: int | None = None
    names: frozenset[str] | None = None


def parse_dump(text: str, t: float = 0.0, keep: Keep = Keep()) -> LocalsDump:
    """Parse ``py-spy dump --json [--locals]`` output: a list of threads, frames innermost first; only what
    ``keep`` names is kept."""
    threads = []
    names = keep.names
    for th in json.loads(text):
        tid = int(th.get("os_thread_id") or th.get("thread_id") or 0)
        if keep.thread is not None and tid != keep.thread:
            continue
        frames = []
        for f in th.get("frames") or []:
            loc = tuple(
                (str(v.get("name")), str(v.get("repr")))
                for v in f.get("locals") or []
                if names is None or v.get("name") in names
            )
            bare = _bare_frame(str(f.get("name", "")), str(f.get("filename", "")), int(f.get("line") or 0))
            frames.append(LocalFrame(bare.frame, loc) if loc else bare)
        threads.append((tid, tuple(frames)))
    return LocalsDump(t, tuple(threads))


@functools.lru_cache(maxsize=1024)
def _bare_frame(name: str, path: str, line: int) -> LocalFrame:
    """A frame without locals, shared: the same frames recur in every dump of a series (as ``_frame`` for the
    recordings), and a fresh object per frame per dump cost 5 KB a dump."""
    return LocalFrame(Frame(sys.intern(name), sys.intern(path), line))


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


async def dump_locals(
    pid: int,
    *,
    count: int = 20,
    interval: float = 0.02,
    max_seconds: float = 2.0,
    nonblocking: bool = False,
    py_spy: str | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    enough: Callable[[list[LocalsDump]], bool] | None = None,
    per_dump: float = 5.0,
    on_target_cpu: int | None = None,
    keep: Keep = Keep(),
) -> LocalsSeries:
    """Up to ``count`` dumps of ``pid`` with locals, ``interval`` apart, for at most ``max_seconds``; stops early
    when ``enough(dumps so far)`` says the question is answered. Never raises for a dump that fails (the series
    says how many did); raises ``PySpyMissing`` when there is no py-spy, ``ProcessGone`` when the process is gone,
    and the mapped ``InspectError`` when the first two dumps fail for a reason that will not go away (no
    permission, not Python). ``on_target_cpu``: a thread id of ``pid``; each dump runs on the CPU that thread
    last ran on (``watchdog.signals.affinity``), so that it catches the thread where it runs. ``keep``: what of each
    dump the series keeps (``Keep``)."""
    exe = find_py_spy(py_spy, pid=pid)
    if limiter is None:
        return await _dumps(exe, pid, count, interval, max_seconds, nonblocking, enough, per_dump, on_target_cpu, keep)
    async with limiter:
        return await _dumps(exe, pid, count, interval, max_seconds, nonblocking, enough, per_dump, on_target_cpu, keep)


async def _reap(proc: anyio.abc.Process) -> None:
    """Kill ``proc`` if it still runs and wait for it, even when the caller is being cancelled."""
    if proc.returncode is None:
        proc.kill()
    with anyio.CancelScope(shield=True):
        await proc.wait()
        await proc.aclose()


async def _run_dump(cmd: list[str], pid: int, tid: int | None) -> tuple[int | None, bytes, bytes]:
    """Run one ``py-spy dump`` to its end (killed when cancelled), on the CPU of ``pid``'s thread ``tid`` if given."""
    out, err = bytearray(), bytearray()
    proc = await anyio.open_process(cmd, stdin=subprocess.DEVNULL)
    try:
        if tid is not None:
            pin_to_target(proc.pid, pid, tid)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_read_all, proc.stdout, out, MAX_RAW_BYTES)
            tg.start_soon(_read_all, proc.stderr, err)
            await proc.wait()
    finally:
        await _reap(proc)
    return proc.returncode, bytes(out), bytes(err)


async def _dumps(exe: str, pid: int, count: int, interval: float, max_seconds: float, nonblocking: bool,
                 enough: Callable[[list[LocalsDump]], bool] | None, per_dump: float,
                 tid: int | None, keep: Keep) -> LocalsSeries:  # fmt: skip
    cmd = [exe, "dump", "--pid", str(pid), "--locals", "--json", "--full-filenames"]
    if nonblocking:
        cmd.append("--nonblocking")
    dumps: list[LocalsDump] = []
    failed, error, asked = 0, None, 0
    started = anyio.current_time()
    cpu0 = await anyio.to_thread.run_sync(_children_cpu)
    while asked < max(1, count) and anyio.current_time() - started < max_seconds:
        asked += 1
        t = anyio.current_time() - started
        with anyio.move_on_after(per_dump) as scope:
            returncode, stdout, stderr_bytes = await _run_dump(cmd, pid, None if nonblocking else tid)
        if scope.cancelled_caught:
            failed, error = failed + 1, f"py-spy dump took over {per_dump:g} s"
            continue
        if returncode != 0:
            stderr = stderr_bytes.decode(errors="replace")
            exc = classify_failure(pid, returncode, stderr)
            gone = isinstance(exc, ProcessGone) and not _exists(pid)
            # a lasting reason (gone, no permission, not Python) ends the series; one torn or raced dump does not
            if gone or (not dumps and failed >= 1 and not isinstance(exc, SamplerFailed | ProcessGone)):
                raise exc
            failed, error = failed + 1, str(exc)[:200]
            continue
        try:
            dumps.append(parse_dump(stdout.decode(errors="replace"), t, keep))
        except (ValueError, TypeError, AttributeError) as exc:
            failed, error = failed + 1, f"unreadable py-spy dump output: {exc}"[:200]
            continue
        if enough is not None and enough(dumps):
            break
        await anyio.sleep(interval)
    cpu1 = await anyio.to_thread.run_sync(_children_cpu)
    return LocalsSeries(tuple(dumps), asked, failed, error, round(anyio.current_time() - started, 3),
                        round(max(0.0, cpu1 - cpu0), 4))  # fmt: skip
