"""MCP servers nobody here wrote, as real processes on 127.0.0.1: the TypeScript reference server and FastMCP.

``Peer`` starts a command on a free port, waits until the port accepts connections, and stops it by pid (SIGTERM,
then SIGKILL to it and every child it was seen with). The npm tools live in ``.npm-tools/`` (``make npm-tools``
installs node >= 22, ``@modelcontextprotocol/server-everything`` and ``@modelcontextprotocol/conformance``);
where they are missing, ``npm_bin`` skips the test naming the missing part.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil
import pytest

from examples.demo.harness import REPO, free_port

NPM_TOOLS = REPO / ".npm-tools"
HERE = Path(__file__).resolve().parent
FASTMCP_APP = "tests.probes.peers.fastmcp_app:app"


def npm_bin(name: str) -> str:
    """``.npm-tools/node_modules/.bin/<name>``, or skip naming it (``make npm-tools`` installs it; npm was
    unreachable if it did not)."""
    path = NPM_TOOLS / "node_modules" / ".bin" / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in .npm-tools/ (`make npm-tools` installs it; was npm unreachable?)")
    return str(path)


def node_env() -> dict[str, str]:
    """The environment for node tools: the node >= 22 of ``.npm-tools`` first on PATH."""
    npm_bin("node")
    return {**os.environ, "PATH": f"{NPM_TOOLS / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}"}


def fastmcp_available() -> None:
    """Skip, naming it, where FastMCP 4.x is not installed (it is in the [test] extra)."""
    try:
        import fastmcp
    except ImportError:
        pytest.skip("fastmcp is not installed (pip install 'fastmcp>=4,<5'; it is in the [test] extra)")
    if not fastmcp.__version__.startswith("4."):
        pytest.skip(f"fastmcp {fastmcp.__version__} is installed; these tests are for FastMCP 4.x")


def _temp_file(prefix: str, suffix: str = "") -> Path:
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix)
    os.close(fd)
    return Path(path)


@dataclass
class Peer:
    """One server process on ``port``; ``url`` is its MCP endpoint. ``events`` is a file the FastMCP peer
    appends "<what> <pid>" lines to."""

    name: str
    cmd: list[str]
    path: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    start_timeout: float = 60.0
    ready_lines: int = 0
    """How many "ready" lines the server writes to ``events`` when every process of it is up (FastMCP)."""
    events: Path = field(default_factory=lambda: _temp_file("peer-events-"))
    proc: subprocess.Popen[bytes] | None = None
    _seen: dict[int, psutil.Process] = field(default_factory=dict)
    _log: Path = field(default_factory=lambda: _temp_file("peer-", ".log"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def argv(self) -> list[str]:
        return [a.replace("{port}", str(self.port)) for a in self.cmd]

    def start(self) -> Peer:
        env = {**os.environ, **self.env, "PORT": str(self.port), "PEER_EVENTS": str(self.events)}
        with self._log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._seen[self.proc.pid] = psutil.Process(self.proc.pid)
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise
        self.children()
        return self

    def _wait_listening(self) -> None:
        """Poll the port until it accepts a connection and every worker said "ready" (gunicorn's master accepts
        connections before its workers have imported the app): the processes offer nothing to await."""
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); its log:\n{self.log()[-3000:]}")
            ready = sum(line.startswith("ready ") for line in self.event_lines()) >= self.ready_lines
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                if ready:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen on {self.port} in {self.start_timeout:g} s:\n{self.log()}")

    def children(self) -> list[int]:
        """The server's child processes now (gunicorn's workers), remembered for the final SIGKILL."""
        assert self.proc is not None
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for k in kids:
            self._seen.setdefault(k.pid, k)
        return sorted(k.pid for k in kids)

    def log(self) -> str:
        return self._log.read_text(errors="replace")

    def event_lines(self) -> list[str]:
        return self.events.read_text().splitlines()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        for p in self._seen.values():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
                if p.is_running():
                    p.kill()
                    p.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        self.proc = None
        self._log.unlink(missing_ok=True)
        self.events.unlink(missing_ok=True)

    def __enter__(self) -> Peer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def everything(transport: str) -> Peer:
    """``@modelcontextprotocol/server-everything`` over ``streamableHttp`` or ``sse``, kept on 127.0.0.1.

    It takes its port from ``PORT`` and has no host option (``app.listen(PORT)`` binds every interface), so
    ``loopback.cjs``, preloaded, makes a listen without a host bind 127.0.0.1.
    """
    node = npm_bin("node")
    npm_bin("mcp-server-everything")
    script = NPM_TOOLS / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
    path = "/mcp" if transport == "streamableHttp" else "/sse"
    cmd = [node, "--require", str(HERE / "loopback.cjs"), str(script), transport]
    return Peer(f"server-everything ({transport})", cmd, path)


@dataclass(frozen=True)
class FastMcpSetup:
    """One FastMCP set-up: transport, sessions, answer form, event store, and how many gunicorn workers."""

    name: str
    sse: bool = False
    stateless: bool = False
    json: bool = False
    event_store: bool = False
    workers: int = 0  # 0: one uvicorn process; N: gunicorn with N uvicorn workers

    def peer(self) -> Peer:
        fastmcp_available()
        env = {
            "PEER_TRANSPORT": "sse" if self.sse else "http",
            "PEER_STATELESS": "1" if self.stateless else "",
            "PEER_JSON": "1" if self.json else "",
            "PEER_EVENT_STORE": "1" if self.event_store else "",
        }
        if self.workers:
            gunicorn = str(Path(sys.executable).with_name("gunicorn"))
            cmd = [gunicorn, "-w", str(self.workers), "-k", "uvicorn_worker.UvicornWorker"]
            cmd += ["-b", "127.0.0.1:{port}", "--graceful-timeout", "3", "--log-level", "warning", FASTMCP_APP]
        else:
            cmd = [sys.executable, "-m", "uvicorn", FASTMCP_APP, "--host", "127.0.0.1", "--port", "{port}"]
            cmd += ["--log-level", "warning"]
        path = "/sse" if self.sse else "/mcp"
        return Peer(f"FastMCP {self.name}", cmd, path, env=env, ready_lines=max(1, self.workers))


FASTMCP_SETUPS = [
    FastMcpSetup("stateful"),
    FastMcpSetup("stateful+event-store", event_store=True),
    FastMcpSetup("stateless", stateless=True),
    FastMcpSetup("stateless+json", stateless=True, json=True),
    FastMcpSetup("stateful+json", json=True),
    FastMcpSetup("sse", sse=True),
    FastMcpSetup("gunicorn-2-workers stateless", stateless=True, workers=2),
    FastMcpSetup("gunicorn-2-workers stateless+json", stateless=True, json=True, workers=2),
]
"""Every set-up the peer matrix covers. Stateful sessions and SSE under several workers are left out: a
session lives in one worker's memory, and the probe's requests may reach another (the same holds for the
official SDK; run such servers with one worker or sticky routing)."""


@contextlib.contextmanager
def running(peer: Peer) -> Iterator[Peer]:
    with peer:
        yield peer
