"""1,100 slow connections to the watchdog's own server (each sends half a request line and waits).

Before: no connection cap and no header timeout; they took all 1,024 descriptors for 40 s, ``/healthz`` was
unreachable and every process round failed on ``/proc`` ("Too many open files"): the watchdog was blind.
"""

from __future__ import annotations

import contextlib
import re
import resource
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.hostile.harness import base_config, guarded, log_rule, metrics_text, sleeper

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(180)]

CLIENTS = 1100
HOLD = 12.0
"""Longer than the server's request timeout (5 s): the slow clients outlive it at least twice."""
WATCHDOG_NOFILE = 1024
"""The default soft limit the watchdog had when it was starved (systemd's default without LimitNOFILE)."""


def slowloris(host: str, port: int, clients: int, hold: float, opened: list[int], stop: threading.Event) -> None:
    """Keep ``clients`` connections open that never finish their request; reopen those the server closes."""
    socks: list[socket.socket] = []

    def open_one() -> None:
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect((host, port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line that ends the headers
            s.setblocking(False)
            socks.append(s)
            opened[0] += 1
        except OSError:
            s.close()

    try:
        deadline = time.monotonic() + hold
        while time.monotonic() < deadline and not stop.is_set():
            for s in list(socks):  # reap what the server closed
                try:
                    if s.recv(1) == b"":
                        socks.remove(s)
                        s.close()
                except BlockingIOError:
                    pass
                except OSError:
                    socks.remove(s)
                    s.close()
            while len(socks) < clients and time.monotonic() < deadline:
                open_one()
            time.sleep(0.05)
    finally:
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()


async def test_slow_clients_cannot_starve_healthz_or_the_process_rounds(tmp_path: Path) -> None:
    import anyio

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = CLIENTS + 512
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"the test needs {need} descriptors; RLIMIT_NOFILE hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    with sleeper() as worker:
        cfg = base_config(worker.pid, log_rule(tmp_path))
        async with guarded(cfg) as (wd, watch):
            assert wd.proc is not None
            psutil.Process(wd.proc.pid).rlimit(psutil.RLIMIT_NOFILE, (WATCHDOG_NOFILE, WATCHDOG_NOFILE))
            host, _, port = wd.listen.rpartition(":")
            opened, stop = [0], threading.Event()
            before = (await wd.status())["uptime_seconds"]
            try:
                await anyio.to_thread.run_sync(slowloris, host, int(port), CLIENTS, HOLD, opened, stop)
            finally:
                stop.set()
            status = await wd.status()
            metrics = await metrics_text(wd)
            log = wd.log()
    print(f"slow connections opened (including reopened): {opened[0]}")
    closed = {
        m[0]: float(m[1])
        for m in re.findall(r'watchdog_http_connections_closed_total\{reason="(\w+)"\} (\S+)', metrics)
    }
    print(f"closed by the watchdog: {closed}")
    assert opened[0] >= CLIENTS
    assert watch.max_fds < WATCHDOG_NOFILE, f"the watchdog reached {watch.max_fds} descriptors"
    assert closed.get("evicted", 0) + closed.get("header_timeout", 0) > 0  # the defence is visible
    # the process rounds kept working: fresh process signals, no round failure, no fd exhaustion
    assert status["uptime_seconds"] > before + HOLD - 1
    assert status["targets"][0]["workers"][0]["signals"].get("rss_bytes")
    assert "Too many open files" not in log
    assert 'watchdog_sampling_errors_total{kind="internal",source="agent"}' not in metrics
