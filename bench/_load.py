"""A light MCP load generator for the benchmarks: real ``tools/call`` requests over streamable HTTP.

Each client has its own connection (so the kernel spreads clients over the gunicorn workers) and calls without
pause. It speaks the wire protocol directly with aiohttp instead of using the SDK client, so that on a 2-core
machine the load generator does not eat the CPU it is measuring. Loops are bounded by time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import aiohttp
import anyio

HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-11-25",
}


@dataclass
class LoadResult:
    ok: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def _body(i: int) -> bytes:
    msg = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}}
    return json.dumps(msg).encode()


async def _client(url: str, deadline: float, out: LoadResult, per_call: float) -> None:
    conn = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=per_call)) as s:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            start = time.monotonic()
            try:
                async with s.post(url, data=_body(i), headers=HEADERS) as r:
                    text = await r.text()
                    good = r.status == 200 and '"isError":false' in text
                    kind = f"HTTP {r.status}" if r.status != 200 else "tool error"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                good, kind = False, type(exc).__name__
            if good:
                out.ok += 1
                out.latencies.append(time.monotonic() - start)
            else:
                out.failed += 1
                out.errors[kind] = out.errors.get(kind, 0) + 1


async def run_load(url: str, *, clients: int, seconds: float, per_call: float = 10.0) -> LoadResult:
    """``clients`` concurrent callers of ``echo`` for ``seconds``; every call counted as ok or failed."""
    out = LoadResult()
    start = time.monotonic()
    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(_client, url, start + seconds, out, per_call)
    out.seconds = time.monotonic() - start
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]
