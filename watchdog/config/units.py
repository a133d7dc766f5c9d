"""Durations (``30s``, ``1m30s``, ``250ms``) and sizes (``512Mi``, ``2G``, ``1048576``) as operators write them.

Both parsers are strict and pure: they take text, return seconds or bytes, and raise ``ValueError`` with a
message that shows a valid example. Nothing is evaluated.
"""

from __future__ import annotations

import re

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGTP]i?|[KMGTP]B|B)?")
_SIZE_UNITS: dict[str | None, int] = {
    None: 1,
    "B": 1,
    **{f"{p}i": 1024 ** (i + 1) for i, p in enumerate("KMGTP")},
    **{p: 1000 ** (i + 1) for i, p in enumerate("KMGTP")},
    **{f"{p}B": 1000 ** (i + 1) for i, p in enumerate("KMGTP")},
}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30s``, ``1.5s``, ``250ms``, ``5m``, ``1h30m`` or ``0``.

    A bare number other than 0 is refused: ``30`` could mean seconds or milliseconds, and a watchdog that
    guesses wrong waits a thousand times too long.
    """
    s = text.strip()
    if s == "0":
        return 0.0
    if not s:
        raise ValueError("empty duration; write one like '30s', '250ms', '5m' or '1h30m'")
    total, pos = 0.0, 0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s):
        if re.fullmatch(r"\d+(?:\.\d+)?", s):
            raise ValueError(f"duration {text!r} has no unit; write '{s}s' for seconds or '{s}ms' for milliseconds")
        raise ValueError(f"invalid duration {text!r}; write one like '30s', '250ms', '5m' or '1h30m'")
    return total


def parse_size(text: str) -> int:
    """Bytes in a size such as ``512Mi`` (2^20), ``2G`` or ``2GB`` (10^9), ``100Ki``, ``64B`` or ``1048576``.

    The suffixes are Kubernetes' (``Ki Mi Gi Ti Pi`` binary, ``K M G T P`` decimal), so a limit copied from a
    pod spec means the same here.
    """
    s = text.strip()
    m = _SIZE.fullmatch(s)
    if not s or m is None:
        raise ValueError(f"invalid size {text!r}; write one like '512Mi', '2Gi', '100M' or a number of bytes")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def format_duration(seconds: float) -> str:
    """The shortest exact form ``parse_duration`` reads back (``90.0`` -> ``1m30s``)."""
    if seconds == 0:
        return "0"
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms" if ms < 1000 else f"{seconds:g}s"
    out, rest = "", ms // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out


def format_size(n: int) -> str:
    """A size in the largest binary unit that divides it exactly (``536870912`` -> ``512Mi``)."""
    for unit, size in (("Pi", 1024**5), ("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if n and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)
