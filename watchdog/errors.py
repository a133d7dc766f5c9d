"""Every error the watchdog raises on purpose, in one place.

The tree::

    WatchdogError                 base of everything below; never raised bare
    ├── ConfigError               one bad spot in a YAML file: file, line, key path and what would be valid
    ├── ConfigErrors              every ConfigError found in one file (or one config and the files it names)
    └── GuardError                raised inside a server by the in-process library, ``watchdog.guard``
        └── Saturated             a Limiter found no free slot within its ``max_wait``: backpressure made visible

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
