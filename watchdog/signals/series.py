"""Small bounded time series per worker: what rules read.

A ``Series`` keeps at most ``maxlen`` points and never grows; a ``SignalStore`` holds one series per signal
name for one worker. Reading a signal that has no fresh point gives ``None``: missing data is missing, never
a healthy zero.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    t: float
    value: float


class Series:
    """Points of one signal, oldest first, at most ``maxlen`` of them."""

    __slots__ = ("_points",)

    def __init__(self, maxlen: int = 256) -> None:
        self._points: deque[Point] = deque(maxlen=maxlen)

    def add(self, t: float, value: float) -> None:
        self._points.append(Point(t, value))

    def latest(self) -> Point | None:
        return self._points[-1] if self._points else None

    def since(self, t: float) -> list[Point]:
        return [p for p in self._points if p.t >= t]

    def __iter__(self) -> Iterator[Point]:
        return iter(self._points)

    def __len__(self) -> int:
        return len(self._points)


def slope(points: Iterable[Point]) -> float | None:
    """Least-squares slope (value per second) of the points, or None with fewer than 3 points or no time spread.

    One pass with times taken from the first point (it runs for two windows of every worker every second)."""
    pts = points if isinstance(points, list) else list(points)
    n = len(pts)
    if n < 3:
        return None
    t0 = pts[0].t
    st = sv = stt = stv = 0.0
    for p in pts:
        x, y = p.t - t0, p.value
        st += x
        sv += y
        stt += x * x
        stv += x * y
    var = stt - st * st / n
    if var <= 0:
        return None
    return (stv - st * sv / n) / var


class SignalStore:
    """Every signal of one worker. ``staleness`` is how old a point may be and still count as current.

    ``history`` names the signals whose past is read (slopes, the status page's charts): those keep ``maxlen``
    points; every other signal keeps only its latest few, since only its current value is ever read. (Keeping 256
    points of every signal of every worker was a megabyte and a half of the watchdog's memory for nothing.)
    None keeps the full history of every signal.
    """

    SHORT = 2

    def __init__(self, *, maxlen: int = 256, history: Collection[str] | None = None) -> None:
        self._series: dict[str, Series] = {}
        self._maxlen = maxlen
        self._history = None if history is None else frozenset(history)
        self._stale_after: dict[str, float] = {}

    def record(self, t: float, values: dict[str, float | None], *, stale_after: float) -> None:
        """Record one sample of several signals at time ``t``; a None value records nothing (missing)."""
        for name, value in values.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            series = self._series.get(name)
            if series is None:
                long = self._history is None or name in self._history
                series = self._series[name] = Series(self._maxlen if long else self.SHORT)
            series.add(t, float(value))
            self._stale_after[name] = stale_after

    def series(self, name: str) -> Series | None:
        return self._series.get(name)

    def current(self, name: str, now: float) -> float | None:
        """The latest value if it is fresh at ``now``, else None."""
        series = self._series.get(name)
        point = series.latest() if series is not None else None
        if point is None or now - point.t > self._stale_after.get(name, math.inf):
            return None
        return point.value

    def snapshot(self, now: float) -> dict[str, float]:
        """Every signal's current (fresh) value."""
        out = {}
        for name in self._series:
            value = self.current(name, now)
            if value is not None:
                out[name] = value
        return out

    def names(self) -> list[str]:
        return sorted(self._series)
