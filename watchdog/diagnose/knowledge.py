"""What we know about the failures diagnose names: the frames that give them away, known-bad versions, advice.

Kept apart from the engine so that the facts (issue numbers, versions, remedies) are reviewed in one place.
"""

from __future__ import annotations

import re

from watchdog.signals.stacks import Frame

# The anyio cancel-delivery loop (anyio #695, #1111, #1257): CancelScope._deliver_cancellation re-arms itself
# with call_soon for as long as a task in the scope swallows the cancellation.
SPIN_FRAME = re.compile(r"_deliver_cancellation$")

# Frames that are the event loop's own machinery, not application work: asyncio, selectors, anyio's and trio's
# cores, sniffio. A sample whose innermost frame is one of these did no application work.
_MACHINERY_PATH = re.compile(
    r"(?:^|/)(?:asyncio/[^/]+\.py|selectors\.py|anyio/_backends/[^/]+|anyio/_core/[^/]+|anyio/lowlevel\.py"
    r"|anyio/abc/[^/]+|trio/_core/.+|sniffio/.+|uvloop/.+|contextvars\.py|threading\.py|queue\.py)$"
)
# The loop waiting for I/O: the selector call (asyncio's selectors, trio's epoll manager). uvloop's wait is C
# code py-spy cannot see; such a loop reads as application work in its last Python frame.
_WAIT_NAME = re.compile(r"(?:^|\.)(?:select|poll|control|get_events)$")
_WAIT_PATH = re.compile(r"(?:^|/)(?:selectors\.py|trio/_core/_io_epoll\.py)$")
# A thread runs an event loop when one of these is on its stack.
LOOP_FRAME = re.compile(r"(?:^|\.)(?:_run_once|run_forever|run_until_complete|unrolled_run)$")

# Kernel wait channels (from /proc/PID/task/TID/wchan) and what a blocked thread is doing there.
WCHAN_MEANING: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"nanosleep|hrtimer"), "sleeping (time.sleep or similar)"),
    (re.compile(r"futex"), "waiting on a lock or condition (futex)"),
    (re.compile(r"sk_wait|tcp_recv|inet_|unix_stream|sock_"), "waiting on a socket"),
    (re.compile(r"pipe_|wait_woken"), "waiting on a pipe or terminal"),
    (re.compile(r"do_sys_poll|poll_schedule|do_select|core_sys_select"), "in poll/select"),
    (re.compile(r"ep_poll|do_epoll_wait"), "in epoll_wait"),
    (re.compile(r"folio|page|blk|io_schedule|jbd2|ext4|nfs"), "waiting on disk I/O"),
)

# Known-bad versions: (package, below this version, what goes wrong).
KNOWN_BAD: tuple[tuple[str, tuple[int, ...], str], ...] = (
    (
        "anyio",
        (4, 6),
        "anyio < 4.6 spins at 100 % CPU in CancelScope._deliver_cancellation when a cancelled task does not "
        "finish promptly (anyio #695); upgrade to >= 4.14.2",
    ),
    (
        "anyio",
        (4, 14, 2),
        "anyio < 4.14.2 spins in CancelScope._deliver_cancellation on cancel-scope misuse across tasks "
        "(anyio #1111); upgrade to >= 4.14.2",
    ),
)


def version_tuple(text: str) -> tuple[int, ...]:
    """``4.14.2`` -> (4, 14, 2); stops at the first part that is not a number (``4.15.0rc1`` -> (4, 15))."""
    out = []
    for part in text.split("."):
        m = re.match(r"\d+", part)
        if not m:
            break
        out.append(int(m.group(0)))
        if m.group(0) != part:
            break
    return tuple(out)


def version_warnings(packages: dict[str, str]) -> list[str]:
    """Warnings for known-bad versions among ``packages`` (name -> version); the most specific one per package."""
    out: dict[str, str] = {}
    for name, below, why in KNOWN_BAD:
        version = packages.get(name)
        if version and version_tuple(version) < below and name not in out:
            out[name] = f"{name} {version}: {why}"
    return list(out.values())


def is_machinery(frame: Frame) -> bool:
    return bool(_MACHINERY_PATH.search(frame.path or frame.short_path))


def is_waiting(frame: Frame) -> bool:
    """True when the innermost frame is the event loop waiting for I/O in its selector."""
    return bool(_WAIT_NAME.search(frame.name) and _WAIT_PATH.search(frame.path or frame.short_path))


def is_library(frame: Frame) -> bool:
    """True for frames from the standard library or installed packages (not the application's own code)."""
    return bool(re.search(r"/(?:site-packages|dist-packages|lib/python\d+\.\d+)/", frame.path))


def wchan_meaning(wchan: str) -> str:
    for rx, meaning in WCHAN_MEANING:
        if rx.search(wchan):
            return meaning
    return f"in the kernel at {wchan}"


ADVICE_SPIN = (
    "Recycle this worker now: it will not recover by itself, and while it spins it ignores SIGTERM "
    "(kill -TERM {pid}; kill -KILL {pid} after the grace period; gunicorn starts a replacement).",
    "Cause: a task inside a cancelled anyio scope swallows the cancellation (catches CancelledError or "
    "BaseException around an await and does not re-raise), so anyio re-delivers it forever "
    "(anyio #695, #1111, #1257). Look for such handlers in the code on the stacks below.",
    "watchdog.guard remedies: bound teardown with cleanup timeouts (anyio.move_on_after(t, shield=True)); its "
    "spin sentinel reports this loop from inside the worker; recycle with gunicorn max_requests + jitter.",
)
ADVICE_BLOCKED = (
    "A blocking call in the event loop thread stops every request on this worker until it returns: run it in "
    "a thread (anyio.to_thread.run_sync / asyncio.to_thread) or use its async equivalent.",
    "If it never returns, recycle the worker (gunicorn's worker timeout kills it only after `timeout` seconds).",
)
ADVICE_BUSY = (
    "CPU-bound work runs in this process; if that is not expected, the hottest frames above are where to look.",
    "Long CPU work in the event loop thread delays every other request on this worker: move it to a thread or "
    "process pool (anyio.to_thread.run_sync, ProcessPoolExecutor) or yield between slices.",
)
ADVICE_MEMORY = (
    "A steady RSS ramp is usually unbounded in-flight work (fire-and-forget tasks, queues without a bound) "
    "toward a slow dependency: bound it with a semaphore and a saturation gauge (watchdog.guard's limiter) "
    "so callers feel backpressure (seed 000).",
    "To buy time, recycle the worker before it reaches the limit (gunicorn max_requests, or the watchdog "
    "sidecar's recycle rule).",
)
ADVICE_FDS = (
    "Open files and sockets grow: an HTTP client created per request and never closed is the usual cause; "
    "create one client (httpx.AsyncClient / aiohttp.ClientSession) per process, reuse it, close it at shutdown "
    "(seed 002).",
    "Recycling the worker releases them for now; the fd limit ends the process otherwise.",
)
