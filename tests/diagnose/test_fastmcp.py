"""The culprit named through FastMCP too: its ``stubborn`` tool, abandoned by an official SDK client, spins the
server; diagnose must name that tool's frame (and its name, when the locals give it). Skips without fastmcp."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.demo import inject
from tests.conftest import py_spy_path
from tests.diagnose.test_targets import assert_valid, show
from watchdog.diagnose import diagnose

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
SERVER = Path(__file__).with_name("fastmcp_target.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], wait: float = 30.0) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"the FastMCP server exited: {err[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the FastMCP server did not listen on {port} within {wait:g} s")


@pytest.fixture
def fastmcp_server() -> Iterator[str]:
    if importlib.util.find_spec("fastmcp") is None:
        pytest.skip("fastmcp is not installed (pip install fastmcp)")
    py_spy_path()
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SERVER), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_listening(port, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


async def test_a_fastmcp_tool_that_swallows_cancellation_is_named(fastmcp_server: str) -> None:
    pid = await inject.spin(fastmcp_server)
    report = await diagnose(pid)
    show(report)
    assert_valid(report)
    (p,) = report.processes
    assert p.state is not None
    assert p.state.kind == "spin", p.state
    c = p.state.culprit
    assert c is not None
    assert (c.function, c.application) == ("stubborn", True)
    assert c.path.endswith("tests/diagnose/fastmcp_target.py")
    assert c.share >= 0.05
    assert c.task == "stubborn"  # the tool's name, from a string local in the frames beneath it
    print(f"fastmcp culprit: {c.summary()}")
