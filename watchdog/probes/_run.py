"""``run_probe``: one probe against one target, bounded in time and resources, failures as results."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import aiohttp
import anyio

from watchdog.config import header_value_problem
from watchdog.errors import ProbeError
from watchdog.probes._http import run_http
from watchdog.probes._mcp import McpSession, Outcome
from watchdog.probes._mcp_http import StreamableHttpChannel
from watchdog.probes._mcp_sse import SseChannel
from watchdog.probes._result import ProbeFailed, ProbeResult, Recorder, reason_of
from watchdog.probes._spec import ProbeSpec, check_url
from watchdog.redact import REDACTOR

USER_AGENT = "mcp-watchdog-probe"


async def run_probe(
    spec: ProbeSpec,
    *,
    url: str | None = None,
    session: aiohttp.ClientSession | None = None,
    env: Mapping[str, str] | None = None,
) -> ProbeResult:
    """Run ``spec`` once against ``url`` (default: the spec's own) and say what happened, phase by phase.

    A failing target is a result (``ok`` false, ``failed_phase``, ``reason``), never an exception; the only
    exception is ``ProbeError`` for a ``url`` that is not an http(s) URL. The probe never runs past
    ``spec.timeouts.total`` (plus scheduling noise), always ends the session it opened (the session end has
    its own timeout inside the total), and holds nothing afterwards: pass a long-lived ``session`` to reuse
    its connection pool across probes (the sidecar does), or let the probe make and close its own.
    Cancelling the caller cancels the probe; the session end still runs, shielded, for at most
    ``timeouts.end``. ``env`` (default ``os.environ``) supplies ``auth.bearer_env``. asyncio only (aiohttp).
    """
    target = url if url is not None else spec.url
    if (problem := check_url(target)) is not None:
        raise ProbeError(f"probe {spec.name!r}: {problem}", probe=spec.name)
    t = spec.timeouts
    started_at = time.time()
    t0 = time.perf_counter()
    rec = Recorder(deadline=time.monotonic() + t.total - t.end, total_s=t.total)
    out = Outcome()
    client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=t.connect)
    http = session if session is not None else aiohttp.ClientSession()
    try:
        headers = _headers(spec, os.environ if env is None else env, rec)
        if headers is not None:
            await _run(spec, target, http, headers, client_timeout, rec, out)
    except ProbeFailed:
        pass
    finally:
        if session is None:
            with anyio.move_on_after(1.0, shield=True):
                await http.close()
    failed = next((p for p in rec.phases if not p.ok), None)
    return ProbeResult(
        probe=spec.name,
        url=target,
        kind=spec.kind,
        transport=spec.transport,
        ok=failed is None and bool(rec.phases),
        phases=tuple(rec.phases),
        failed_phase=failed.name if failed else None,
        reason=reason_of(failed) if failed else None,
        worker_pid=out.worker_pid,
        protocol_version=out.protocol_version,
        session_id=out.session_id,
        latency_s=time.perf_counter() - t0,
        started_at=started_at,
    )


async def _run(
    spec: ProbeSpec,
    url: str,
    http: aiohttp.ClientSession,
    headers: dict[str, str],
    client_timeout: aiohttp.ClientTimeout,
    rec: Recorder,
    out: Outcome,
) -> None:
    if spec.mcp is None:
        await run_http(spec, url, http, headers, client_timeout, rec, out)
        return
    channel_cls = SseChannel if spec.mcp.transport == "sse" else StreamableHttpChannel
    channel = channel_cls(http, url, headers, client_timeout)
    mcp = McpSession(spec.mcp, spec.worker_pid, channel, out)
    try:
        await mcp.run(rec, spec.timeouts)
    finally:
        await mcp.finish(rec, spec.timeouts)


def _headers(spec: ProbeSpec, env: Mapping[str, str], rec: Recorder) -> dict[str, str] | None:
    """The request headers every message carries, or None (recorded as a failed ``setup``) without a token."""
    headers = {"User-Agent": USER_AGENT, **spec.headers}
    if spec.auth.bearer_env is not None:
        token = env.get(spec.auth.bearer_env)
        if not token:
            rec.record("setup", False, 0.0, f"environment variable {spec.auth.bearer_env} (auth.bearer_env) is not set")
            return None
        REDACTOR.remember(token)  # read at run time, hidden like a ${ENV} value
        if (problem := header_value_problem(token)) is not None:
            rec.record("setup", False, 0.0, f"environment variable {spec.auth.bearer_env} (auth.bearer_env) {problem}")
            return None
        headers["Authorization"] = f"Bearer {token}"
    return headers
