"""What every hostile-input test checks while the input runs: the watchdog (a real ``watchdog run`` process on
127.0.0.1) keeps answering ``/healthz`` on fresh connections, its RSS stays under the systemd unit's
``MemoryMax`` (256 MB), and no secret reaches anything it writes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import psutil

from examples.demo.harness import free_port
from examples.demo.sidecar import Watchdog, Webhooks, watching

__all__ = ["MEMORY_MAX", "Watch", "Watchdog", "Webhooks", "base_config", "guarded", "no_secret_in", "sleeper"]

MEMORY_MAX = 256 * 2**20
"""The unit's ``MemoryMax=256M`` (systemd/mcp-watchdog.service)."""

LOG_RULE = """
rules:
  - name: alive
    when: {all: ["rss_bytes > 0"]}
    for: 0s
    actions: [log]
"""


@dataclass
class Watch:
    """What the sentinel saw: /healthz answers and failures, the watchdog's peak RSS, the slowest answer."""

    ok: int = 0
    failures: list[str] = field(default_factory=list)
    max_rss: int = 0
    max_fds: int = 0
    slowest: float = 0.0

    def summary(self) -> str:
        return (
            f"/healthz ok {self.ok}, failed {len(self.failures)}, slowest {self.slowest:.2f} s; "
            f"watchdog peak RSS {self.max_rss / 2**20:.0f} MiB, peak fds {self.max_fds}"
        )


def base_config(pid: int, rules: Path, **target: Any) -> dict[str, Any]:
    return {
        "targets": [{"name": "app", "match": {"pid": pid}, "workers": "self", **target}],
        "rules": [str(rules)],
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "intervals": {"process": "0.5s", "metrics": "2s"},
        "stacks": {"enabled": False},
        "log": {"format": "json"},
    }


def log_rule(tmp_path: Path) -> Path:
    p = tmp_path / "rules.yaml"
    p.write_text(LOG_RULE)
    return p


@contextmanager
def sleeper(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real, idle Python process (the watched worker), with ``args`` on its command line; killed by pid."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", *args])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


async def _sentinel(wd: Watchdog, watch: Watch, period: float) -> None:
    assert wd.proc is not None
    proc = psutil.Process(wd.proc.pid)
    timeout = aiohttp.ClientTimeout(total=5)
    while True:
        start = time.monotonic()
        try:
            # a fresh connection each time: that is what a starved server would refuse
            async with aiohttp.ClientSession(timeout=timeout) as http, http.get(f"{wd.url}/healthz") as r:
                body = await r.text()
                if r.status == 200:
                    watch.ok += 1
                else:
                    watch.failures.append(f"HTTP {r.status}: {body}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            watch.failures.append(f"{type(exc).__name__}: {exc}")
        watch.slowest = max(watch.slowest, time.monotonic() - start)
        try:
            watch.max_rss = max(watch.max_rss, proc.memory_info().rss)
            watch.max_fds = max(watch.max_fds, proc.num_fds())
        except psutil.NoSuchProcess:
            watch.failures.append("the watchdog process is gone")
            return
        await anyio.sleep(period)


@asynccontextmanager
async def guarded(cfg: dict[str, Any], *, period: float = 0.25) -> AsyncIterator[tuple[Watchdog, Watch]]:
    """Run the watchdog with ``cfg``; poll /healthz and RSS meanwhile; assert both held when the block ends."""
    watch = Watch()
    async with watching(cfg) as wd, anyio.create_task_group() as tg:
        tg.start_soon(_sentinel, wd, watch, period)
        yield wd, watch
        with anyio.move_on_after(10):  # a quick test still sees /healthz answer a few times after its input
            while watch.ok < 3 and not watch.failures:  # noqa: ASYNC110 - counted by the sentinel task
                await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    print(f"\n{watch.summary()}")
    assert watch.failures == [], f"/healthz failed {len(watch.failures)} time(s): {watch.failures[:5]}"
    assert watch.ok >= 3, f"/healthz was polled only {watch.ok} times"
    assert watch.max_rss < MEMORY_MAX, f"watchdog RSS peaked at {watch.max_rss / 2**20:.0f} MiB"


def no_secret_in(secrets: Iterable[str], **channels: str) -> None:
    """Assert no secret appears in any channel's text (named, so a failure says where it leaked)."""
    for name, text in channels.items():
        for s in secrets:
            assert s not in text, f"secret {s[:4]}… leaked through {name}"


async def metrics_text(wd: Watchdog) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{wd.url}/metrics") as r:
        return await r.text()


def status_text(status: dict[str, Any]) -> str:
    return json.dumps(status)


__all__ += ["log_rule", "metrics_text", "status_text", "watching"]
