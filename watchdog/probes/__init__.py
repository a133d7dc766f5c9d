"""Deep liveness probes: do what a client does, phase by phase, and say which phase broke.

A shallow health check stays green while users fail (every story in ``shared/seeds``). A probe here runs a
real MCP session (negotiate, optionally ``tools/list``, ``tools/call``, end the session) over streamable HTTP
or SSE, in either protocol era, or one plain HTTP request, and returns a ``ProbeResult``: the verdict, each
phase's latency, and for a failure the phase and a one-line reason.

Layout (each module imports only those above it):

- ``_sse_parser``: a bounded, incremental ``text/event-stream`` parser.
- ``_spec``: probe definitions (``probes/*.yaml``) declared for the config engine; ``load_probe``.
- ``_result``: ``Phase``, ``ProbeResult``; the ``Recorder`` that times and bounds each phase.
- ``_wire``: JSON-RPC answers read from JSON or SSE responses.
- ``_mcp_http``, ``_mcp_sse``: the two MCP transports; ``_mcp``: the session over either; ``_http``: plain HTTP.
- ``_run``: ``run_probe``, the one entry point.
"""

from watchdog.probes._result import Phase, ProbeResult
from watchdog.probes._run import run_probe
from watchdog.probes._spec import (
    HANDSHAKE_VERSIONS,
    MODERN_VERSIONS,
    Auth,
    HttpProbe,
    McpProbe,
    ProbeSpec,
    Timeouts,
    WorkerPid,
    load_probe,
)

__all__ = [
    "HANDSHAKE_VERSIONS",
    "MODERN_VERSIONS",
    "Auth",
    "HttpProbe",
    "McpProbe",
    "Phase",
    "ProbeResult",
    "ProbeSpec",
    "Timeouts",
    "WorkerPid",
    "load_probe",
    "run_probe",
]
