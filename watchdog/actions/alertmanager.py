"""Alerts to Alertmanager through its API v2, the way Prometheus sends them.

An active alert carries ``endsAt = now + 4 x resend_interval`` and is re-sent every ``resend_interval`` to every
configured Alertmanager; resolving it sends the same labels with ``endsAt = now``. So a watchdog that dies or
hangs lets its alerts expire by themselves, and an Alertmanager that was down gets every active alert at the
next resend once it is back.

``AlertSink.fire`` and ``AlertSink.resolve`` never block and never raise: they update the set of active alerts
and put the alert in one bounded queue per Alertmanager (keyed, so a newer state of an alert replaces a queued
older one; when full the oldest goes, counted). One sender task per Alertmanager posts batches, retrying on
5xx, 429 and connection errors with jittered backoff. A batch that still fails is counted and dropped: its
active alerts go again at the next resend.
"""

from __future__ import annotations

import base64
import logging
import random
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import aiohttp
import anyio

from watchdog.config import Alertmanager

log = logging.getLogger("watchdog.alertmanager")


class SinkMetrics(Protocol):
    """Where the sink reports (``watchdog.agent.metrics.AlertmanagerMetrics`` is the real one)."""

    def sent(self, alertmanager: str, n: int) -> None: ...
    def failed(self, alertmanager: str, n: int) -> None: ...
    def dropped(self, alertmanager: str, n: int) -> None: ...
    def request(self, alertmanager: str, seconds: float, ok: bool) -> None: ...
    def prepare(self, alertmanager: str) -> None: ...
    def set_active(self, n: int) -> None: ...


@dataclass(frozen=True)
class Alert:
    """One alert's identity (``labels``) and its text (``annotations``)."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)


def make_alert(
    *,
    alertname: str,
    severity: str,
    target: str,
    worker: int | None,
    instance: str,
    summary: str,
    description: str = "",
    advice: str = "",
    evidence: str = "",
) -> Alert:
    """The alert for a rule (or a budget refusal, a failed recycle) on a worker, or on a target (``worker=None``)."""
    labels = {"alertname": alertname, "severity": severity, "target": target, "instance": instance}
    if worker is not None:
        labels["worker"] = str(worker)
    notes = {"summary": summary, "description": description, "advice": advice, "evidence": evidence}
    return Alert(labels, {k: v for k, v in notes.items() if v})


def alert_key(alertname: str, target: str, worker: int | None) -> str:
    """The key under which the sink tracks an alert (fire and resolve with the same key)."""
    return f"{alertname}/{target}/{'' if worker is None else worker}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Active:
    alert: Alert
    starts_at: float


@dataclass
class _Destination:
    cfg: Alertmanager
    queue: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    ready: anyio.Event = field(default_factory=anyio.Event)
    ssl: ssl.SSLContext | None = None

    @property
    def name(self) -> str:
        return self.cfg.url


class AlertSink:
    """Keeps the active alerts and delivers them to every Alertmanager; ``run(http)`` is its task."""

    def __init__(
        self,
        managers: list[Alertmanager],
        *,
        resend_interval: float = 60.0,
        external_labels: Mapping[str, str] | None = None,
        generator_url: str = "",
        metrics: SinkMetrics | None = None,
        clock: Callable[[], float] = time.time,
        maxsize: int = 1000,
        batch_size: int = 64,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
    ) -> None:
        self.resend_interval = resend_interval
        self.external_labels = dict(external_labels or {})
        self.generator_url = generator_url
        self.metrics = metrics
        self.clock = clock
        self._maxsize = maxsize
        self._batch = batch_size
        self._retries = retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._active: dict[str, _Active] = {}
        self._dest = [_Destination(m) for m in managers]
        for d in self._dest:
            if metrics is not None:
                metrics.prepare(d.name)

    @property
    def enabled(self) -> bool:
        return bool(self._dest)

    def active(self) -> dict[str, Alert]:
        return {k: a.alert for k, a in self._active.items()}

    def fire(self, key: str, alert: Alert) -> None:
        """Make ``alert`` active under ``key`` (or refresh it) and send it now. Never blocks."""
        now = self.clock()
        known = self._active.get(key)
        starts = known.starts_at if known is not None and known.alert.labels == alert.labels else now
        if known is not None and known.alert.labels != alert.labels:
            self._enqueue(key, self._wire(known.alert, known.starts_at, now))  # its identity changed: end the old
        self._active[key] = _Active(alert, starts)
        self._enqueue(key, self._wire(alert, starts, now + 4 * self.resend_interval))
        self._count_active()

    def resolve(self, key: str) -> bool:
        """Resolve the alert under ``key`` (``endsAt = now``); False when it was not active. Never blocks."""
        known = self._active.pop(key, None)
        if known is None:
            return False
        self._enqueue(key, self._wire(known.alert, known.starts_at, self.clock()))
        self._count_active()
        return True

    def resolve_where(self, pred: Callable[[str], bool]) -> int:
        """Resolve every active alert whose key satisfies ``pred`` (a worker gone: all of its alerts)."""
        keys = [k for k in self._active if pred(k)]
        for k in keys:
            self.resolve(k)
        return len(keys)

    def _count_active(self) -> None:
        if self.metrics is not None:
            self.metrics.set_active(len(self._active))

    def _wire(self, alert: Alert, starts: float, ends: float) -> dict[str, Any]:
        body: dict[str, Any] = {
            "labels": {**alert.labels, **self.external_labels},
            "annotations": dict(alert.annotations),
            "startsAt": _iso(starts),
            "endsAt": _iso(ends),
        }
        if self.generator_url:
            body["generatorURL"] = self.generator_url
        return body

    def _enqueue(self, key: str, body: dict[str, Any]) -> None:
        for d in self._dest:
            d.queue.pop(key, None)
            d.queue[key] = body
            while len(d.queue) > self._maxsize:
                old, _ = d.queue.popitem(last=False)
                if self.metrics is not None:
                    self.metrics.dropped(d.name, 1)
                log.warning("alertmanager %s: send queue full (%d); dropped alert %s", d.name, self._maxsize, old)
            d.ready.set()

    async def run(self, http: aiohttp.ClientSession) -> None:
        """Send queued alerts to every Alertmanager and re-send the active ones, until cancelled."""
        if not self._dest:
            return
        async with anyio.create_task_group() as tg:
            for d in self._dest:
                tg.start_soon(self._sender, http, d)
            while True:
                await anyio.sleep(self.resend_interval)
                self.resend()

    def resend(self) -> None:
        """Queue every active alert again with a fresh ``endsAt`` (what ``run`` does each resend interval)."""
        ends = self.clock() + 4 * self.resend_interval
        for key, a in self._active.items():
            self._enqueue(key, self._wire(a.alert, a.starts_at, ends))

    async def fetch(self, http: aiohttp.ClientSession, filters: list[str]) -> list[dict[str, Any]]:
        """The active, unsilenced, uninhibited alerts matching ``filters`` (``label="value"`` or ``label=~"re"``),
        from every Alertmanager (each alert once, by fingerprint); an Alertmanager that fails is logged and
        skipped: the next poll asks again."""
        params = [("active", "true"), ("silenced", "false"), ("inhibited", "false")] + [("filter", f) for f in filters]
        found: dict[str, dict[str, Any]] = {}
        for d in self._dest:
            url = d.cfg.url.rstrip("/") + "/api/v2/alerts"
            start = time.monotonic()
            try:
                kw: dict[str, Any] = {"ssl": ctx} if (ctx := self._ssl(d)) is not None else {}
                async with http.get(
                    url, params=params, headers=await self._headers(d),
                    timeout=aiohttp.ClientTimeout(total=d.cfg.timeout), **kw,
                ) as r:  # fmt: skip
                    r.raise_for_status()
                    alerts = await r.json()
            except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError, ValueError) as exc:
                if self.metrics is not None:
                    self.metrics.request(d.name, time.monotonic() - start, False)
                log.warning("alertmanager %s: polling alerts failed: %s", d.name, str(exc) or type(exc).__name__)
                continue
            if self.metrics is not None:
                self.metrics.request(d.name, time.monotonic() - start, True)
            for a in alerts if isinstance(alerts, list) else []:
                if isinstance(a, dict):
                    found.setdefault(str(a.get("fingerprint", "")), a)
        return list(found.values())

    async def _sender(self, http: aiohttp.ClientSession, d: _Destination) -> None:
        while True:
            while not d.queue:
                d.ready = anyio.Event()
                await d.ready.wait()
            batch: list[dict[str, Any]] = []
            while d.queue and len(batch) < self._batch:
                batch.append(d.queue.popitem(last=False)[1])
            if await self._post(http, d, batch):
                if self.metrics is not None:
                    self.metrics.sent(d.name, len(batch))
            elif self.metrics is not None:
                self.metrics.failed(d.name, len(batch))

    async def _headers(self, d: _Destination) -> dict[str, str]:
        cfg = d.cfg
        token = cfg.bearer_token
        if cfg.bearer_token_file is not None:
            token = (await anyio.Path(cfg.bearer_token_file).read_text()).strip()
        if token:
            return {"Authorization": f"Bearer {token}"}
        if cfg.username is not None and cfg.password is not None:
            pair = base64.b64encode(f"{cfg.username}:{cfg.password}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}
        return {}

    def _ssl(self, d: _Destination) -> ssl.SSLContext | None:
        cfg = d.cfg
        if d.ssl is None and (cfg.ca_file or cfg.cert_file):
            d.ssl = ssl.create_default_context(cafile=cfg.ca_file)
            if cfg.cert_file is not None:
                d.ssl.load_cert_chain(cfg.cert_file, cfg.key_file)
        return d.ssl

    async def _post(self, http: aiohttp.ClientSession, d: _Destination, batch: list[dict[str, Any]]) -> bool:
        url = d.cfg.url.rstrip("/") + "/api/v2/alerts"
        delay = self._backoff
        problem = ""
        for attempt in range(self._retries + 1):
            start = time.monotonic()
            retry = True
            try:
                kw: dict[str, Any] = {"ssl": ctx} if (ctx := self._ssl(d)) is not None else {}
                async with http.post(
                    url,
                    json=batch,
                    headers=await self._headers(d),
                    timeout=aiohttp.ClientTimeout(total=d.cfg.timeout),
                    **kw,
                ) as r:
                    ok = r.status < 300
                    if self.metrics is not None:
                        self.metrics.request(d.name, time.monotonic() - start, ok)
                    if ok:
                        return True
                    problem = f"HTTP {r.status}: {(await r.text())[:200]}"
                    retry = r.status >= 500 or r.status == 429
            except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
                if self.metrics is not None:
                    self.metrics.request(d.name, time.monotonic() - start, False)
                problem = str(exc) or type(exc).__name__
            if not retry or attempt == self._retries:
                break
            await anyio.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not crypto
            delay = min(delay * 2, self._max_backoff)
        log.warning(
            "alertmanager %s: %d alert(s) not delivered after %d attempt(s): %s",
            d.name,
            len(batch),
            attempt + 1,
            problem,
        )
        return False
