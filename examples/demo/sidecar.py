"""Run ``watchdog run`` as a real subprocess, and receive its webhooks, for tests, benchmarks and ``make demo``.

Waiting for what the watchdog does means awaiting webhook deliveries (events), never sleeping; the few polls
of ``/v1/status`` are bounded and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import yaml
from aiohttp import web

from examples.demo.harness import REPO, free_port


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


class Watchdog:
    """``python -m watchdog run`` in a subprocess; stopped by pid (SIGTERM, then SIGKILL) even on failure.

    ``python`` is the interpreter to run (this one by default: an installed wheel's venv, say); ``user`` runs it as
    that user through setpriv, holding exactly ``ambient_caps`` (setpriv names such as ``sys_ptrace``) as ambient
    capabilities; ``prefix`` goes before the command as it is. Run any of these ways, it starts in its own readable
    directory with no ``PYTHONPATH``, so that it runs the ``watchdog`` installed for ``python``, not this checkout.
    """

    def __init__(
        self,
        cfg: dict[str, Any],
        *,
        extra_args: tuple[str, ...] = (),
        user: str | None = None,
        python: str | None = None,
        ambient_caps: tuple[str, ...] = (),
        prefix: Sequence[str] = (),
    ) -> None:
        self.cfg = cfg
        self.listen = cfg["server"]["listen"]
        self.dir = tempfile.mkdtemp(prefix="watchdog-test-")
        self.config_path = Path(self.dir) / "watchdog.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg))
        self.log_path = Path(self.dir) / "watchdog.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_args = extra_args
        self.user = user
        self.python = python or sys.executable
        self.ambient_caps = ambient_caps
        self.prefix = list(prefix)
        if self.prefix or user is not None:
            os.chmod(self.dir, 0o755)  # noqa: S103 - the unprivileged watchdog reads its config (no secrets) here

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
        cmd = [*self.prefix, self.python, "-m", "watchdog", "run", "-c", str(self.config_path), *self.extra_args]
        if self.user is not None:
            import pwd

            ent = pwd.getpwnam(self.user)
            caps = ",".join(f"+{c}" for c in self.ambient_caps)
            with_caps = [f"--inh-caps={caps}", f"--ambient-caps={caps}"] if caps else []
            cmd = ["setpriv", f"--reuid={ent.pw_uid}", f"--regid={ent.pw_gid}", "--clear-groups", *with_caps, *cmd]
        # another Python (an installed wheel) or another user runs outside the checkout: `-m watchdog` must not
        # find the checkout's package through the working directory or PYTHONPATH
        foreign = self.python != sys.executable or bool(self.prefix) or self.user is not None
        env = {k: v for k, v in os.environ.items() if not (foreign and k in ("PYTHONPATH", "VIRTUAL_ENV"))}
        with self.log_path.open("wb") as log:
            return subprocess.Popen(
                cmd,
                cwd=self.dir if foreign else REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**env, "PYTHONUNBUFFERED": "1"},
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
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode


@asynccontextmanager
async def watching(
    cfg: dict[str, Any],
    *,
    extra_args: tuple[str, ...] = (),
    user: str | None = None,
    python: str | None = None,
    ambient_caps: tuple[str, ...] = (),
    prefix: Sequence[str] = (),
) -> AsyncIterator[Watchdog]:
    wd = Watchdog(cfg, extra_args=extra_args, user=user, python=python, ambient_caps=ambient_caps, prefix=prefix)
    try:
        yield await wd.start()
    except BaseException:
        print(f"--- watchdog log ---\n{wd.log()[-6000:]}")
        raise
    finally:
        wd.stop()
