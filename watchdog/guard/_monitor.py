"""Wiring for a server's lifespan: ``monitor()`` runs the watchers, ``metrics_app()`` serves what they export."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio

from watchdog.guard import _metrics
from watchdog.guard._asgi import ASGIApp, Receive, Scope, Send
from watchdog.guard._lag import LagMonitor
from watchdog.guard._metrics import RegistryArg
from watchdog.guard._sentinel import SpinSentinel


@dataclass(frozen=True)
class Monitors:
    """What ``monitor()`` runs (None where it was turned off)."""

    lag: LagMonitor | None
    sentinel: SpinSentinel | None


@contextlib.asynccontextmanager
async def monitor(
    *,
    lag: LagMonitor | bool = True,
    sentinel: SpinSentinel | bool = True,
    registry: RegistryArg = "default",
) -> AsyncIterator[Monitors]:
    """Run the loop-lag monitor and the spin sentinel for as long as the block lasts: put it in the lifespan.

        @contextlib.asynccontextmanager
        async def lifespan(app):
            async with guard.monitor():
                yield

    Pass ``False`` to leave one out, or your own ``LagMonitor(...)`` / ``SpinSentinel(...)`` to tune it. It also
    starts the metrics publisher of this process in multiprocess mode, so every guard object of the worker is
    exported from then on, used or not (see ``watchdog.guard`` on multiprocess mode).
    """
    lag_monitor = LagMonitor(registry=registry) if lag is True else lag or None
    spin_sentinel = SpinSentinel(registry=registry) if sentinel is True else sentinel or None
    _metrics.activate_process()
    async with anyio.create_task_group() as tg:
        if lag_monitor is not None:
            tg.start_soon(lag_monitor.run, name="watchdog.guard lag monitor")
        if spin_sentinel is not None:
            tg.start_soon(spin_sentinel.run, name="watchdog.guard spin sentinel")
        try:
            yield Monitors(lag_monitor, spin_sentinel)
        finally:
            tg.cancel_scope.cancel()
            # the ones made here go with the block, so that a later monitor() can export under the same names
            if lag is True and lag_monitor is not None:
                lag_monitor._retire()
            if sentinel is True and spin_sentinel is not None:
                spin_sentinel._retire()


def metrics_app(registry: RegistryArg = "default") -> ASGIApp:
    """An ASGI endpoint serving Prometheus text, e.g. Starlette's ``Route("/metrics", metrics_app())``.

    In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set, as under gunicorn) every scrape reads all workers'
    files, whichever worker serves it, and the per-worker gauges carry each worker's ``pid``. Otherwise it
    serves ``registry`` (prometheus_client's default one unless told). The text is produced in a worker thread,
    so a large page does not hold up the event loop.
    """
    return _MetricsApp(registry)


class _MetricsApp:
    # A class, not a function: Starlette's Route passes an object that is not a function the raw ASGI call.
    def __init__(self, registry: RegistryArg) -> None:
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

        if _metrics.multiprocess_mode():
            from prometheus_client import multiprocess

            source = CollectorRegistry()
            multiprocess.MultiProcessCollector(source)  # type: ignore[no-untyped-call]
        else:
            source = REGISTRY if self.registry == "default" or self.registry is None else self.registry
        body = await anyio.to_thread.run_sync(generate_latest, source)
        headers = [(b"content-type", CONTENT_TYPE_LATEST.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
