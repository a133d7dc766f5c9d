"""The last resort, opt-in: bound anyio's cancel re-delivery so a swallowed cancellation cannot spin forever."""

from __future__ import annotations

import logging
import threading
from typing import Any

from watchdog.guard import _anyio_internals as internals
from watchdog.guard import _metrics
from watchdog.guard._metrics import RegistryArg

logger = logging.getLogger("watchdog.guard")

_lock = threading.Lock()
_state: dict[str, Any] = {}  # "original", "limit", "counter" while patched
_deliveries: dict[int, tuple[Any, int]] = {}  # origin scope id -> (scope, re-deliveries so far)


def patch_cancel_delivery(max_redeliveries: int = 1000, *, registry: RegistryArg = "default") -> bool:
    """Stop any anyio cancel delivery after ``max_redeliveries`` re-deliveries: a last resort, off by default.

    anyio re-delivers a scope's cancellation on every loop iteration until every task in it has finished; a
    task that swallows cancellation makes that a 100 % CPU loop (anyio #695, seed 001, layer 3). This wraps
    ``CancelScope._deliver_cancellation`` of anyio's asyncio backend: after ``max_redeliveries`` retries of one
    delivery it stops re-arming, logs the tasks that would not finish (once per scope), and counts it in
    ``watchdog_guard_cancel_delivery_stopped_total``. The worker's CPU returns to idle.

    The price: the stuck tasks are left running and are not cancelled again by that scope (nor by the scopes
    around it, which skip a scope already cancelled); they end only if they return by themselves. A healthy
    cancellation finishes in a handful of re-deliveries, so the default of 1000 (milliseconds of spinning)
    only ever stops a real spin. Prefer, in this order: fix the task that
    swallows cancellation, bound your cleanups (``cleanup_timeout``), let the sidecar recycle the worker.

    It changes a private method of anyio, so it is tested on the versions in ``TESTED_ANYIO`` only (anyio
    4.16.0, Python 3.11). On an anyio without the method it changes nothing, logs why, and returns False;
    on an untested version with the method it patches and logs a warning. Returns True once patched (calling it
    again only changes the limit). asyncio backend only: trio does not have this loop. ``unpatch_cancel_delivery``
    restores the original.
    """
    if max_redeliveries < 1:
        raise ValueError(f"max_redeliveries must be >= 1, not {max_redeliveries!r}")
    mod = internals.backend()
    if mod is None:
        logger.error("anyio cancel-delivery patch not applied: %s", internals.supported())
        return False
    version = internals.anyio_version()
    if version not in internals.TESTED_ANYIO:
        logger.warning(
            "anyio cancel-delivery patch applied to anyio %s, which it was not tested on (tested: %s)",
            version,
            ", ".join(internals.TESTED_ANYIO),
        )
    hub = _metrics.hub_for(registry)
    with _lock:
        _state["limit"] = max_redeliveries
        _state["counter"] = hub.counter(_metrics.CANCEL_DELIVERY_STOPPED) if hub is not None else None
        if "original" in _state:
            return True
        original = mod.CancelScope._deliver_cancellation
        _state["original"] = original

        def _deliver_cancellation(self: Any, origin: Any) -> bool:
            retry: bool = original(self, origin)
            if origin is not self:  # a nested scope, visited by its origin's delivery
                return retry
            key = id(self)
            if not retry:
                _deliveries.pop(key, None)
                return retry
            entry = _deliveries.get(key)
            count = 1 if entry is None or entry[0] is not self else entry[1] + 1
            if count <= _state.get("limit", max_redeliveries):
                _deliveries[key] = (self, count)
                return retry
            _deliveries.pop(key, None)
            _stop(self, count - 1)
            return False

        mod.CancelScope._deliver_cancellation = _deliver_cancellation
    return True


def _stop(scope: Any, redeliveries: int) -> None:
    handle = scope._cancel_handle
    if handle is not None:
        handle.cancel()
    scope._cancel_handle = None
    counter = _state.get("counter")
    if counter is not None:
        counter.inc()
    tasks = [internals.describe_task(t) for t in internals.stuck_tasks(scope)]
    logger.error(
        "anyio cancel delivery of scope %x stopped after %d re-deliveries (watchdog.guard patch): these tasks "
        "swallow cancellation and are left running:\n  %s",
        id(scope),
        redeliveries,
        "\n  ".join(tasks) or "(none found)",
    )


def unpatch_cancel_delivery() -> None:
    """Put anyio's own ``_deliver_cancellation`` back (a no-op when not patched)."""
    with _lock:
        original = _state.pop("original", None)
        _state.clear()
        _deliveries.clear()
        if original is not None:
            mod = internals.backend()
            if mod is not None:
                mod.CancelScope._deliver_cancellation = original


def cancel_delivery_patched() -> bool:
    """Whether ``patch_cancel_delivery`` is in effect."""
    return "original" in _state
