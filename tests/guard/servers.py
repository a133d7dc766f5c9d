"""Start the guarded example server under a real uvicorn on a free port; stop it by pid (test helper)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import anyio
from prometheus_client.parser import text_string_to_metric_families

from examples.demo.harness import REPO, free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Uvicorn:
    """``uvicorn examples.guarded_server:app`` in a child process of its own session."""

    def __init__(self, app: str = "examples.guarded_server:app", env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix="uvicorn-", suffix=".log", delete=False)  # noqa: SIM115
        cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*cmd, "--log-level", "warning"],
            cwd=REPO,
            env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def wait_ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                with contextlib.closing(__import__("socket").create_connection(("127.0.0.1", self.port), 0.5)):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"uvicorn did not listen within {within} s:\n{self.log_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)


@contextlib.contextmanager
def uvicorn(env: dict[str, str] | None = None) -> Iterator[Uvicorn]:
    server = Uvicorn(env=env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


async def scrape(url: str) -> Samples:
    """Every sample of a /metrics page: (name, sorted labels) -> value."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s, s.get(url) as r:
        text = await r.text()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, tuple(sorted(labels.items()))))


async def poll_metric(url: str, metric: str, want: float, /, within: float = 15.0, **labels: str) -> float | None:
    """Scrape until ``metric{labels}`` reaches ``want`` (or ``within`` runs out); returns the last value seen."""
    seen = None
    with anyio.move_on_after(within):
        while seen != want:
            seen = value(await scrape(url), metric, **labels)
            if seen != want:
                await anyio.sleep(0.1)
    return seen
