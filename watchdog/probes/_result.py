"""What a probe found, phase by phase, and the machinery that times and bounds each phase.

A probe is a short sequence of phases (``initialize``, ``tools/call``, ``session end`` ...). ``Recorder.step``
runs one phase under its own timeout and the probe's overall deadline, measures it, and turns every way it can
go wrong into a ``Phase`` with a one-line reason. A target's failure is data, never an exception: the caller
gets a ``ProbeResult`` whatever the server did.
"""

from __future__ import annotations

import errno
import math
import socket
import time
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import aiohttp
import anyio

T = TypeVar("T")


@dataclass(frozen=True)
class Phase:
    """One phase of a probe: its name, whether it passed, how long it took, and why it failed.

    ``detail`` carries what an operator wants to see beside a passing phase (the negotiated protocol version,
    the number of tools listed, "no session issued (stateless server)").
    """

    name: str
    ok: bool
    latency_s: float
    error: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe run.

    ``ok`` is the verdict. When it is false, ``failed_phase`` names the phase that broke and ``reason`` says why
    in one line (``timeout in tools/call after 5.0 s``, ``initialize: connection refused (127.0.0.1:8000)``).
    ``worker_pid`` names the worker that answered when the server says so (see the probe's ``worker_pid``
    rule); otherwise the result is for the target as a whole. ``latency_s`` is the whole probe, first byte
    sent to session end.
    """

    probe: str
    url: str
    kind: str
    transport: str
    ok: bool
    phases: tuple[Phase, ...]
    failed_phase: str | None = None
    reason: str | None = None
    worker_pid: int | None = None
    protocol_version: str | None = None
    session_id: str | None = None
    latency_s: float = 0.0
    started_at: float = 0.0

    def phase(self, name: str) -> Phase | None:
        """The phase called ``name``, if the probe got that far."""
        return next((p for p in self.phases if p.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``watchdog probe --json`` prints and ``/v1/status`` will carry)."""
        out = asdict(self)
        out["latency_s"] = round(self.latency_s, 6)
        out["phases"] = [{**asdict(p), "latency_s": round(p.latency_s, 6)} for p in self.phases]
        return out


class PhaseError(Exception):
    """Internal: the phase at hand failed for the reason given (written for an operator, without the phase)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class ProbeFailed(Exception):
    """Internal: a phase failed and was recorded; stop the probe (session end still runs)."""


@dataclass
class Recorder:
    """Runs phases in order, each under ``min(its timeout, what is left before the deadline)``."""

    deadline: float
    """``time.monotonic()`` value by which every phase before session end must be over."""
    total_s: float
    phases: list[Phase] = field(default_factory=list)
    detail: str | None = None

    def note(self, detail: str) -> None:
        """Attach ``detail`` to the phase being run."""
        self.detail = detail

    def record(
        self, name: str, ok: bool, latency_s: float, error: str | None = None, detail: str | None = None
    ) -> None:
        self.phases.append(Phase(name, ok, latency_s, error, detail))

    async def step(self, name: str, timeout_s: float, work: Coroutine[Any, Any, T], *, final: bool = False) -> T:
        """Run ``work`` as phase ``name``; record it; raise ``ProbeFailed`` when it fails.

        A ``final`` phase (session end) is not held to the deadline but to its own timeout alone, is shielded
        from outside cancellation (so a cancelled probe still ends its session, briefly), and never raises.
        Cancellation from outside is never mistaken for a timeout: it propagates.
        """
        limit = timeout_s if final else min(timeout_s, self.deadline - time.monotonic())
        self.detail = None
        if limit <= 0:
            work.close()
            self.record(name, False, 0.0, f"timeout: the probe's total timeout ({self.total_s:g} s) was spent")
            raise ProbeFailed
        t0 = time.perf_counter()
        error: str | None = None
        value: T | None = None
        with anyio.move_on_after(limit, shield=final) as scope:
            try:
                value = await work
            except PhaseError as exc:
                error = exc.why
            except (aiohttp.ClientError, OSError) as exc:
                error = network_reason(exc)
        latency = time.perf_counter() - t0
        if scope.cancelled_caught:
            by_total = limit < timeout_s
            error = f"timeout in {name} after {_secs(limit)}" + (
                f" (the probe's total timeout of {self.total_s:g} s)" if by_total else ""
            )
        if error is not None:
            self.record(name, False, latency, error, self.detail)
            if final:
                return value  # type: ignore[return-value]  # a final phase's value is not used
            raise ProbeFailed
        self.record(name, True, latency, None, self.detail)
        return value  # type: ignore[return-value]  # work returned normally, so value is set


def _secs(seconds: float) -> str:
    return f"{math.floor(seconds * 10 + 0.5) / 10:.1f} s"


def reason_of(phase: Phase) -> str:
    """One line: a timeout already names its phase; anything else gets the phase in front."""
    error = phase.error or "failed"
    return error if error.startswith("timeout in ") else f"{phase.name}: {error}"


def network_reason(exc: BaseException) -> str:
    """What a network-level failure means, in the words an operator searches for."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        where = f"{exc.host}:{exc.port}"
        os_error = exc.os_error
        if isinstance(os_error, socket.gaierror):
            return f"cannot resolve host {exc.host!r}"
        if os_error.errno == errno.ECONNREFUSED or isinstance(os_error, ConnectionRefusedError):
            return f"connection refused ({where})"
        if isinstance(os_error, TimeoutError):
            return f"timeout connecting to {where}"
        return f"cannot connect to {where}: {os_error.strerror or os_error}"
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return f"timeout: {exc}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without a complete response"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"the response body broke off: {_first_line(exc)}"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL {exc}"
    if isinstance(exc, ConnectionResetError):
        return "the connection was reset by the server"
    if isinstance(exc, OSError) and exc.strerror:
        return f"network error: {exc.strerror}"
    return f"network error: {type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
