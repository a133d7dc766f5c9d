"""Recycling one worker gracefully: drain, SIGTERM, a grace period, SIGKILL, then a healthy replacement.

Every signal goes through ``_send``, which re-checks the worker's identity (pid and create time) immediately
before ``os.kill``: a pid that was reused by another process is never signalled. Each step is recorded with its
time, so the event shows exactly what happened. The process table, the signal sender and the clock are
injected, so the sequence is tested without real processes where that is the point of the test.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
import anyio

from watchdog.discovery import WorkerId, still_same

_AT_ONCE = 0.5
"""A worker gone this soon after the drain signal did not drain: the signal's default action killed it."""


def _drain_exit(plan: RecyclePlan, took: float) -> str:
    """What the exit during the drain wait says: drained, or killed at once by a signal it has no handler for."""
    if plan.drain_signal is None:
        return f"exited {took:.1f} s after the drain request"
    name = signal.Signals(plan.drain_signal).name
    if took <= _AT_ONCE:
        return (
            f"exited {took:.1f} s after {name}: at once, so it did not drain (a process without a handler for "
            f"{name} is killed by it)"
        )
    return f"exited {took:.1f} s after the drain signal ({name})"


class SignalSender(Protocol):
    def __call__(self, pid: int, sig: int) -> None: ...


def _os_kill(pid: int, sig: int) -> None:
    os.kill(pid, sig)


@dataclass(frozen=True)
class RecyclePlan:
    """How to recycle a target's worker."""

    drain_signal: int | None = None
    drain_url: str | None = None
    drain_token: str | None = None
    drain_wait: float = 0.0
    grace: float = 10.0
    replacement_timeout: float = 30.0


@dataclass
class Step:
    name: str
    at: float
    detail: str
    ok: bool = True

    def to_json(self) -> dict[str, object]:
        return {"step": self.name, "at": round(self.at, 3), "detail": self.detail, "ok": self.ok}


@dataclass
class RecycleOutcome:
    worker: WorkerId
    steps: list[Step] = field(default_factory=list)
    outcome: str = "pending"  # recycled | aborted | failed | dry_run (terminated: exited, replacement pending)
    replacement: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "worker": self.worker.pid,
            "outcome": self.outcome,
            "replacement": self.replacement,
            "steps": [s.to_json() for s in self.steps],
        }


ReplacementCheck = Callable[[WorkerId], Awaitable[tuple[int | None, str]]]
"""Waits for a replacement of the recycled worker; returns its pid (or None) and what was seen."""


class Recycler:
    def __init__(
        self,
        *,
        send: SignalSender = _os_kill,
        identity: Callable[[WorkerId], bool] = still_same,
        clock: Callable[[], float] = time.monotonic,
        poll: float = 0.1,
    ) -> None:
        self._send_raw = send
        self._identity = identity
        self._clock = clock
        self._poll = poll

    async def recycle(
        self,
        worker: WorkerId,
        plan: RecyclePlan,
        *,
        dry_run: bool = False,
        replacement: ReplacementCheck | None = None,
        http: aiohttp.ClientSession | None = None,
        on_signal: Callable[[str], None] | None = None,
    ) -> RecycleOutcome:
        """Drain, SIGTERM, grace, SIGKILL, then await the replacement.

        Once the first signal is sent the sequence up to SIGKILL runs shielded from cancellation (bounded by
        the drain wait and the grace): a watchdog asked to stop mid-recycle finishes it rather than leave the
        worker draining at 100 % CPU with nobody to kill it. ``on_signal`` hears each signal's name as it is
        sent (the actuator records SIGTERM in its state file, so a restarted watchdog can finish the job).
        """
        out = RecycleOutcome(worker)
        t0 = self._clock()

        def step(name: str, detail: str, ok: bool = True) -> None:
            out.steps.append(Step(name, self._clock() - t0, detail, ok))

        if dry_run:
            step("dry_run", "shadow mode: would drain, SIGTERM, wait the grace period, SIGKILL if needed")
            out.outcome = "dry_run"
            return out
        if not self._identity(worker):
            step("identity", f"pid {worker.pid} is gone or now belongs to another process; nothing sent", ok=False)
            out.outcome = "aborted"
            return out

        if plan.drain_url is not None and http is not None:
            await self._drain_url(plan, worker, http, step)
        bound = plan.drain_wait + plan.grace + 10.0
        with anyio.CancelScope(shield=True), anyio.move_on_after(bound):
            if plan.drain_signal is not None and not self._signal(worker, plan.drain_signal, step, on_signal):
                out.outcome = "aborted"
                return out
            if plan.drain_url is not None or plan.drain_signal is not None:
                started = self._clock()
                if await self._wait_exit(worker, plan.drain_wait):
                    step("drain_exit", _drain_exit(plan, self._clock() - started))
                    out.outcome = "terminated"
                else:
                    step("drain_wait", f"still running after drain wait {plan.drain_wait:g} s")
            if out.outcome != "terminated":
                if not self._signal(worker, signal.SIGTERM, step, on_signal):
                    out.outcome = "aborted"
                    return out
                if not await self._terminate(worker, plan.grace, step, on_signal):
                    out.outcome = "failed"
                    return out
        return await self._finish(out, worker, replacement, step)

    async def resume(self, worker: WorkerId, plan: RecyclePlan, *, term_sent_ago: float | None) -> RecycleOutcome:
        """Finish a recycle that a previous run of the watchdog began and did not end (it was killed).

        ``term_sent_ago``: seconds since that run sent SIGTERM, or None if it had not yet. The rest of the grace
        is honoured, then SIGKILL; the identity check makes sure that only the very same worker is signalled.
        """
        out = RecycleOutcome(worker)
        t0 = self._clock()

        def step(name: str, detail: str, ok: bool = True) -> None:
            out.steps.append(Step(name, self._clock() - t0, detail, ok))

        if not self._identity(worker):
            step("identity", f"pid {worker.pid} is gone or reused: nothing left to finish", ok=False)
            out.outcome = "aborted"
            return out
        grace = plan.grace
        if term_sent_ago is None:
            if not self._signal(worker, signal.SIGTERM, step):
                out.outcome = "aborted"
                return out
        else:
            grace = max(0.0, plan.grace - term_sent_ago)
            step(
                "resumed",
                f"SIGTERM was sent {term_sent_ago:.1f} s ago by the previous run; {grace:.1f} s of grace left",
            )
        with anyio.CancelScope(shield=True):
            done = await self._terminate(worker, grace, step)
        out.outcome = "recycled" if done else "failed"
        return out

    async def _terminate(
        self, worker: WorkerId, grace: float, step: Callable[..., None], on_signal: Callable[[str], None] | None = None
    ) -> bool:
        """After SIGTERM: wait ``grace``, then SIGKILL. False if the worker outlived even SIGKILL."""
        if await self._wait_exit(worker, grace):
            step("exited", "exited after SIGTERM")
            return True
        step("grace", f"still running {grace:g} s after SIGTERM", ok=False)
        if not self._signal(worker, signal.SIGKILL, step, on_signal):
            return True  # the identity check failed: it exited (or was replaced) between the wait and the kill
        if not await self._wait_exit(worker, 5.0):
            step("kill", "still present 5 s after SIGKILL", ok=False)
            return False
        step("exited", "exited after SIGKILL")
        return True

    def _signal(
        self, worker: WorkerId, sig: int, step: Callable[..., None], on_signal: Callable[[str], None] | None = None
    ) -> bool:
        """Send ``sig`` after re-checking identity; False (and nothing sent) if the worker is not the same."""
        name = signal.Signals(sig).name
        if not self._identity(worker):
            step(name, f"not sent: pid {worker.pid} is gone or reused", ok=False)
            return False
        try:
            self._send_raw(worker.pid, sig)
        except ProcessLookupError:
            step(name, f"not sent: pid {worker.pid} exited", ok=False)
            return False
        except PermissionError:
            step(name, f"permission denied signalling pid {worker.pid}", ok=False)
            return False
        step(name, f"sent to pid {worker.pid}")
        if on_signal is not None:
            on_signal(name)
        return True

    async def _wait_exit(self, worker: WorkerId, seconds: float) -> bool:
        deadline = self._clock() + seconds
        while self._identity(worker):
            if self._clock() >= deadline:
                return False
            await anyio.sleep(self._poll)
        return True

    async def _drain_url(
        self, plan: RecyclePlan, worker: WorkerId, http: aiohttp.ClientSession, step: Callable[..., None]
    ) -> None:
        assert plan.drain_url is not None
        url = plan.drain_url.replace("{pid}", str(worker.pid))
        headers = {"Authorization": f"Bearer {plan.drain_token}"} if plan.drain_token else {}
        try:
            async with http.post(url, headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as r:
                step("drain_url", f"POST {url} -> {r.status}", ok=r.status < 400)
        except (aiohttp.ClientError, TimeoutError) as exc:
            step("drain_url", f"POST {url} failed: {exc or type(exc).__name__}", ok=False)
        except Exception as exc:  # noqa: BLE001 - e.g. ValueError for a token aiohttp refuses: the recycle goes on
            step("drain_url", f"POST {url} not sent: {type(exc).__name__}: {exc}", ok=False)

    async def _finish(
        self,
        out: RecycleOutcome,
        worker: WorkerId,
        replacement: ReplacementCheck | None,
        step: Callable[..., None],
    ) -> RecycleOutcome:
        if out.outcome == "failed":
            return out
        if replacement is None:
            out.outcome = "recycled"
            return out
        pid, detail = await replacement(worker)
        out.replacement = pid
        step("replacement", detail, ok=pid is not None)
        out.outcome = "recycled" if pid is not None else "failed"
        return out
