"""What the watchdog must remember across its own restarts, and the switch that pauses its actions.

A watchdog restarted by systemd or the kubelet must not forget what it just did: the budget's ledger (so
``max_recycles`` still holds), the recent events with their evidence (so ``/v1/status`` still shows why), and a
recycle it was in the middle of (so a worker it SIGTERMed is not left draining at 100 % CPU because the
watchdog died before its SIGKILL). ``StateFile`` keeps that as one small JSON document, written atomically
(a temporary file, fsync, rename) and read once at start. A missing file is a fresh start; a corrupt, oversized
or unreadable one is a warning and a fresh start, never a crash.

``PauseSwitch`` reads a file that, while it says paused, makes every action a dry run: an operator's brake
that needs no restart (in Kubernetes, a downward-API projection of a pod annotation).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("watchdog.state")

STATE_VERSION = 1
MAX_STATE_BYTES = 4 * 2**20
"""A state file larger than this is not read (it cannot be ours: events are bounded)."""


@dataclass
class SavedState:
    """The document: the budget ledger per target, recent events, recycles in progress."""

    budget: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    recycles: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "budget": self.budget, "events": self.events, "recycles": self.recycles}


class StateFile:
    """``state.json`` in ``directory``; ``problem`` says why a saved state was not used or not written."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / "state.json"
        self.problem: str | None = None

    def load(self) -> SavedState:
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return SavedState()
        except OSError as exc:
            return self._fresh(f"cannot read {self.path}: {exc.strerror or exc}")
        if len(raw) > MAX_STATE_BYTES:
            return self._fresh(f"{self.path} is over {MAX_STATE_BYTES // 2**20} MiB; not ours")
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            return self._fresh(f"{self.path} is not valid JSON ({exc})")
        if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
            return self._fresh(f"{self.path} is not a version {STATE_VERSION} state file")
        budget, events, recycles = doc.get("budget"), doc.get("events"), doc.get("recycles")
        if not isinstance(budget, dict) or not isinstance(events, list) or not isinstance(recycles, dict):
            return self._fresh(f"{self.path} lacks budget, events or recycles")
        return SavedState(budget, [e for e in events if isinstance(e, dict)], recycles)

    def save(self, state: SavedState) -> bool:
        """Write atomically; a failure is recorded in ``problem`` and logged, never raised."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(state.to_json(), f, separators=(",", ":"), allow_nan=False, default=str)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except (OSError, ValueError) as exc:
            problem = f"cannot write {self.path}: {getattr(exc, 'strerror', None) or exc}"
            if problem != self.problem:
                log.warning("%s; the budget will not survive a restart", problem)
            self.problem = problem
            return False
        self.problem = None
        return True

    def _fresh(self, problem: str) -> SavedState:
        log.warning("%s: starting with a fresh state", problem)
        self.problem = problem
        return SavedState()


_PAUSED_WORDS = frozenset({"1", "true", "yes", "on", "paused", "pause"})


class PauseSwitch:
    """Paused while ``path`` exists and says so (``true``, ``paused``, ``1``, ``yes``, ``on``; any case).

    Anything else, an empty file (an unset annotation) or no file at all, means not paused. Read on every
    call, a few bytes at most, so flipping it takes effect at the next decision.
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else Path(path)

    def paused(self) -> bool:
        if self.path is None:
            return False
        try:
            with open(self.path, "rb") as f:
                word = f.read(64).decode("utf-8", "replace").strip().strip('"').lower()
        except OSError:
            return False
        return word in _PAUSED_WORDS
