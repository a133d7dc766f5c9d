"""Every error the watchdog raises on purpose, in one place.

The tree::

    WatchdogError                 base of everything below; never raised bare
    ├── ConfigError               one bad spot in a YAML file: file, line, key path and what would be valid
    ├── ConfigErrors              every ConfigError found in one file (or one config and the files it names)
    └── ProbeError                a probe asked to run in a way it cannot (a target URL that is not http(s))

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
