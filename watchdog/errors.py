"""Every error the watchdog raises on purpose, in one place.

The tree::

    WatchdogError                 base of everything below; never raised bare
    ├── ConfigError               one bad spot in a YAML file: file, line, key path and what would be valid
    ├── ConfigErrors              every ConfigError found in one file (or one config and the files it names)
    ├── ProbeError                a probe asked to run in a way it cannot (a target URL that is not http(s))
    ├── MetricsUnavailable        a metrics endpoint did not answer with Prometheus text (url, reason)
    ├── InspectError              a target process cannot be inspected (pid); the CLI exits 3
    │   ├── ProcessGone           no such process, or it exited while we looked (pid, during)
    │   ├── NotPython             the process is not a CPython interpreter (pid, exe)
    │   ├── UnsupportedPython     a CPython that diagnose cannot read (pid, version, supported)
    │   ├── PtraceDenied          not allowed to read the process's memory (pid, detail): root/CAP_SYS_PTRACE
    │   ├── PySpyMissing          no py-spy executable to sample stacks with (searched)
    │   └── SamplerFailed         py-spy failed for a reason not above (pid, returncode, stderr)
    └── GuardError                raised inside a server by the in-process library, ``watchdog.guard``
        └── Saturated             a Limiter found no free slot within its ``max_wait``: backpressure made visible

A target that fails a probe is not an error: ``run_probe`` returns that as a ``ProbeResult``.

A ``WatchdogError`` is an expected failure with a message fit for an operator: the CLI prints it and exits
with a documented code, never with a traceback. Anything else that escapes is a bug.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class WatchdogError(Exception):
    """Base class of the watchdog's deliberate errors; the message is written for an operator."""


class ConfigError(WatchdogError):
    """Raised when a configuration, rule pack or probe file says something the watchdog cannot take.

    It knows where: ``file`` and 1-based ``line`` (either may be unknown) and ``key``, the dotted path of the
    offending key (``targets[0].match.cmdline``). ``str()`` gives the form editors and CI logs understand::

        watchdog.yaml:12: targets[0].match: unknown key 'cmdlin' (did you mean 'cmdline'?)
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, key: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.key = key

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
            where += ": "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class ConfigErrors(WatchdogError):
    """Raised when a file holds one or more ``ConfigError``; iterating gives them in file order."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.file or "", e.line or 0))
        super().__init__("\n".join(str(e) for e in self.errors))

    def __iter__(self) -> Iterator[ConfigError]:
        return iter(self.errors)

    def __len__(self) -> int:
        return len(self.errors)


class ProbeError(WatchdogError):
    """Raised when a probe cannot be run as asked, before any target is contacted (a URL that is not http(s)).

    ``probe`` names the probe definition. A target that fails the probe never raises: that is a result.
    """

    def __init__(self, message: str, *, probe: str = "") -> None:
        super().__init__(message)
        self.probe = probe


class MetricsUnavailable(WatchdogError):
    """Raised when a metrics endpoint is down, times out, or answers with something that is not Prometheus text.

    ``url`` is what was asked and ``reason`` what went wrong. Missing data is missing, not healthy: callers show
    this as a state of its own, never as "no requests in flight".
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"metrics at {url} unavailable: {reason}")
        self.url = url
        self.reason = reason


class InspectError(WatchdogError):
    """Raised when a target process cannot be inspected; ``pid`` names it. The CLI maps it to exit code 3."""

    def __init__(self, pid: int, message: str) -> None:
        super().__init__(message)
        self.pid = pid


class ProcessGone(InspectError):
    """Raised when the process does not exist, or exits while it is being inspected (``during`` says when)."""

    def __init__(self, pid: int, during: str = "") -> None:
        msg = f"process {pid} exited {during}" if during else f"no such process: {pid}"
        super().__init__(pid, msg)
        self.during = during


class NotPython(InspectError):
    """Raised when the process is not a CPython interpreter (``exe`` is what it runs, when that could be read)."""

    def __init__(self, pid: int, exe: str) -> None:
        super().__init__(pid, f"process {pid} is not a Python process (it runs {exe or 'an unknown executable'})")
        self.exe = exe


class UnsupportedPython(InspectError):
    """Raised when the process runs a CPython that diagnose cannot read: ``version`` it runs, ``supported`` range."""

    def __init__(self, pid: int, version: str, supported: str) -> None:
        super().__init__(
            pid, f"process {pid} runs Python {version}, which diagnose does not support (supported: {supported})"
        )
        self.version = version
        self.supported = supported


PTRACE_HELP = (
    "reading another process's Python stacks needs the right to ptrace it: run as root (sudo), or give the "
    "watchdog the CAP_SYS_PTRACE capability; in Kubernetes set shareProcessNamespace: true on the pod and add "
    "SYS_PTRACE to the watchdog container's securityContext.capabilities.add"
)


class PtraceDenied(InspectError):
    """Raised when the kernel refuses to let us read the process (py-spy or /proc said permission denied).

    The message says exactly what is needed (root or CAP_SYS_PTRACE; in Kubernetes ``shareProcessNamespace``
    plus the ``SYS_PTRACE`` capability); ``detail`` is what refused us.
    """

    def __init__(self, pid: int, detail: str) -> None:
        super().__init__(pid, f"permission denied inspecting process {pid} ({detail}): {PTRACE_HELP}")
        self.detail = detail


class PySpyMissing(InspectError):
    """Raised when no py-spy executable is found; ``searched`` lists where we looked. Install: pip install py-spy."""

    def __init__(self, pid: int, searched: list[str]) -> None:
        super().__init__(
            pid,
            "py-spy is not installed, so Python stacks cannot be sampled (pip install py-spy); looked in: "
            + ", ".join(searched),
        )
        self.searched = searched


class SamplerFailed(InspectError):
    """Raised when py-spy fails for a reason none of the other errors name; ``stderr`` is its last words."""

    def __init__(self, pid: int, returncode: int | None, stderr: str) -> None:
        super().__init__(pid, f"py-spy failed on process {pid} (exit code {returncode}): {stderr.strip()[:500]}")
        self.returncode = returncode
        self.stderr = stderr


class GuardError(WatchdogError):
    """Base class of the errors ``watchdog.guard`` raises inside a server; catch it to handle them all."""


class Saturated(GuardError):
    """Raised when a ``watchdog.guard.Limiter`` could not give the caller a slot within its ``max_wait``.

    This is backpressure reaching the caller instead of a pile of waiting work: answer it (an MCP tool error, an
    HTTP 503 with ``Retry-After``), do not retry in a tight loop. It carries what the caller needs to say so:
    ``name`` of the limiter, its ``limit``, how many callers were ``in_flight`` and ``waiting`` when it gave up,
    how long this caller ``waited`` (seconds), and ``retry_after``, a suggestion in seconds (at least 1) drawn
    from how long recent callers waited for a slot.
    """

    def __init__(
        self, name: str, *, limit: int, in_flight: int, waiting: int, waited: float, retry_after: float
    ) -> None:
        self.name = name
        self.limit = limit
        self.in_flight = in_flight
        self.waiting = waiting
        self.waited = waited
        self.retry_after = retry_after
        super().__init__(
            f"{name}: no free slot within {waited:.3g} s ({in_flight} of {limit} in flight, {waiting} waiting); "
            f"retry after {retry_after:.3g} s"
        )
