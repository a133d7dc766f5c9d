"""Start and stop the demo server from tests and benchmarks, on free ports, stopping every process by pid.

    with DemoServer(workers=2) as demo:
        demo.mcp_url, demo.master_pid, demo.worker_pids()

``stop()`` runs even when the test fails: SIGTERM to the launcher (which stops gunicorn), then SIGKILL, by pid
and create time, to every process the demo ever showed us that is still alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DemoServer:
    """The demo MCP server under gunicorn, started on free ports and torn down completely."""

    def __init__(
        self,
        *,
        workers: int = 2,
        limit: int = 4,
        latency: float = 0.05,
        stateful: bool = False,
        python: str = sys.executable,
        start_timeout: float = 60.0,
        port: int | None = None,
        pidfile: str | None = None,
    ) -> None:
        self.workers = workers
        self.limit = limit
        self.latency = latency
        self.stateful = stateful
        self.python = python
        self.start_timeout = start_timeout
        self.port = port or free_port()
        self.pidfile = pidfile
        self.downstream_port = free_port()
        self.info: dict[str, Any] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._seen: dict[int, psutil.Process] = {}
        self._log = tempfile.NamedTemporaryFile(prefix="demo-server-", suffix=".log", delete=False)  # noqa: SIM115

    # -- addresses and pids -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def mcp_url(self) -> str:
        return str(self.info["mcp_url"])

    @property
    def sse_url(self) -> str:
        return str(self.info["sse_url"])

    @property
    def metrics_url(self) -> str:
        return str(self.info["metrics_url"])

    @property
    def downstream_url(self) -> str:
        return str(self.info["downstream_url"])

    @property
    def master_pid(self) -> int:
        return int(self.info["master_pid"])

    def worker_pids(self) -> list[int]:
        """The master's live worker processes now (they change when a worker is recycled)."""
        try:
            children = psutil.Process(self.master_pid).children()
        except psutil.NoSuchProcess:
            return []
        for c in children:
            self._seen.setdefault(c.pid, c)
        return sorted(c.pid for c in children)

    def log_text(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> DemoServer:
        cmd = [
            self.python,
            "-m",
            "examples.demo",
            "serve",
            "--json-ready",
            "--no-watch",
            "--port",
            str(self.port),
            "--downstream-port",
            str(self.downstream_port),
            "--workers",
            str(self.workers),
            "--limit",
            str(self.limit),
            "--latency",
            str(self.latency),
        ]
        if self.stateful:
            cmd.append("--stateful")
        if self.pidfile:
            cmd += ["--pidfile", self.pidfile]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=self._log, env=env, start_new_session=True
        )
        self._seen[self.proc.pid] = psutil.Process(self.proc.pid)
        try:
            self.info = self._read_ready()
            for pid in (self.master_pid, *self.info["worker_pids"]):
                self._seen.setdefault(pid, psutil.Process(pid))
        except BaseException:
            self.stop()
            raise
        return self

    def _read_ready(self) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + self.start_timeout
        buf = b""
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    break
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                for line in buf.splitlines():
                    if line.startswith(b"{"):
                        info: dict[str, Any] = json.loads(line)
                        if info.get("event") == "ready":
                            return info
        finally:
            sel.close()
        raise RuntimeError(f"demo server did not become ready; its log:\n{self.log_text()[-4000:]}")

    def stop(self) -> None:
        """Stop the launcher and everything under it; SIGKILL what is left, by pid and create time."""
        if self.proc is None:
            return
        if self.info:
            self.worker_pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
        for p in self._seen.values():
            try:
                if p.is_running():
                    p.kill()
                    p.wait(5)
            except (psutil.NoSuchProcess, psutil.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)
        self.proc = None

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
