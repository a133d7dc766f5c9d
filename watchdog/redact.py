"""Everything that leaves the watchdog passes here: secrets become ``***``, non-finite numbers become JSON-safe.

What leaves: webhook payloads, ``/v1/status``, log lines, ``watchdog diagnose`` output. What a secret is:

- an argument or ``KEY=value`` pair whose name looks secret (``--api-key=sk-…``, ``--password hunter2``,
  ``PGPASSWORD=…``, ``auth_token: …``): the value;
- the user-info of a URL (``postgres://app:pass@db`` → ``postgres://***@db``) and every query value
  (``?token=abc`` → ``?token=***``);
- ``Authorization``-style credentials (``Bearer …``, ``Basic …``);
- every value the config took from the environment through ``${NAME}`` (the config loader calls ``remember``);
- whatever matches an extra pattern from ``redact.patterns`` in the config.

Redaction errs on the side of hiding: a query value that was not secret is still ``***``. A name "looks secret"
when it contains ``password``, ``passwd``, ``secret``, ``token``, ``credential``, ``apikey``, ``private``, or has
``key``, ``auth``, ``pwd``, ``cookie`` or ``session`` as one of its ``_``/``-``/``.``-separated words.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "***"
_STRONG = re.compile(r"(?i)passw(?:or)?d|secret|token|credential|api_?key|private")
_WEAK = re.compile(r"(?i)(?:^|[-_.])(?:key|auth|pwd|cookie|session|sig|signature|authorization)(?:$|[-_.])")
_MIN_REMEMBERED = 4
"""Shorter values taken from the environment are not hidden: ``${PORT}`` = ``80`` is no secret, and hiding every
``80`` would garble everything else."""

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/\s@?#]+)@")
_URL_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^\s?#]*\?)([^\s#\"']*)")
_QUERY_PAIR = re.compile(r"([^&=;]+)=([^&;]*)")
_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{4,}")
# name=value or name: value, with the name optionally a flag (--api-key=…); the value runs to whitespace or quote
_PAIR = re.compile(r"(?<![\w.\-])(--?)?([A-Za-z_][\w.\-]*)(\"?\s*[=:]\s*|\s+)(?!-)(\"[^\"]*\"|'[^']*'|[^\s,;&\"'}]+)")


def looks_secret(name: str) -> bool:
    """Does a key, flag or variable name look like it holds a secret?"""
    name = name.lstrip("-")
    return bool(_STRONG.search(name) or _WEAK.search(name))


class Redactor:
    """Replaces secrets in text, argument lists and JSON-like values. Thread-safe; values can be added any time."""

    def __init__(self, values: Iterable[str] = (), patterns: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._values_re: re.Pattern[str] | None = None
        self._patterns: list[re.Pattern[str]] = [re.compile(p) for p in patterns]
        for v in values:
            self.remember(v)

    def remember(self, value: str) -> None:
        """Hide ``value`` wherever it appears from now on (values from ``${ENV}``, tokens read at run time)."""
        if len(value) < _MIN_REMEMBERED:
            return
        with self._lock:
            if value in self._values:
                return
            self._values.add(value)
            alternatives = sorted(self._values, key=len, reverse=True)  # longest first: one may contain another
            self._values_re = re.compile("|".join(re.escape(v) for v in alternatives))

    def add_patterns(self, patterns: Iterable[str]) -> None:
        """Extra regular expressions; every match becomes ``***``."""
        with self._lock:
            self._patterns = [*self._patterns, *(re.compile(p) for p in patterns)]

    def text(self, s: str) -> str:
        """``s`` with every secret replaced by ``***``."""
        values_re = self._values_re
        if values_re is not None:
            s = values_re.sub(MASK, s)
        for p in self._patterns:
            s = p.sub(MASK, s)
        s = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", s)
        s = _URL_QUERY.sub(lambda m: m.group(1) + _QUERY_PAIR.sub(lambda q: f"{q.group(1)}={MASK}", m.group(2)), s)
        s = _CREDENTIAL.sub(lambda m: f"{m.group(1)} {MASK}", s)
        return _PAIR.sub(self._pair, s)

    @staticmethod
    def _pair(m: re.Match[str]) -> str:
        flag, name, sep, value = m.group(1) or "", m.group(2), m.group(3), m.group(4)
        if not looks_secret(name) or value.strip("\"'") == MASK:
            return m.group(0)
        if sep.strip() == "" and not flag:
            return m.group(0)  # "name value" counts only for flags (--password hunter2), not for prose
        quote = value[0] if value[0] in "\"'" else ""
        return f"{flag}{name}{sep}{quote}{MASK}{quote}"

    def argv(self, args: Iterable[str]) -> list[str]:
        """A command line with secrets hidden: ``--api-key=X``, ``--api-key X``, ``KEY=X`` and any URL secrets."""
        out: list[str] = []
        hide_next = False
        for a in args:
            if hide_next and not a.startswith("-"):
                out.append(MASK)
                hide_next = False
                continue
            hide_next = a.startswith("-") and "=" not in a and looks_secret(a)
            out.append(self.text(a))
        return out

    def value(self, obj: Any) -> Any:
        """A JSON-like value (dicts, lists, strings, numbers) with secrets hidden and non-finite numbers as text.

        A string under a key that looks secret is hidden whole; a list of strings is read as a command line.
        """
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, float):
            return json_number(obj)
        if isinstance(obj, dict):
            return {
                k: MASK if isinstance(v, str) and v and isinstance(k, str) and looks_secret(k) else self.value(v)
                for k, v in obj.items()
            }
        if isinstance(obj, (list, tuple)):
            if obj and all(isinstance(x, str) for x in obj):
                return self.argv(obj)
            return [self.value(x) for x in obj]
        return obj


def json_number(v: float) -> float | str:
    """A float as JSON can carry it: ``inf``, ``-inf`` and ``nan`` as strings (bare ``Infinity`` is not JSON)."""
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


REDACTOR = Redactor()
"""The process's redactor: the config loader remembers ``${ENV}`` values here, every outward channel uses it."""


def remember(value: str) -> None:
    REDACTOR.remember(value)


def outward(obj: Any, *, redactor: Redactor | None = None) -> Any:
    """``obj`` made fit to leave the watchdog: secrets hidden, numbers JSON-safe."""
    return (redactor or REDACTOR).value(obj)
