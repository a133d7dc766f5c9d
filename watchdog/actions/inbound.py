"""Alerts coming in: Alertmanager's webhook (version "4") read into typed requests for the watchdog to act on.

Pure: no I/O, no clock of its own. The HTTP handler (``watchdog.agent.server``) checks credentials with
``authorized``, parses the body with ``parse_webhook`` (``BadWebhook`` says what is wrong) and hands the payload
to ``Inbound.requests``, which keeps what the watchdog should act on:

- only ``firing`` alerts (a resolved one asks for nothing);
- label ``watchdog_action``: ``diagnose`` (the default) or ``recycle``; label ``target`` naming a configured
  target (required); label ``pid`` optional;
- not meant for another instance: a ``pod`` label naming another pod, or (without ``pod``) an ``instance`` label
  naming another host or address;
- new: Alertmanager re-sends a whole group every ``group_interval``, so an alert is acted on once per
  (``fingerprint``, ``startsAt``).

Each alert left out is counted by why, so an operator sees what was ignored.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections import Counter, OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

MAX_BODY = 1024 * 1024
"""The largest webhook body accepted (1 MiB); Alertmanager truncates big groups itself (``truncatedAlerts``)."""

Action = Literal["diagnose", "recycle"]


class BadWebhook(ValueError):
    """Raised when a webhook body is not Alertmanager's version "4" JSON; the message says what is wrong."""


@dataclass(frozen=True)
class AlertRequest:
    """One inbound alert the watchdog should act on: what to do, on which target (and worker), and why."""

    action: Action
    target: str
    pid: int | None
    alertname: str
    fingerprint: str
    starts_at: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    receiver: str = ""

    @property
    def summary(self) -> str:
        on = f"worker {self.pid}" if self.pid is not None else "the target"
        return f"Alertmanager alert {self.alertname} asks to {self.action} {self.target} {on}"


def authorized(header: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, or basic auth whose password is the token; compared in constant time."""
    if not header or not token:
        return False
    scheme, _, cred = header.partition(" ")
    want = token.encode()
    if scheme.lower() == "bearer":
        return hmac.compare_digest(cred.strip().encode(), want)
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(cred.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(password, want)
    return False


def parse_webhook(body: bytes) -> dict[str, Any]:
    """The webhook payload, checked to be version "4" with a list of alerts; ``BadWebhook`` otherwise."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadWebhook(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadWebhook(f"expected a JSON object (Alertmanager's webhook), got {type(data).__name__}")
    if data.get("version") != "4":
        raise BadWebhook(f'expected Alertmanager webhook version "4", got {data.get("version")!r}')
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise BadWebhook("'alerts' must be a list")
    for i, a in enumerate(alerts):
        if not isinstance(a, dict):
            raise BadWebhook(f"alerts[{i}] must be an object")
        for key in ("labels", "annotations"):
            v = a.get(key, {})
            if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
                raise BadWebhook(f"alerts[{i}].{key} must map names to strings")
        for key in ("status", "startsAt"):
            if not isinstance(a.get(key), str):
                raise BadWebhook(f"alerts[{i}].{key} must be a string")
        if not isinstance(a.get("fingerprint", ""), str):
            raise BadWebhook(f"alerts[{i}].fingerprint must be a string")
    return data


class Inbound:
    """Turns webhook payloads into ``AlertRequest``s: filters, validates labels and dedupes; counts the rest.

    ``names`` are what this watchdog answers to in a ``pod`` or ``instance`` label (its pod name, host name,
    listen address). ``remember`` bounds the dedupe memory (the oldest (fingerprint, startsAt) pairs go first).
    """

    def __init__(self, targets: Collection[str], names: Collection[str], *, remember: int = 4096) -> None:
        self.targets = set(targets)
        self.names = {n for n in names if n}
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._remember = remember

    def _for_us(self, labels: Mapping[str, str]) -> bool:
        # a `pod` label decides alone: a Prometheus alert about the server's pod carries the server's scrape
        # address as `instance` (pod IP and port), which the watchdog cannot know as its own
        pod = labels.get("pod")
        if pod:
            return pod in self.names
        instance = labels.get("instance")
        return not instance or instance in self.names or instance.rpartition(":")[0] in self.names

    def requests(self, payload: Mapping[str, Any]) -> tuple[list[AlertRequest], Counter[str]]:
        """The requests in ``payload`` to act on, and how many alerts were left out by why."""
        out: list[AlertRequest] = []
        skipped: Counter[str] = Counter()
        for a in payload.get("alerts", []):
            labels: dict[str, str] = a.get("labels", {})
            why = self._check(a, labels)
            if why is not None:
                skipped[why] += 1
                continue
            pid = labels.get("pid") or labels.get("worker")
            out.append(
                AlertRequest(
                    action="recycle" if labels.get("watchdog_action") == "recycle" else "diagnose",
                    target=labels["target"],
                    pid=int(pid) if pid else None,
                    alertname=labels.get("alertname", ""),
                    fingerprint=a.get("fingerprint", ""),
                    starts_at=a["startsAt"],
                    labels=labels,
                    annotations=a.get("annotations", {}),
                    receiver=str(payload.get("receiver", "")),
                )
            )
        return out, skipped

    def _check(self, a: Mapping[str, Any], labels: Mapping[str, str]) -> str | None:
        if a.get("status") != "firing":
            return "resolved"
        if not self._for_us(labels):
            return "other_instance"
        action = labels.get("watchdog_action", "diagnose")
        target = labels.get("target")
        pid = labels.get("pid") or labels.get("worker")
        if action not in ("diagnose", "recycle") or not target or (pid and not (pid.isdigit() and int(pid) > 0)):
            return "invalid"
        if target not in self.targets:
            return "unknown_target"
        fingerprint = a.get("fingerprint") or json.dumps(sorted(labels.items()))
        seen = (fingerprint, a["startsAt"])
        if seen in self._seen:
            return "duplicate"
        self._seen[seen] = None
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        return None
