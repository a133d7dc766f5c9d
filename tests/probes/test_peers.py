"""Probes against MCP servers nobody here wrote: the TypeScript reference server and FastMCP 4.x.

The peer × transport × protocol matrix: each peer is started once (a module-scoped, parametrized fixture) and
probed with ``auto``, ``legacy`` and every pinned revision; a revision the peer speaks must pass a tools/list
and a tools/call probe, and one it does not must fail saying so. A hanging tool must fail in ``tools/call``
within its limit with the session ended, and the server's task is cancelled where the server honours
``notifications/cancelled`` (or, at 2026-07-28, the closed connection).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from tests.probes.peers import FASTMCP_SETUPS, Peer, everything
from watchdog.config import Duration
from watchdog.probes import McpProbe, ProbeResult, ProbeSpec, Timeouts, WorkerPid, run_probe
from watchdog.probes._spec import HANDSHAKE_VERSIONS, MODERN_VERSIONS, JsonObject

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(300)]

PROTOCOLS = ["auto", "legacy", *HANDSHAKE_VERSIONS, *MODERN_VERSIONS]


@dataclass(frozen=True)
class PeerCase:
    """A peer, what it speaks, and its tools: ``echo`` (arguments) and one that hangs (arguments)."""

    id: str
    make: Any
    transport: str
    speaks: tuple[str, ...]
    echo: tuple[str, dict[str, Any]]
    hang: tuple[str, dict[str, Any]]
    worker_pid: bool
    cancels: frozenset[str]
    """The protocols under which a timed-out call's task is seen cancelled in the server."""
    auto: str
    """The revision ``protocol: auto`` settles on."""
    polls: bool = False
    """Whether the server has an event store and the ``poll`` tool, which closes its answer's stream once."""


_TS_ECHO = ("echo", {"message": "watchdog-probe"})
_TS_HANG = ("trigger-long-running-operation", {"duration": 3600, "steps": 1})
_FM_ECHO = ("echo", {"text": "watchdog-probe"})
_FM_HANG = ("hang", {"seconds": 3600})
_EVERY = frozenset((*HANDSHAKE_VERSIONS, *MODERN_VERSIONS))


def _fastmcp_cancels(json: bool, stateless: bool) -> frozenset[str]:
    """Where FastMCP 4.x cancels an abandoned call's task (observed; the probe sends what it can).

    Answers on an SSE stream: the closed stream cancels the task, whatever the protocol. Plain JSON answers:
    only ``notifications/cancelled`` does, which needs a session (a handshake revision, stateful); a
    stateless JSON server keeps the abandoned call running, and so does 2026-07-28, which has no sessions.
    """
    if not json:
        return _EVERY
    return frozenset() if stateless else frozenset(HANDSHAKE_VERSIONS)


CASES = [
    PeerCase(
        "everything-streamable-http",
        lambda: everything("streamableHttp"),
        "streamable-http",
        HANDSHAKE_VERSIONS,
        _TS_ECHO,
        _TS_HANG,
        False,
        frozenset(),  # the tool sleeps without watching its abort signal: nothing to see
        "2025-11-25",
    ),
    PeerCase(
        "everything-sse",
        lambda: everything("sse"),
        "sse",
        HANDSHAKE_VERSIONS,
        _TS_ECHO,
        _TS_HANG,
        False,
        frozenset(),
        "2025-11-25",
    ),
] + [
    PeerCase(
        f"fastmcp-{s.name.replace(' ', '-')}",
        s.peer,
        "sse" if s.sse else "streamable-http",
        (*HANDSHAKE_VERSIONS, *MODERN_VERSIONS),
        _FM_ECHO,
        _FM_HANG,
        True,
        _fastmcp_cancels(s.json, s.stateless),
        "2026-07-28",
        polls=s.event_store,
    )
    for s in FASTMCP_SETUPS
]


@pytest.fixture(scope="module", params=CASES, ids=[c.id for c in CASES])
def peer(request: pytest.FixtureRequest) -> Iterator[tuple[PeerCase, Peer]]:
    case: PeerCase = request.param
    with case.make() as running:
        yield case, running


def probe_spec(
    case: PeerCase, url: str, protocol: str, *, tool: tuple[str, dict[str, Any]] | None, **t: float
) -> ProbeSpec:
    limits = {"connect": 5.0, "initialize": 10.0, "list": 10.0, "call": 10.0, "end": 5.0, "total": 30.0, **t}
    options: dict[str, Any] = {"transport": case.transport, "protocol": protocol, "list_tools": True}
    if tool is not None:
        options.update(tool=tool[0], arguments=JsonObject(tool[1]))
    mcp = McpProbe(**options)
    return ProbeSpec(
        name=f"{case.id}-{protocol}",
        kind="mcp",
        url=url,
        mcp=mcp,
        worker_pid=WorkerPid(json="pid") if case.worker_pid and tool else None,
        timeouts=Timeouts(**{k: Duration(v) for k, v in limits.items()}),
    )


def show(r: ProbeResult) -> str:
    return "; ".join(f"{p.name} {'ok' if p.ok else 'FAIL ' + (p.error or '')} {p.detail or ''}" for p in r.phases)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_tools_list_and_call_with_each_protocol(peer: tuple[PeerCase, Peer], protocol: str) -> None:
    case, server = peer
    expected = {"auto": case.auto, "legacy": HANDSHAKE_VERSIONS[-1]}.get(protocol, protocol)
    for tool in (None, case.echo):
        r = await run_probe(probe_spec(case, server.url, protocol, tool=tool), url=server.url)
        print(f"\n{case.id} {protocol} {'tools/call' if tool else 'tools/list'}: {'PASS' if r.ok else r.reason}")
        if protocol in case.speaks or protocol in ("auto", "legacy"):
            assert r.ok, show(r)
            assert r.protocol_version == expected
            assert r.phase("tools/list") is not None
            if tool:
                assert r.phase("tools/call") is not None
                if case.worker_pid:
                    assert server.proc is not None
                    assert r.worker_pid in [server.proc.pid, *server.children()]
        else:
            assert not r.ok
            assert r.reason is not None
            assert f"the server does not speak protocol {protocol}, which this probe pins" in r.reason, r.reason
    if case.polls and expected in HANDSHAKE_VERSIONS[-1:]:  # SSE polling came with 2025-11-25
        r = await run_probe(probe_spec(case, server.url, protocol, tool=("poll", {})), url=server.url)
        call = r.phase("tools/call")
        assert call is not None
        assert call.ok, show(r)
        assert "answer on a resumed SSE stream (1x GET with Last-Event-ID)" in (call.detail or ""), show(r)


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_a_hanging_tool_fails_in_tools_call_in_time_and_the_session_ends(
    peer: tuple[PeerCase, Peer], protocol: str
) -> None:
    case, server = peer
    n0 = cancelled(server)
    s = probe_spec(case, server.url, protocol, tool=case.hang, call=1.0, total=10.0, end=3.0)
    t0 = time.monotonic()
    r = await run_probe(s, url=server.url)
    took = time.monotonic() - t0
    print(f"\n{case.id} {protocol} hang: {r.reason} in {took:.2f} s; {show(r)}")
    assert (r.failed_phase, r.reason) == ("tools/call", "timeout in tools/call after 1.0 s")
    assert took < 10.0
    end = r.phase("session end")
    assert end is not None
    assert end.ok, end.error
    if r.protocol_version in case.cancels:
        with anyio.fail_after(10):
            while cancelled(server) <= n0:  # noqa: ASYNC110 - another process's file: nothing to await
                await anyio.sleep(0.05)


def cancelled(server: Peer) -> int:
    return sum(line.startswith("cancelled ") for line in server.event_lines())
