"""Run ``watchdog run`` as a real subprocess against a real demo server, with a webhook receiver in the test.

Tests wait for what the watchdog does by awaiting webhook deliveries (events), never by sleeping; "nothing
happened" tests watch for a stated window and then assert on ``/v1/status``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import yaml
from aiohttp import web

from examples.demo.harness import REPO, DemoServer, free_port


class Webhooks:
    """A webhook receiver on 127.0.0.1 that lets tests await a notification matching a predicate."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._changed = anyio.Event()
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        self._changed.set()
        self._changed = anyio.Event()
        return web.Response(status=204)

    async def wait_for(self, pred: Any, within: float) -> dict[str, Any]:
        """The first notification matching ``pred``, awaiting deliveries for at most ``within`` seconds."""
        with anyio.fail_after(within):
            while True:
                for item in self.received:
                    if pred(item):
                        return item
                await self._changed.wait()

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[Webhooks]:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/hook"
        try:
            yield self
        finally:
            await runner.cleanup()


def demo_config(demo: DemoServer, hooks: Webhooks | None, **overrides: Any) -> dict[str, Any]:
    """A watchdog.yaml for the demo: its gunicorn master by command line and port, tight test intervals."""
    target: dict[str, Any] = {
        "name": "demo",
        "match": {"pid": demo.master_pid},
        "workers": "children",
        "metrics_url": demo.metrics_url,
        "recycle": {"grace": "3s", "replacement_timeout": "30s"},
    }
    target.update(overrides.pop("target", {}))
    cfg: dict[str, Any] = {
        "targets": [target],
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "intervals": {"process": "1s", "metrics": "1s", "stacks": "2s", "probes": "2s"},
        "log": {"format": "json", "level": "info"},
    }
    if hooks is not None:
        cfg["notify"] = {"webhooks": [{"url": hooks.url, "retries": 1}]}
    cfg.update(overrides)
    return cfg


class Watchdog:
    """``python -m watchdog run`` in a subprocess; stopped by pid (SIGTERM, then SIGKILL) even on failure."""

    def __init__(self, cfg: dict[str, Any], *, extra_args: tuple[str, ...] = ()) -> None:
        self.cfg = cfg
        self.listen = cfg["server"]["listen"]
        self.dir = tempfile.mkdtemp(prefix="watchdog-test-")
        self.config_path = Path(self.dir) / "watchdog.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg))
        self.log_path = Path(self.dir) / "watchdog.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_args = extra_args

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    async def start(self) -> Watchdog:
        self.proc = await anyio.to_thread.run_sync(self._spawn)
        # ready when /healthz answers; polled, as the process offers nothing to await
        async with aiohttp.ClientSession() as http:
            with anyio.fail_after(30):
                while True:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"watchdog exited early:\n{self.log()}")
                    try:
                        async with http.get(f"{self.url}/healthz") as r:
                            if r.status == 200:
                                return self
                    except aiohttp.ClientError:
                        pass
                    await anyio.sleep(0.1)

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "watchdog", "run", "-c", str(self.config_path), *self.extra_args],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    async def wait_status(self, pred: Any, within: float) -> dict[str, Any]:
        """Poll ``/v1/status`` until ``pred(status)`` holds. Polling is right here: the watchdog is another
        process and its state has no push channel; the bound is ``within`` seconds.
        """
        with anyio.fail_after(within):
            while not pred(status := await self.status()):  # noqa: ASYNC110 - see docstring
                await anyio.sleep(0.2)
        return status

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    async def status(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/v1/status") as r:
            data: dict[str, Any] = await r.json()
            return data

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@asynccontextmanager
async def watching(cfg: dict[str, Any], *, extra_args: tuple[str, ...] = ()) -> AsyncIterator[Watchdog]:
    wd = Watchdog(cfg, extra_args=extra_args)
    try:
        yield await wd.start()
    except BaseException:
        print(f"--- watchdog log ---\n{wd.log()[-6000:]}")
        raise
    finally:
        wd.stop()
