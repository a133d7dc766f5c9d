"""Every metric the guard exports, declared once, and the two ways their values reach Prometheus.

The hot paths (a limiter's acquire, a request through the middleware) only touch plain ints on their own
object. Nothing is written to prometheus_client there: a gauge update costs about as much as the acquire it
would describe. Values leave those objects in one of two ways, chosen by prometheus_client's own mode:

- **One process** (no ``PROMETHEUS_MULTIPROC_DIR``): a collector registered in the registry reads every live
  guard object when the registry is scraped. Values are exact at scrape time and cost nothing in between.
- **Multiprocess** (gunicorn): the scrape runs in whichever worker serves ``/metrics`` and reads the other
  workers' values from files, so values must be written to those files by their own process. A daemon thread
  per process (the publisher) copies them every ``PUBLISH_INTERVAL`` seconds; gauges use the ``liveall`` mode,
  so each worker keeps its own series, labelled with its ``pid``. The thread also keeps reporting while the
  event loop is blocked, which is how a stall in progress shows up at all.

A process starts publishing when it first uses a guard object or starts the guard's monitors or its drain
(normally in the ASGI lifespan). Objects created in a gunicorn master with ``preload_app`` therefore never
appear as a phantom worker with the master's pid.

In one process the per-worker gauges carry a ``pid`` label too, so the sidecar reads the same shape either way.
Counters and the histogram are summed over workers in multiprocess mode (prometheus_client drops their pid).
Events that are rare by nature (a rejection, a cleanup timeout, a wait that happened) are written directly.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, Union

if TYPE_CHECKING:
    from prometheus_client import Counter
    from prometheus_client.registry import CollectorRegistry

logger = logging.getLogger("watchdog.guard")

RegistryArg = Union["CollectorRegistry", Literal["default"], None]
"""``"default"``: prometheus_client's ``REGISTRY``; a ``CollectorRegistry``: that one; ``None``: no metrics."""

PUBLISH_INTERVAL = 0.5
"""Seconds between two copies of the values into the multiprocess files (multiprocess mode only)."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric the guard exports: its Prometheus name, type, labels (besides ``pid``) and help text.

    ``per_worker`` metrics are gauges: one series per worker process, told apart by a ``pid`` label, in one
    process and in multiprocess mode alike. The others are counters and histograms, summed over workers in
    multiprocess mode.
    """

    name: str
    kind: Literal["gauge", "counter", "histogram"]
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...] = ()

    @property
    def per_worker(self) -> bool:
        return self.kind == "gauge"


def _gauge(name: str, labels: tuple[str, ...], help: str) -> MetricSpec:
    return MetricSpec(name, "gauge", labels, help)


def _counter(name: str, labels: tuple[str, ...], help: str) -> MetricSpec:
    return MetricSpec(name, "counter", labels, help)


LIMITER_IN_FLIGHT = _gauge("watchdog_guard_limiter_in_flight", ("name",), "Callers holding a slot of the limiter.")
LIMITER_LIMIT = _gauge("watchdog_guard_limiter_limit", ("name",), "Slots of the limiter (its concurrency limit).")
LIMITER_WAITING = _gauge("watchdog_guard_limiter_waiting", ("name",), "Callers waiting for a slot of the limiter.")
LIMITER_ACQUIRED = _counter("watchdog_guard_limiter_acquired_total", ("name",), "Slots granted by the limiter.")
LIMITER_REJECTED = _counter(
    "watchdog_guard_limiter_rejected_total", ("name",), "Callers refused (Saturated) after waiting max_wait."
)
LIMITER_WAIT = MetricSpec(
    "watchdog_guard_limiter_wait_seconds",
    "histogram",
    ("name",),
    "Time callers that found no free slot waited for one (callers served at once are not observed).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

CLEANUP_TIMEOUTS = _counter(
    "watchdog_guard_cleanup_timeouts_total", ("name",), "Cleanups abandoned because they outlived their timeout."
)

LOOP_LAG = _gauge(
    "watchdog_guard_loop_lag_seconds", (), "Event-loop lag at the latest heartbeat, or of a stall in progress."
)
LOOP_LAG_MAX = _gauge(
    "watchdog_guard_loop_lag_max_seconds", (), "Largest event-loop lag in the trailing window (see LagMonitor)."
)

CANCEL_SPIN_SCOPES = _gauge(
    "watchdog_guard_cancel_spin_scopes",
    (),
    "anyio cancel scopes re-delivering cancellation for longer than the threshold (-1: cannot inspect this anyio).",
)
CANCEL_SPIN_SECONDS = _gauge(
    "watchdog_guard_cancel_spin_seconds", (), "How long the longest such re-delivery has lasted, in seconds."
)
CANCEL_DELIVERY_STOPPED = _counter(
    "watchdog_guard_cancel_delivery_stopped_total", (), "Cancel deliveries stopped by the opt-in anyio patch."
)

CONNECTIONS_ACTIVE = _gauge(
    "watchdog_guard_connections_active", ("name",), "HTTP requests in progress, event streams included."
)
CONNECTIONS_LIMIT = _gauge("watchdog_guard_connections_limit", ("name",), "Limit on HTTP requests in progress.")
CONNECTIONS_STREAMS = _gauge(
    "watchdog_guard_connections_streams", ("name",), "Open event streams (GET text/event-stream), part of active."
)
CONNECTIONS_REJECTED = _counter(
    "watchdog_guard_connections_rejected_total", ("name",), "Requests refused with 503 because of the limit."
)

DRAINING = _gauge("watchdog_guard_draining", (), "1 from the moment this worker starts draining, else 0.")

METRICS: tuple[MetricSpec, ...] = (
    LIMITER_IN_FLIGHT,
    LIMITER_LIMIT,
    LIMITER_WAITING,
    LIMITER_ACQUIRED,
    LIMITER_REJECTED,
    LIMITER_WAIT,
    CLEANUP_TIMEOUTS,
    LOOP_LAG,
    LOOP_LAG_MAX,
    CANCEL_SPIN_SCOPES,
    CANCEL_SPIN_SECONDS,
    CANCEL_DELIVERY_STOPPED,
    CONNECTIONS_ACTIVE,
    CONNECTIONS_LIMIT,
    CONNECTIONS_STREAMS,
    CONNECTIONS_REJECTED,
    DRAINING,
)
"""Every metric ``watchdog.guard`` can export; the README's table and the sidecar's names come from here."""

# Sources feed these through snapshots; the rest are written when their (rare) event happens.
_SNAPSHOT_SPECS = (
    LIMITER_IN_FLIGHT,
    LIMITER_LIMIT,
    LIMITER_WAITING,
    LIMITER_ACQUIRED,
    LIMITER_WAIT,
    LOOP_LAG,
    LOOP_LAG_MAX,
    CANCEL_SPIN_SCOPES,
    CANCEL_SPIN_SECONDS,
    CONNECTIONS_ACTIVE,
    CONNECTIONS_LIMIT,
    CONNECTIONS_STREAMS,
    DRAINING,
)

HistogramValue = tuple[tuple[int, ...], float]
"""A histogram's observations per bucket (not cumulative; the last is +Inf) and their sum."""

Sample = tuple[MetricSpec, tuple[str, ...], float | HistogramValue]


class Source(Protocol):
    """A guard object whose values are read, not pushed: it returns them when asked, from any thread.

    ``_cold`` is True while the object has not been used in this process (multiprocess mode): its first use
    activates publishing.
    """

    _cold: bool

    def _metric_samples(self) -> Iterable[Sample]: ...


def multiprocess_mode() -> bool:
    """Whether prometheus_client writes values to per-process files (it decides once, when it is imported)."""
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


class Hub:
    """The guard objects that export into one registry (or, in multiprocess mode, into this process's files)."""

    def __init__(self, registry: CollectorRegistry | None, multiprocess: bool) -> None:
        self.multiprocess = multiprocess
        self._registry = registry
        self._lock = threading.Lock()
        self._sources: weakref.WeakValueDictionary[tuple[str, str], Source] = weakref.WeakValueDictionary()
        self._direct: dict[str, Any] = {}
        self._publisher: _Publisher | None = None
        if not multiprocess and registry is not None:
            registry.register(_Collector(self))

    # -- sources --------------------------------------------------------------------------------------------
    def add(self, kind: str, name: str, source: Source) -> None:
        """Register ``source`` under (kind, name); two live objects of one kind cannot share a name."""
        with self._lock:
            if (kind, name) in self._sources:
                raise ValueError(
                    f"a {kind} named {name!r} already exports metrics to this registry; give each one its own name"
                )
            self._sources[(kind, name)] = source

    def remove(self, kind: str, name: str, source: Source) -> None:
        with self._lock:
            if self._sources.get((kind, name)) is source:
                del self._sources[(kind, name)]
        if self._publisher is not None:
            self._publisher.publish_one(source)
            self._publisher.forget(source)

    def sources(self) -> list[Source]:
        with self._lock:
            return list(self._sources.values())

    def activate(self, source: Source | None = None) -> None:
        """This process uses the guard: publish ``source`` (every source when None) in multiprocess mode."""
        if not self.multiprocess:
            return
        with self._lock:
            if self._publisher is None or not self._publisher.alive:
                self._publisher = _Publisher(self)
            publisher = self._publisher
        for s in self.sources() if source is None else [source]:
            publisher.add(s)

    # -- metrics written directly ---------------------------------------------------------------------------
    def counter(self, spec: MetricSpec) -> Counter:
        from prometheus_client import Counter

        return self._metric(spec, lambda reg: Counter(spec.name, spec.help, spec.labels, registry=reg))  # type: ignore[no-any-return]

    def _metric(self, spec: MetricSpec, make: Any) -> Any:
        with self._lock:
            metric = self._direct.get(spec.name)
            if metric is None:
                # In multiprocess mode values go to files whatever the registry: registering them too would
                # export each one twice next to the MultiProcessCollector.
                metric = self._direct[spec.name] = make(None if self.multiprocess else self._registry)
            return metric

    def _after_fork_in_child(self) -> None:
        self._publisher = None


class _Collector:
    """Reads every live guard object of one registry at scrape time (one-process mode)."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def describe(self) -> Iterator[Any]:
        for spec in _SNAPSHOT_SPECS:
            yield _family(spec)

    def collect(self) -> Iterator[Any]:
        pid = str(os.getpid())
        families: dict[str, Any] = {}
        for source in self._hub.sources():
            for spec, labels, value in source._metric_samples():
                family = families.get(spec.name)
                if family is None:
                    family = families[spec.name] = _family(spec)
                if isinstance(value, tuple):
                    counts, total = value
                    cumulative, buckets = 0, []
                    for bound, count in zip((*spec.buckets, math.inf), counts, strict=True):
                        cumulative += count
                        buckets.append((_le(bound), cumulative))
                    family.add_metric(list(labels), buckets, total)
                else:
                    family.add_metric([*labels, pid] if spec.per_worker else list(labels), value)
        yield from families.values()


def _family(spec: MetricSpec) -> Any:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    if spec.kind == "gauge":
        return GaugeMetricFamily(spec.name, spec.help, labels=[*spec.labels, "pid"])
    if spec.kind == "histogram":
        return HistogramMetricFamily(spec.name, spec.help, labels=list(spec.labels))
    return CounterMetricFamily(spec.name, spec.help, labels=list(spec.labels))


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))  # as prometheus_client writes ``le``


class _Publisher:
    """Copies the values of this process's guard objects into prometheus_client's multiprocess files."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._sources_lock = threading.Lock()
        self._sources: weakref.WeakSet[Any] = weakref.WeakSet()
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._last: dict[tuple[str, tuple[str, ...]], float | HistogramValue] = {}
        self._metrics: dict[str, Any] = {}
        self._failed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog-guard-metrics", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._pid == os.getpid() and self._thread.is_alive()

    def add(self, source: Source) -> None:
        with self._sources_lock:
            if source in self._sources:
                return
            self._sources.add(source)
        self.publish_one(source)

    def forget(self, source: Source) -> None:
        with self._sources_lock:
            self._sources.discard(source)

    def _run(self) -> None:
        while not self._stop.wait(PUBLISH_INTERVAL):
            with self._sources_lock:  # the loop's thread adds sources while this one copies them
                sources = list(self._sources)
            for source in sources:
                self.publish_one(source)

    def publish_one(self, source: Source) -> None:
        try:
            with self._lock:
                for spec, labels, value in source._metric_samples():
                    self._write(spec, labels, value)
        except Exception:  # the publisher must outlive a bad value; say so once
            if not self._failed:
                self._failed = True
                logger.exception("watchdog.guard: publishing metrics failed; values may be stale")

    def _write(self, spec: MetricSpec, labels: tuple[str, ...], value: float | HistogramValue) -> None:
        key = (spec.name, labels)
        last = self._last.get(key)
        if last == value:
            return
        child = self._children.get(key)
        if child is None:
            child = self._metric(spec)
            if labels:
                child = child.labels(*labels)
            self._children[key] = child
        if isinstance(value, tuple):
            _add_to_histogram(child, spec, value, last if isinstance(last, tuple) else None)
        elif spec.kind == "gauge":
            child.set(value)
        else:
            before = last if isinstance(last, float | int) else 0.0
            if value > before:
                child.inc(value - before)
        self._last[key] = value

    def _metric(self, spec: MetricSpec) -> Any:
        metric = self._metrics.get(spec.name)
        if metric is None:
            from prometheus_client import Counter, Gauge, Histogram

            if spec.kind == "gauge":
                metric = Gauge(spec.name, spec.help, spec.labels, registry=None, multiprocess_mode="liveall")
            elif spec.kind == "histogram":
                metric = Histogram(spec.name, spec.help, spec.labels, registry=None, buckets=spec.buckets)
            else:
                metric = Counter(spec.name, spec.help, spec.labels, registry=None)
            self._metrics[spec.name] = metric
        return metric


def _add_to_histogram(child: Any, spec: MetricSpec, value: HistogramValue, last: HistogramValue | None) -> None:
    """Add the observations made since ``last`` to a multiprocess histogram child, bucket by bucket.

    prometheus_client has no public call for "n observations in this bucket"; its histogram keeps one value per
    bucket and one for the sum (``_buckets``, ``_sum``), unchanged for years. Without them, observe each
    bucket's upper bound once per observation instead (bounded, so a flood cannot stall the publisher).
    """
    counts, total = value
    before_counts, before_total = last if last is not None else ((0,) * len(counts), 0.0)
    deltas = [now - then for now, then in zip(counts, before_counts, strict=True)]
    buckets, sum_value = getattr(child, "_buckets", None), getattr(child, "_sum", None)
    if buckets is not None and sum_value is not None and len(buckets) == len(deltas):
        for bucket, delta in zip(buckets, deltas, strict=True):
            if delta:
                bucket.inc(delta)
        sum_value.inc(total - before_total)
        return
    for bound, delta in zip((*spec.buckets, spec.buckets[-1] * 2), deltas, strict=True):
        for _ in range(min(delta, 1000)):
            child.observe(bound)


_hubs: weakref.WeakKeyDictionary[Any, Hub] = weakref.WeakKeyDictionary()
_process_hub: list[Hub] = []
_hubs_lock = threading.Lock()


def hub_for(registry: RegistryArg) -> Hub | None:
    """The hub for a ``registry=`` argument: None turns metrics off."""
    if registry is None:
        return None
    if multiprocess_mode():
        # One hub per process: every value goes to this process's files, whatever registry was named.
        with _hubs_lock:
            if not _process_hub:
                _process_hub.append(Hub(None, multiprocess=True))
            return _process_hub[0]
    if registry == "default":
        from prometheus_client import REGISTRY

        registry = REGISTRY
    with _hubs_lock:
        hub = _hubs.get(registry)
        if hub is None:
            hub = _hubs[registry] = Hub(registry, multiprocess=False)
        return hub


def activate_process() -> None:
    """Start publishing every guard object of this process (multiprocess mode); a no-op otherwise."""
    with _hubs_lock:
        hubs = list(_process_hub)
    for hub in hubs:
        hub.activate()


def _after_fork_in_child() -> None:
    # The publisher thread does not survive fork(); the child starts its own when it first uses the guard.
    for hub in [*_process_hub, *_hubs.values()]:
        hub._after_fork_in_child()
        if hub.multiprocess:
            for source in hub.sources():
                source._cold = True


os.register_at_fork(after_in_child=_after_fork_in_child)
