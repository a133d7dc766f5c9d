"""Shared fixtures: the anyio backend, the demo server (always stopped by pid), py-spy and CPU measurement."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest

from examples.demo.harness import DemoServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def demo() -> Iterator[DemoServer]:
    """A fresh demo server (2 workers) per test: faults leave workers spinning or bloated."""
    with DemoServer(workers=2) as server:
        yield server


@pytest.fixture
def demo_one_worker() -> Iterator[DemoServer]:
    """A fresh demo server with a single worker, so that 'the same worker' is certain."""
    with DemoServer(workers=1) as server:
        yield server


def py_spy_path() -> str:
    """py-spy next to this interpreter (the venv's), else on PATH; skip, naming it, when absent."""
    local = Path(sys.executable).with_name("py-spy")
    found = str(local) if local.exists() else shutil.which("py-spy")
    if not found:
        pytest.skip("py-spy is not installed (pip install py-spy)")
    return found


async def cpu_percent_over(proc: psutil.Process, seconds: float) -> float:
    """CPU used by ``proc`` over the next ``seconds``, in percent of one core, from its cpu_times."""
    t0 = proc.cpu_times()
    w0 = time.monotonic()
    await anyio.sleep(seconds)
    t1 = proc.cpu_times()
    return 100.0 * ((t1.user + t1.system) - (t0.user + t0.system)) / (time.monotonic() - w0)


REPO = Path(__file__).resolve().parents[1]


def python_with_anyio(version: str) -> str:
    """The interpreter of ``.venv-py<version>`` (made by ``make test`` when that Python exists; it has anyio),
    or this test run's own interpreter when it is that version; skip, naming the interpreter, when neither."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable
    exe = REPO / f".venv-py{version}" / "bin" / "python"
    if not exe.exists():
        pytest.skip(f"Python {version} with anyio not found ({exe.relative_to(REPO)}; `make test` creates it "
                    f"when python{version} or pyenv's {version} is installed)")  # fmt: skip
    return str(exe)
