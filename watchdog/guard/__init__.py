"""watchdog.guard: what an async server imports to stay healthy from inside, and to be watched from outside.

The sidecar sees a worker from outside (CPU, memory, stacks, metrics); the guard prevents from inside and
exports the gauges the sidecar reads. Each piece answers one of the war stories:

- ``Limiter`` (``async with`` or ``@decorator``) and ``BoundedTaskGroup``: bounded in-flight work, so a slow
  downstream produces backpressure (or ``Saturated``), never a pile of tasks and an OOM kill.
- ``cleanup_timeout`` and ``bounded_exit``: teardown that is shielded from cancellation, but bounded.
- ``LagMonitor``: how long the event loop could not run anything, worst value of the last minute kept.
- ``SpinSentinel``: an anyio cancel scope re-delivering cancellation for seconds (the 100 % CPU spin).
- ``ConnectionLimit``: ASGI middleware, 503 with ``Retry-After`` beyond a limit of requests in progress.
- ``Drain``: ASGI middleware; on SIGTERM readiness flips to 503, new sessions are refused, in-flight calls
  finish, streams close, then the server exits.
- ``monitor()`` runs the lag monitor and the sentinel in a lifespan; ``metrics_app()`` serves ``/metrics``.
- ``patch_cancel_delivery``: opt-in, last resort; stops a cancel delivery that never ends.

General layout: ``_metrics`` declares every metric and carries values to Prometheus (read at scrape time in
one process; copied to the multiprocess files by a thread under gunicorn); ``_limiter``, ``_cleanup``,
``_lag``, ``_sentinel`` and ``_patch`` build on it (the last two read anyio internals through
``_anyio_internals``); ``_asgi`` and ``_drain`` are the HTTP side; ``_monitor`` wires things for a lifespan.
Importing this package is cheap: no aiohttp, psutil, py-spy or MCP SDK, and prometheus_client only once a
guard object is created.
"""

import typing as _typing

from watchdog._lazy import lazy_names as _lazy_names

if _typing.TYPE_CHECKING:
    from watchdog.errors import GuardError, Saturated
    from watchdog.guard._anyio_internals import TESTED_ANYIO
    from watchdog.guard._asgi import ConnectionLimit
    from watchdog.guard._cleanup import CleanupResult, bounded_exit, cleanup_timeout
    from watchdog.guard._drain import Drain
    from watchdog.guard._lag import LagMonitor, LagStatistics
    from watchdog.guard._limiter import BoundedTaskGroup, Limiter, LimiterStatistics
    from watchdog.guard._metrics import METRICS, MetricSpec
    from watchdog.guard._monitor import Monitors, metrics_app, monitor
    from watchdog.guard._patch import cancel_delivery_patched, patch_cancel_delivery, unpatch_cancel_delivery
    from watchdog.guard._sentinel import SpinningScope, SpinSentinel

# Each name is imported from its module when first used (PEP 562), so that a process needing one piece (the sidecar
# reads only the metric names in ``_metrics``) does not load them all: `bench/sidecar_memory.py` measured the
# whole package at about 0.3 MB of the sidecar's resident memory.
_WHERE = {
    "GuardError": "watchdog.errors",
    "Saturated": "watchdog.errors",
    "TESTED_ANYIO": "watchdog.guard._anyio_internals",
    "ConnectionLimit": "watchdog.guard._asgi",
    "CleanupResult": "watchdog.guard._cleanup",
    "bounded_exit": "watchdog.guard._cleanup",
    "cleanup_timeout": "watchdog.guard._cleanup",
    "Drain": "watchdog.guard._drain",
    "LagMonitor": "watchdog.guard._lag",
    "LagStatistics": "watchdog.guard._lag",
    "BoundedTaskGroup": "watchdog.guard._limiter",
    "Limiter": "watchdog.guard._limiter",
    "LimiterStatistics": "watchdog.guard._limiter",
    "METRICS": "watchdog.guard._metrics",
    "MetricSpec": "watchdog.guard._metrics",
    "Monitors": "watchdog.guard._monitor",
    "metrics_app": "watchdog.guard._monitor",
    "monitor": "watchdog.guard._monitor",
    "cancel_delivery_patched": "watchdog.guard._patch",
    "patch_cancel_delivery": "watchdog.guard._patch",
    "unpatch_cancel_delivery": "watchdog.guard._patch",
    "SpinningScope": "watchdog.guard._sentinel",
    "SpinSentinel": "watchdog.guard._sentinel",
}


__getattr__, __dir__ = _lazy_names(globals(), _WHERE)

__all__ = [
    "METRICS",
    "TESTED_ANYIO",
    "BoundedTaskGroup",
    "CleanupResult",
    "ConnectionLimit",
    "Drain",
    "GuardError",
    "LagMonitor",
    "LagStatistics",
    "Limiter",
    "LimiterStatistics",
    "MetricSpec",
    "Monitors",
    "Saturated",
    "SpinSentinel",
    "SpinningScope",
    "bounded_exit",
    "cancel_delivery_patched",
    "cleanup_timeout",
    "metrics_app",
    "monitor",
    "patch_cancel_delivery",
    "unpatch_cancel_delivery",
]
