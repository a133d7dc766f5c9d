"""The MCP session a probe runs, phase by phase, over either transport.

Negotiation follows the official SDK (``mcp.client._probe``): with ``protocol: auto`` a ``server/discover`` at
2026-07-28 goes first; a server that answers it with a modern version is spoken to that way (no session),
and any JSON-RPC error or HTTP 4xx is not an era verdict but a reason to fall back to the ``initialize``
handshake. Only an outage (refused, timed out, 5xx) or a server that names only modern versions we do not
speak fails the probe there.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from watchdog._version import __version__
from watchdog.probes._result import PhaseError, Recorder, network_reason
from watchdog.probes._spec import HANDSHAKE_VERSIONS, MODERN_VERSIONS, McpProbe, Timeouts, WorkerPid
from watchdog.probes._wire import HttpStatusError, RpcError, excerpt

CLIENT_INFO = {"name": "mcp-watchdog-probe", "version": __version__}
META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
UNSUPPORTED_PROTOCOL_VERSION = -32022
HEADER_MISMATCH = -32020
MAX_LIST_PAGES = 20


class Channel(Protocol):
    """A transport carrying one MCP session (``StreamableHttpChannel``, ``SseChannel``)."""

    transport: str
    session_id: str | None
    protocol_version: str | None
    resumes: int

    @property
    def opened(self) -> bool: ...
    async def open(self) -> str | None: ...
    async def request(self, message: dict[str, Any], extra: dict[str, str]) -> dict[str, Any]: ...
    async def notify(self, message: dict[str, Any], extra: dict[str, str]) -> None: ...
    async def end(self) -> str: ...
    async def close(self) -> None: ...


@dataclass
class Outcome:
    """What the session learned on the way, for the ``ProbeResult``."""

    protocol_version: str | None = None
    worker_pid: int | None = None
    session_id: str | None = None


class McpSession:
    """Runs the phases of one MCP probe on a channel, recording each in a ``Recorder``."""

    def __init__(self, spec: McpProbe, worker: WorkerPid | None, channel: Channel, out: Outcome) -> None:
        self.spec = spec
        self.worker = worker
        self.ch = channel
        self.out = out
        self.modern = False
        self.negotiated = False
        self._next_id = 0
        self._input_schema: Any = None
        self._pending: tuple[int, str] | None = None
        """The request sent and not answered (id, method): a timed-out one is cancelled before the session ends."""

    # -- the phases ---------------------------------------------------------------------------------------
    async def run(self, rec: Recorder, t: Timeouts) -> None:
        """Every phase up to the tool call; raises ``ProbeFailed`` at the first failure."""
        if self.ch.transport == "sse":
            await rec.step("connect", t.connect, self._connect(rec))
        await self._negotiate(rec, t)
        if self.spec.list_tools:
            await rec.step("tools/list", t.list, self._list_tools(rec))
        if self.spec.tool is not None:
            await rec.step("tools/call", t.call, self._call_tool(rec))

    async def finish(self, rec: Recorder, t: Timeouts) -> None:
        """End the session, if there is one, under its own timeout and shielded from cancellation."""
        self.out.session_id = self.ch.session_id
        if self.ch.opened:
            await rec.step("session end", t.end, self._end(rec), final=True)
        elif self.negotiated:
            why = "protocol 2026-07-28 has no sessions" if self.modern else "no session id issued (stateless server)"
            rec.record("session end", True, 0.0, None, f"{why}; nothing to end")
        await self.ch.close()

    async def _end(self, rec: Recorder) -> None:
        cancelled = await self._cancel_pending()
        ended = await self.ch.end()
        rec.note(f"{cancelled}; {ended}" if cancelled else ended)

    async def _cancel_pending(self) -> str:
        """Send ``notifications/cancelled`` for a request left unanswered (a timeout), as a client SHOULD.

        Only in a session: without one the notification would reach a server instance that never saw the
        request (a stateless server), and in 2026-07-28 closing the request's connection is the cancellation.
        """
        if self._pending is None or not self.negotiated or self.modern:
            return ""
        request_id, method = self._pending
        self._pending = None
        message = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request_id, "reason": f"the watchdog's probe gave up waiting for {method}"},
        }
        try:
            await self.ch.notify(message, {})
        except PhaseError as exc:
            return f"notifications/cancelled for request {request_id} failed ({exc.why})"
        except (aiohttp.ClientError, OSError) as exc:
            return f"notifications/cancelled for request {request_id} failed ({network_reason(exc)})"
        return f"cancelled request {request_id} ({method})"

    async def _connect(self, rec: Recorder) -> None:
        detail = await self.ch.open()
        if detail:
            rec.note(detail)

    async def _negotiate(self, rec: Recorder, t: Timeouts) -> None:
        mode = self.spec.protocol
        if mode in ("auto", "modern") or mode in MODERN_VERSIONS:
            version = mode if mode in MODERN_VERSIONS else MODERN_VERSIONS[-1]
            if await rec.step("server/discover", t.initialize, self._discover(rec, version, fallback=mode == "auto")):
                self.modern = self.negotiated = True
                self.out.protocol_version = self.ch.protocol_version = version
                return
        offer = mode if mode in HANDSHAKE_VERSIONS else HANDSHAKE_VERSIONS[-1]
        await rec.step("initialize", t.initialize, self._initialize(rec, offer, pinned=mode in HANDSHAKE_VERSIONS))
        self.negotiated = True
        await rec.step("notifications/initialized", t.initialize, self._initialized())

    async def _discover(self, rec: Recorder, version: str, *, fallback: bool) -> bool:
        """True when the server speaks ``version``; False to fall back to the handshake (``auto`` only)."""
        try:
            result = await self._request("server/discover", {}, modern_version=version)
        except RpcError as exc:
            if not fallback:
                raise _not_spoken(version, f"it answered server/discover with {exc.why}") from None
            if exc.code == UNSUPPORTED_PROTOCOL_VERSION:
                supported = exc.data.get("supported") if isinstance(exc.data, dict) else None
                if isinstance(supported, list) and not any(v in HANDSHAKE_VERSIONS for v in supported):
                    raise PhaseError(f"the server speaks only {supported}; this probe speaks {version}") from None
            rec.note(f"not a 2026-07-28 server ({exc.why}); falling back to initialize")
            return False
        except HttpStatusError as exc:
            if exc.status >= 500 or exc.status in (401, 403):
                raise
            if not fallback:
                raise _not_spoken(version, f"it answered server/discover with {exc.why}") from None
            rec.note(f"not a 2026-07-28 server ({exc.why}); falling back to initialize")
            return False
        supported = result.get("supportedVersions")
        if not isinstance(supported, list) or version not in supported:
            if fallback:
                rec.note(f"the server advertises {supported!r}, not {version}; falling back to initialize")
                return False
            raise _not_spoken(version, f"it advertises {supported!r}")
        rec.note(f"protocol {version}{_server_name(result)}")
        return True

    async def _initialize(self, rec: Recorder, offer: str, *, pinned: bool) -> None:
        params = {"protocolVersion": offer, "capabilities": {}, "clientInfo": CLIENT_INFO}
        result = await self._request("initialize", params)
        version = result.get("protocolVersion")
        if not isinstance(version, str):
            raise PhaseError("malformed initialize result: no protocolVersion")
        if version not in HANDSHAKE_VERSIONS:
            raise PhaseError(f"the server answered protocol version {version!r}, which this probe does not speak")
        if pinned and version != offer:
            raise _not_spoken(offer, f"it answered initialize with {version}")
        self.out.protocol_version = self.ch.protocol_version = version
        session = f", session {self.ch.session_id[:8]}…" if self.ch.session_id else ", no session id (stateless)"
        rec.note(f"protocol {version}{_server_name(result)}{session if self.ch.transport != 'sse' else ''}")

    async def _initialized(self) -> None:
        await self.ch.notify({"jsonrpc": "2.0", "method": "notifications/initialized"}, {})

    async def _list_tools(self, rec: Recorder) -> None:
        names: list[str] = []
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            result = await self._request("tools/list", {"cursor": cursor} if cursor else {})
            tools = result.get("tools")
            if not isinstance(tools, list):
                raise PhaseError("malformed tools/list result: no 'tools' list")
            for tool in tools:
                if isinstance(tool, dict) and isinstance(tool.get("name"), str):
                    names.append(tool["name"])
                    if tool["name"] == self.spec.tool:
                        self._input_schema = tool.get("inputSchema")
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
        else:
            raise PhaseError(f"tools/list did not end within {MAX_LIST_PAGES} pages")
        if self.spec.tool is not None and self.spec.tool not in names:
            shown = ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
            raise PhaseError(f"tool {self.spec.tool!r} is not listed ({len(names)} tools: {shown or 'none'})")
        rec.note(f"{len(names)} tool{'s' if len(names) != 1 else ''}")

    async def _call_tool(self, rec: Recorder) -> None:
        assert self.spec.tool is not None
        arguments = dict(self.spec.arguments)
        extra = {"Mcp-Name": _header_value(self.spec.tool)} if self.modern else {}
        if self.modern and self._input_schema is not None:
            extra.update(_param_headers(self._input_schema, arguments))
        try:
            result = await self._request("tools/call", {"name": self.spec.tool, "arguments": arguments}, extra=extra)
        except RpcError as exc:
            if exc.code == HEADER_MISMATCH and self.modern and self._input_schema is None:
                raise PhaseError(
                    f"{exc.why}; set 'list_tools: true' so the probe can mirror the tool's x-mcp-header parameters"
                ) from None
            raise
        text = _text_of(result)
        if result.get("isError") is True:
            raise PhaseError(f"isError: true: {excerpt(text) or '(no text)'}")
        if self.spec.match is not None and not re.search(self.spec.match, text):
            raise PhaseError(f"the result does not match {self.spec.match!r}: {excerpt(text, 120)!r}")
        pid = worker_pid(self.worker, result.get("structuredContent"), text)
        self.out.worker_pid = pid
        notes = [f"worker {pid}"] if pid is not None else ["the result did not name a worker"] if self.worker else []
        if self.ch.resumes:
            notes.append(f"answer on a resumed SSE stream ({self.ch.resumes}x GET with Last-Event-ID)")
        if notes:
            rec.note("; ".join(notes))

    # -- the wire -----------------------------------------------------------------------------------------
    async def _request(
        self, method: str, params: dict[str, Any], *, extra: dict[str, str] | None = None, modern_version: str = ""
    ) -> dict[str, Any]:
        self._next_id += 1
        headers = dict(extra or {})
        version = modern_version or (self.ch.protocol_version if self.modern else "")
        if version:
            params = {
                **params,
                "_meta": {META_VERSION: version, META_CAPABILITIES: {}, META_CLIENT_INFO: CLIENT_INFO},
            }
            headers["MCP-Protocol-Version"] = version
            headers["Mcp-Method"] = method
        message = {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}
        self._pending = (self._next_id, method)
        try:
            result = await self.ch.request(message, headers)
        except PhaseError:
            self._pending = None  # answered, if only with an error: nothing left running to cancel
            raise
        self._pending = None
        return result


def _not_spoken(version: str, evidence: str) -> PhaseError:
    return PhaseError(
        f"the server does not speak protocol {version}, which this probe pins ({evidence}); "
        "pin a revision it speaks or use 'protocol: auto'"
    )


def _server_name(result: dict[str, Any]) -> str:
    info = result.get("serverInfo") or (result.get("_meta") or {}).get("io.modelcontextprotocol/serverInfo")
    name = info.get("name") if isinstance(info, dict) else None
    return f", server {name!r}" if isinstance(name, str) and name else ""


def _text_of(result: dict[str, Any]) -> str:
    content = result.get("content")
    if not isinstance(content, list):
        return ""
    return "\n".join(item["text"] for item in content if isinstance(item, dict) and isinstance(item.get("text"), str))


def worker_pid(rule: WorkerPid | None, data: Any, text: str, header: str | None = None) -> int | None:
    """The pid the answer names by ``rule`` (a JSON path into ``data``, a regex on ``text``, or a header)."""
    if rule is None:
        return None
    raw: Any = None
    if rule.json is not None:
        raw = data
        for part in rule.json.split("."):
            if isinstance(raw, dict):
                raw = raw.get(part)
            elif isinstance(raw, list) and part.isdigit() and int(part) < len(raw):
                raw = raw[int(part)]
            else:
                return None
    elif rule.regex is not None:
        m = re.search(rule.regex, text)
        raw = m.group(1) if m else None
    elif rule.header is not None:
        raw = header
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0 else None


_SAFE_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")


def _header_value(value: str) -> str:
    """How the SDK puts a value into a header: verbatim when it is plain ASCII, else a base64 sentinel."""
    if _SAFE_HEADER_VALUE.fullmatch(value) and value == value.strip() and not value.startswith("=?base64?"):
        return value
    return f"=?base64?{base64.b64encode(value.encode()).decode('ascii')}?="


def _param_headers(schema: Any, arguments: dict[str, Any]) -> dict[str, str]:
    """``Mcp-Param-*`` headers for arguments whose schema property carries ``x-mcp-header`` (2026-07-28).

    Only properties reached through plain ``properties`` chains are annotated, as the SDK validates them.
    """
    out: dict[str, str] = {}
    stack: list[tuple[Any, Any]] = [(schema, arguments)]
    while stack:
        node, value = stack.pop()
        if not isinstance(node, dict) or not isinstance(node.get("properties"), dict):
            continue
        for name, sub in node["properties"].items():
            arg = value.get(name) if isinstance(value, dict) else None
            if not isinstance(sub, dict) or arg is None:
                continue
            token = sub.get("x-mcp-header")
            if isinstance(token, str):
                if isinstance(arg, bool):
                    out[f"Mcp-Param-{token}"] = "true" if arg else "false"
                elif isinstance(arg, (str, int, float)):
                    out[f"Mcp-Param-{token}"] = _header_value(str(arg))
            stack.append((sub, arg))
    return out
