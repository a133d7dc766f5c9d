"""Scrape a server's Prometheus metrics and read per-worker gauges from them.

Servers under gunicorn expose every worker's gauges on one ``/metrics`` page (prometheus_client multiprocess
mode), each sample with a ``pid`` label; ``by_pid`` picks a gauge's value per worker. In-flight gauges (any
name containing ``in_flight``, such as the guard library's ``watchdog_guard_limiter_in_flight``) say
whether a hot worker is serving anything at all.

Parsing is prometheus_client's own parser, in a worker thread; fetching is one aiohttp GET bounded in time
and in size while it streams (a 50 MB or endless page is cut off at ``max_bytes``, never held in memory). A down
endpoint or an oversized page raises ``MetricsUnavailable``: missing data is a state to show, never a zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from watchdog.errors import MetricsUnavailable

if TYPE_CHECKING:
    import aiohttp

IN_FLIGHT = re.compile(r"in_flight")
"""Gauges that count work under way: any ``*in_flight*`` gauge (the guard's limiters, the demo's). Not the
guard's ``connections_active``: a spin's abandoned request never completes, so a spinning worker always shows
one connection active, and "work in flight" would hide the very spin it should help confirm."""


@dataclass(frozen=True)
class MetricSample:
    """One sample line: full ``name`` (with any ``_total``/``_bucket`` suffix), ``labels`` and ``value``."""

    name: str
    labels: dict[str, str]
    value: float


def parse(text: str) -> list[MetricSample]:
    """Every sample in a Prometheus text exposition. Raises ``ValueError`` on text that is not one."""
    from prometheus_client.parser import text_string_to_metric_families

    return [
        MetricSample(s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def series_name(s: MetricSample) -> str:
    """The sample's name with its labels other than ``pid``, as Prometheus writes them: ``x{name="db"}``."""
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()) if k != "pid")
    return f"{s.name}{{{labels}}}" if labels else s.name


def by_pid(samples: list[MetricSample], name: str | re.Pattern[str]) -> dict[int, dict[str, float]]:
    """For samples whose name matches ``name`` (exact string, or a regex searched), value per ``pid`` label and
    series: ``{pid: {'x{name="db"}': value}}`` (two limiters in one worker stay two entries). Samples without a
    numeric ``pid`` label are skipped."""
    out: dict[int, dict[str, float]] = {}
    for s in samples:
        if (s.name != name) if isinstance(name, str) else not name.search(s.name):
            continue
        pid = s.labels.get("pid", "")
        if pid.isdigit():
            out.setdefault(int(pid), {})[series_name(s)] = s.value
    return out


DEFAULT_MAX_BYTES = 4 * 2**20
"""A few MiB: a prometheus_client page of a busy multi-worker server is tens of KiB."""


def size_text(n: int) -> str:
    """``4194304`` -> ``4 MiB``, as the error says it."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


async def scrape(
    url: str,
    *,
    timeout: float = 2.0,
    session: aiohttp.ClientSession | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[MetricSample]:
    """GET ``url`` and parse it; raises ``MetricsUnavailable`` naming the url and what went wrong.

    The body is read in chunks and abandoned past ``max_bytes`` ("metrics body over 4 MiB"); ``timeout`` bounds
    the whole exchange, reading included, and parsing runs in a worker thread so the caller's loop keeps going.
    ``session``, when given, is used (and left open) so a caller scraping every few seconds reuses connections.
    """
    import aiohttp
    import anyio

    async def fetch(http: aiohttp.ClientSession) -> bytes:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            if resp.status != 200:
                raise MetricsUnavailable(url, f"HTTP {resp.status}")
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise MetricsUnavailable(url, f"metrics body over {size_text(max_bytes)} ({resp.content_length} bytes)")
            body = bytearray()
            async for chunk in resp.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > max_bytes:
                    resp.close()  # drop the connection: the rest of the page is never read
                    raise MetricsUnavailable(url, f"metrics body over {size_text(max_bytes)}")
            return bytes(body)

    try:
        with anyio.fail_after(timeout + 1.0):  # aiohttp's total timeout, and a backstop should it not fire
            if session is not None:
                raw = await fetch(session)
            else:
                async with aiohttp.ClientSession() as own:
                    raw = await fetch(own)
    except MetricsUnavailable:
        raise
    except TimeoutError:
        raise MetricsUnavailable(url, f"no complete answer within {timeout:g} s") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise MetricsUnavailable(url, str(exc) or type(exc).__name__) from None
    try:
        return await anyio.to_thread.run_sync(_parse_bytes, raw, abandon_on_cancel=True)
    except ValueError as exc:
        raise MetricsUnavailable(url, f"not Prometheus text ({exc})") from None


def _parse_bytes(raw: bytes) -> list[MetricSample]:
    return parse(raw.decode("utf-8", errors="replace"))
