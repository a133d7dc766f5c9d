"""Probe definitions: the YAML files under ``probes/``, read by the config engine (file:line:key errors).

One file is one probe. ``kind: mcp`` does what an MCP client does (a session: negotiate, optionally list the
tools, call one, end the session); ``kind: http`` makes one request to a server that is not MCP. The
declarations below are the reference documentation too (``docs/probes.md`` is generated from them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from watchdog.config import (
    Context,
    Duration,
    HeaderValue,
    Invalid,
    MappingNode,
    Node,
    Regex,
    ScalarNode,
    SequenceNode,
    between,
    http_url,
    load_file,
    positive,
    scalar_value,
    setting,
    try_parse,
)

Report = Callable[[str | None, str], None]

HANDSHAKE_VERSIONS: tuple[str, ...] = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
"""MCP revisions reached through the ``initialize`` handshake, oldest first."""
MODERN_VERSIONS: tuple[str, ...] = ("2026-07-28",)
"""MCP revisions with the stateless per-request envelope (``server/discover``, no session)."""

Protocol = Literal["auto", "legacy", "modern", "2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"]


check_url = http_url
"""None when ``value`` is an http(s) URL with a host (and a valid port), else what is wrong."""


def _header_name(value: str) -> str | None:
    return None if re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", value) else f"not a valid HTTP header name: {value!r}"


class JsonObject(dict[str, Any]):
    """A YAML mapping taken as a JSON object (tool arguments): any nesting of mappings, lists and scalars."""

    @classmethod
    def __config_parse__(cls, node: Node, ctx: Context, key: str) -> JsonObject:
        if not isinstance(node, MappingNode):
            ctx.error(node, key, "expected a mapping (the tool's arguments as a JSON object)")
            raise Invalid
        value = _json_value(node, ctx, key)
        assert isinstance(value, dict)
        return cls(value)


def _json_value(node: Node, ctx: Context, key: str) -> Any:
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        for k, v in node.value:
            name = scalar_value(k) if isinstance(k, ScalarNode) else None
            if not isinstance(name, str):
                ctx.error(k, key, f"JSON object keys are strings; got {name!r} (quote it)")
                raise Invalid
            out[name] = _json_value(v, ctx, f"{key}.{name}")
        return out
    if isinstance(node, SequenceNode):
        return [_json_value(v, ctx, f"{key}[{i}]") for i, v in enumerate(node.value)]
    assert isinstance(node, ScalarNode)
    value = scalar_value(node)
    if isinstance(value, str):
        return try_parse(str, node, key, ctx)  # ${VAR} substitution, as everywhere else
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")):
        return value
    ctx.error(node, key, f"not a JSON value: {node.value!r} (quote it to send a string)")
    raise Invalid


@dataclass(frozen=True)
class McpProbe:
    """An MCP session as a client runs it: negotiate, optionally `tools/list`, `tools/call`, end the session."""

    transport: Literal["streamable-http", "sse"] = setting(
        "streamable-http",
        doc="`streamable-http` (POST to the URL; JSON or SSE answers) or `sse` (the older transport: GET the URL "
        "for an event stream, POST to the endpoint it names).",
    )
    protocol: Protocol = setting(
        "auto",
        doc="`auto`: try `server/discover` (2026-07-28, no session) and fall back to the `initialize` handshake "
        "as the official SDK does; `legacy`: the handshake, accepting any revision the server picks; `modern`: "
        "`server/discover` only; or pin one revision (2024-11-05, 2025-03-26, 2025-06-18, 2025-11-25, "
        "2026-07-28) and fail when the server will not speak it.",
    )
    tool: str | None = setting(None, doc="The tool to call. Without one, the probe is `tools/list` only.")
    arguments: JsonObject = setting(doc="The tool's arguments (a mapping).", factory=JsonObject)
    list_tools: bool = setting(
        False, doc="Run `tools/list` before the call; the tool must be listed. Needed when `tool` is not set."
    )
    match: Regex | None = setting(
        None, doc="A regular expression that must be found in the result's text content (text items, one a line)."
    )

    def __config_check__(self, report: Report) -> None:
        if self.tool is None and not self.list_tools:
            report(None, "name a 'tool' to call, or set 'list_tools: true' for a tools/list probe")
        if self.tool is None and self.match is not None:
            report("match", "'match' checks a tool result; name a 'tool'")


@dataclass(frozen=True)
class HttpProbe:
    """One plain HTTP request, for servers that do not speak MCP."""

    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = setting("GET", doc="The HTTP method.")
    status: int = setting(200, doc="The status the response must have.", check=between(100, 599))
    body: str | None = setting(None, doc="A request body to send (set `Content-Type` under `headers`).")
    match: Regex | None = setting(None, doc="A regular expression that must be found in the response body.")


@dataclass(frozen=True)
class WorkerPid:
    """Where the answer says which worker process served it. Give exactly one of `json`, `regex`, `header`."""

    json: str | None = setting(
        None,
        doc="A dotted path into the tool result's `structuredContent` (MCP) or the JSON body (HTTP): `pid`, "
        "`result.worker.pid`, `items.0.pid`.",
    )
    regex: Regex | None = setting(
        None, doc="A regular expression searched in the text content (MCP) or body (HTTP); group 1 is the pid."
    )
    header: str | None = setting(None, doc="A response header that carries the pid (HTTP probes).", check=_header_name)

    def __config_check__(self, report: Report) -> None:
        given = [k for k in ("json", "regex", "header") if getattr(self, k) is not None]
        if len(given) != 1:
            what = "none" if not given else " and ".join(repr(g) for g in given)
            report(None, f"give exactly one of 'json', 'regex' or 'header' (got {what})")
        if self.regex is not None and re.compile(self.regex).groups < 1:
            report("regex", f"the pattern needs a group around the pid, such as 'pid=(\\d+)'; got {self.regex!r}")


@dataclass(frozen=True)
class Auth:
    """Credentials sent with every request of the probe."""

    bearer_env: str | None = setting(
        None,
        doc="The name of an environment variable holding a bearer token, read each time the probe runs "
        "(sent as `Authorization: Bearer <token>`).",
    )


_positive = positive


@dataclass(frozen=True)
class Timeouts:
    """Each phase's own time limit, and the limit for the whole probe."""

    connect: Duration = setting(
        Duration(5.0), doc="TCP connect; for `sse`, also until the stream names its endpoint.", check=_positive
    )
    initialize: Duration = setting(Duration(5.0), doc="`initialize` or `server/discover`.", check=_positive)
    list: Duration = setting(Duration(5.0), doc="`tools/list` (every page of it).", check=_positive)
    call: Duration = setting(Duration(10.0), doc="`tools/call`, or the request of an `http` probe.", check=_positive)
    end: Duration = setting(
        Duration(2.0), doc="Ending the session (HTTP DELETE, or closing the SSE stream).", check=_positive
    )
    total: Duration = setting(
        Duration(30.0),
        doc="The whole probe. The phases before the session end share `total - end`; the session end always "
        "gets its own `end`, so a failed probe still ends its session and never runs past `total`.",
        check=_positive,
    )

    def __config_check__(self, report: Report) -> None:
        if self.total <= self.end:
            report("total", f"must be more than 'end' ({self.end:g} s) to leave time for the phases")


@dataclass(frozen=True)
class ProbeSpec:
    """One probe definition (a file under `probes/`)."""

    name: str = setting(doc="A short name for logs, metrics labels and alerts.")
    kind: Literal["mcp", "http"] = setting(doc="`mcp` (a real MCP session) or `http` (one HTTP request).")
    url: str = setting(
        doc="The endpoint: the MCP URL (`/mcp`, or `/sse` for the SSE transport) or the HTTP URL. "
        "`watchdog probe --url` and the sidecar's target may override it.",
        check=check_url,
    )
    mcp: McpProbe | None = setting(None, doc="What the MCP session does (`kind: mcp`).")
    http: HttpProbe | None = setting(None, doc="The request (`kind: http`); GET expecting 200 when left out.")
    worker_pid: WorkerPid | None = setting(
        None, doc="How to tell which worker answered; without it, results are for the target as a whole."
    )
    auth: Auth = setting(doc="Credentials.", factory=Auth)
    headers: dict[str, HeaderValue] = setting(doc="Extra request headers; use `${VAR}` for secrets.", factory=dict)
    timeouts: Timeouts = setting(doc="Time limits.", factory=Timeouts)

    def __config_check__(self, report: Report) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.name):
            report("name", f"use letters, digits, '_', '.' or '-' only (got {self.name!r})")
        if self.kind == "mcp" and self.mcp is None:
            report(None, "a 'kind: mcp' probe needs an 'mcp' section (at least 'tool' or 'list_tools: true')")
        if self.kind == "mcp" and self.http is not None:
            report("http", "the 'http' section is for 'kind: http' probes")
        if self.kind == "http" and self.mcp is not None:
            report("mcp", "the 'mcp' section is for 'kind: mcp' probes")
        for name in self.headers:
            if (problem := _header_name(name)) is not None:
                report("headers", problem)
        if self.worker_pid is not None and self.worker_pid.header is not None and self.kind == "mcp":
            report("worker_pid", "'header' attribution is for http probes; use 'json' or 'regex' for MCP results")

    @property
    def transport(self) -> str:
        """``streamable-http``, ``sse`` or ``http``."""
        return self.mcp.transport if self.mcp is not None else "http"


def load_probe(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> ProbeSpec:
    """Read and validate one probe file; raise ``ConfigErrors`` naming file, line and key for each problem."""
    spec = load_file(ProbeSpec, path, env=env)
    assert isinstance(spec, ProbeSpec)
    return spec
