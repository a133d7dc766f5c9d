"""The ``http`` probe: one request to a server that does not speak MCP (a health or readiness endpoint)."""

from __future__ import annotations

import re

import aiohttp

from watchdog.probes._mcp import Outcome, worker_pid
from watchdog.probes._result import PhaseError, Recorder
from watchdog.probes._spec import HttpProbe, ProbeSpec
from watchdog.probes._wire import excerpt, parse_json, read_body

MAX_HTTP_BODY = 1024 * 1024


async def run_http(
    spec: ProbeSpec,
    url: str,
    http: aiohttp.ClientSession,
    headers: dict[str, str],
    client_timeout: aiohttp.ClientTimeout,
    rec: Recorder,
    out: Outcome,
) -> None:
    """Make the request as phase ``request``; raises ``ProbeFailed`` when it fails."""
    want = spec.http or HttpProbe()

    async def request() -> None:
        body = want.body.encode() if want.body is not None else None
        async with http.request(
            want.method, url, data=body, headers=headers, timeout=client_timeout, allow_redirects=False
        ) as resp:
            raw = await read_body(resp, MAX_HTTP_BODY)
        text = raw.decode("utf-8", "replace")
        if resp.status != want.status:
            tail = f": {excerpt(text, 120)}" if text.strip() else ""
            raise PhaseError(f"HTTP {resp.status} {resp.reason or ''}, expected {want.status}{tail}".replace(" ,", ","))
        if want.match is not None and not re.search(want.match, text):
            raise PhaseError(f"the body does not match {want.match!r}: {excerpt(text, 120)!r}")
        rule = spec.worker_pid
        data = parse_json(raw, "JSON body") if rule is not None and rule.json is not None else None
        header = resp.headers.get(rule.header) if rule is not None and rule.header is not None else None
        out.worker_pid = worker_pid(rule, data, text, header)
        rec.note(f"HTTP {resp.status}" + (f", worker {out.worker_pid}" if out.worker_pid is not None else ""))

    await rec.step("request", spec.timeouts.call, request())
