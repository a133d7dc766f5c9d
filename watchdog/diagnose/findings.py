"""The findings ``watchdog diagnose`` may add to a process's state verdict (``watchdog.diagnose.verdicts``):
``memory_growth`` and ``fd_growth``, each from a steady climb over the window's polls; and ``evaluate``, every
verdict for one process."""

from __future__ import annotations

import math

from watchdog.diagnose import knowledge as k
from watchdog.diagnose.evidence import ProcessEvidence
from watchdog.diagnose.verdicts import Confidence, MiB, Thresholds, Verdict, state_verdict


def _slope(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope (per second) and r² of (t, value) points."""
    n = len(points)
    if n < 3:
        return 0.0, 0.0
    mt = sum(p[0] for p in points) / n
    mv = sum(p[1] for p in points) / n
    stt = sum((p[0] - mt) ** 2 for p in points)
    svv = sum((p[1] - mv) ** 2 for p in points)
    if stt == 0:
        return 0.0, 0.0
    stv = sum((p[0] - mt) * (p[1] - mv) for p in points)
    slope = stv / stt
    r2 = (stv * stv) / (stt * svv) if svv > 0 else 0.0
    return slope, r2


def memory_verdict(ev: ProcessEvidence, t: Thresholds = Thresholds()) -> Verdict | None:
    """``memory_growth`` when RSS climbs steadily over the window, with the cgroup limit in view."""
    pts = [(p.t, float(p.rss_bytes)) for p in ev.polls]
    slope, r2 = _slope(pts)
    growth = ev.last.rss_bytes - ev.first.rss_bytes
    if growth < t.rss_min_growth or slope < t.rss_min_slope:
        return None
    lines = [
        f"RSS {ev.first.rss_bytes / MiB:.0f} -> {ev.last.rss_bytes / MiB:.0f} MiB over {ev.window_s:.1f} s "
        f"({slope / MiB:.1f} MiB/s, r² {r2:.2f} over {len(pts)} looks)"
    ]
    data: dict[str, float | int | str | None] = {
        "rss_start_bytes": ev.first.rss_bytes,
        "rss_end_bytes": ev.last.rss_bytes,
        "slope_bytes_per_s": round(slope),
        "r2": round(r2, 3),
    }
    cg = ev.cgroup
    if cg is not None and cg.limit_bytes is not None and cg.usage_bytes is not None:
        left = cg.limit_bytes - cg.usage_bytes
        eta = left / slope if slope > 0 else math.inf
        lines.append(
            f"cgroup {cg.version} limit {cg.limit_bytes / MiB:.0f} MiB, {cg.usage_bytes / MiB:.0f} MiB used: "
            f"at this rate the limit is reached in about {eta:.0f} s"
        )
        data["seconds_to_limit"] = round(eta, 1)
    elif cg is not None:
        lines.append(f"cgroup {cg.version} has no memory limit: the machine's memory is the limit")
    steady = r2 >= 0.8 and growth >= 4 * t.rss_min_growth
    return Verdict("memory_growth", "warning", "high" if steady else "medium",
                   f"memory growing {slope / MiB:.1f} MiB/s", tuple(lines), k.ADVICE_MEMORY, data)  # fmt: skip


def fd_verdict(ev: ProcessEvidence, t: Thresholds = Thresholds()) -> Verdict | None:
    """``fd_growth`` when open file descriptors (sockets, mostly) climb over the window."""
    pts = [(p.t, float(p.num_fds)) for p in ev.polls]
    slope, r2 = _slope(pts)
    growth = ev.last.num_fds - ev.first.num_fds
    if growth < t.fd_min_growth or slope < t.fd_min_slope:
        return None
    socks0, socks1 = sum(ev.first.sockets.values()), sum(ev.last.sockets.values())
    states = ", ".join(f"{s} {n}" for s, n in sorted(ev.last.sockets.items(), key=lambda x: -x[1]))
    lines = [
        f"open fds {ev.first.num_fds} -> {ev.last.num_fds} over {ev.window_s:.1f} s ({slope:.1f}/s)",
        f"inet sockets {socks0} -> {socks1} ({states or 'none'})",
    ]
    data: dict[str, float | int | str | None] = {
        "fds_start": ev.first.num_fds,
        "fds_end": ev.last.num_fds,
        "slope_per_s": round(slope, 2),
        "sockets_start": socks0,
        "sockets_end": socks1,
    }
    conf: Confidence = "high" if growth >= 4 * t.fd_min_growth and r2 >= 0.7 else "medium"
    return Verdict("fd_growth", "warning", conf, f"open fds growing {slope:.1f}/s", tuple(lines),
                   k.ADVICE_FDS, data)  # fmt: skip


def evaluate(ev: ProcessEvidence, t: Thresholds = Thresholds()) -> list[Verdict]:
    """Every verdict for one process: the state verdict first, then the findings."""
    out = [state_verdict(ev, t)]
    for finding in (memory_verdict(ev, t), fd_verdict(ev, t)):
        if finding is not None:
            out.append(finding)
    return out
