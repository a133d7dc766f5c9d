"""Shared fixtures: the anyio backend, the demo server (always stopped by pid), py-spy and CPU measurement."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
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


def _schedstat(pid: int) -> tuple[int, int]:
    """Nanoseconds that the main thread of ``pid`` has spent on a CPU and waiting for one (Linux schedstat)."""
    try:
        on_cpu, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    except FileNotFoundError:
        if not Path("/proc/self/schedstat").exists():
            pytest.skip("/proc/PID/schedstat is missing (a Linux kernel without CONFIG_SCHED_INFO)")
        raise
    return int(on_cpu), int(waiting)


async def runnable_percent_over(pid: int, seconds: float) -> float:
    """How much of the next ``seconds`` the main thread of ``pid`` was running or ready to run, in percent.

    A thread that never sleeps (a spinning or crunching event loop) reads ~100 however busy the machine is: time
    it waits for a core counts. Its CPU share (``cpu_percent_over``) reads less when other work competes for the
    cores, so a test that asks "is it hot?" asks this instead. An idle thread reads near 0 either way.
    """
    c0, q0 = _schedstat(pid)
    w0 = time.monotonic_ns()
    await anyio.sleep(seconds)
    c1, q1 = _schedstat(pid)
    return 100.0 * ((c1 - c0) + (q1 - q0)) / (time.monotonic_ns() - w0)


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


UNPRIVILEGED_USER = "nobody"


@dataclass(frozen=True)
class ReadableInstall:
    """mcp-watchdog installed from a wheel into a venv that any user can read and run.

    ``python`` runs ``-m watchdog`` (and finds ``py-spy`` beside it); ``cwd`` is a readable directory to start
    it in, so that neither the current directory nor ``PYTHONPATH`` reaches the clone; ``env()`` is the
    environment to pass (this one without ``PYTHONPATH``). ``as_user(cmd)`` prefixes ``setpriv`` to run ``cmd``
    as ``user`` with no capabilities; add ``setpriv`` options of your own (e.g. ambient capabilities) by
    building the prefix yourself from ``uid``/``gid``.
    """

    root: Path
    python: Path
    user: str
    uid: int
    gid: int

    @property
    def cwd(self) -> Path:
        return self.root

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        return {**env, **extra}

    def as_user(self, cmd: list[str]) -> list[str]:
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", *cmd]


def _runs_as(user: tuple[int, int], exe: str) -> bool:
    """Whether ``exe`` runs for ``user`` with its own standard library (not a stand-in found elsewhere)."""
    probe = ["-c", "import sys; print(sys.prefix)"]
    try:
        own = subprocess.run([exe, *probe], capture_output=True, text=True, timeout=30)
        theirs = subprocess.run(
            ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", exe, "-I", *probe],
            capture_output=True, text=True, timeout=30, cwd="/",
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return own.returncode == theirs.returncode == 0 and own.stdout == theirs.stdout


@pytest.fixture(scope="session")
def readable_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadableInstall]:
    """This checkout built as a wheel and installed, with its dependencies, into a temporary venv that the
    unprivileged user ``nobody`` can read, made once per test session.

    For tests that run the watchdog as another user: the clone itself may live where that user cannot read (a
    0700 home, a ``mktemp -d`` directory), and so may this venv's interpreter (pyenv under ``/root``). The venv
    is made from the first interpreter of this Python version that ``nobody`` can run with its own standard
    library: this venv's base, else ``/usr/local/bin`` or ``/usr/bin``. Skips, naming what is missing, without
    root (needed to switch users), without ``setpriv`` (util-linux), without such an interpreter, or when the
    install fails (no package index reachable).
    """
    import pwd

    if os.geteuid() != 0:
        pytest.skip(f"running as '{UNPRIVILEGED_USER}' needs root to switch users")
    if shutil.which("setpriv") is None:
        pytest.skip(f"setpriv (util-linux) is not installed: cannot run anything as '{UNPRIVILEGED_USER}'")
    ent = pwd.getpwnam(UNPRIVILEGED_USER)
    user = (ent.pw_uid, ent.pw_gid)
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    base = getattr(sys, "_base_executable", sys.executable)
    candidates = [base, f"/usr/local/bin/{version}", f"/usr/bin/{version}"]
    exe = next((c for c in candidates if os.path.exists(c) and _runs_as(user, c)), None)
    if exe is None:
        pytest.skip(f"no {version} that '{UNPRIVILEGED_USER}' can run with its own standard library "
                    f"(tried {', '.join(candidates)})")  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="watchdog-readable-"))
    try:
        root.chmod(0o755)
        src = tmp_path_factory.mktemp("readable-src")  # a copy, so that building leaves nothing in the clone
        for folder in ("watchdog", "rules", "probes"):  # the wheel carries rules/ and probes/ as package data
            shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(REPO / name, src / name)
        venv = root / "venv"
        steps = [
            [exe, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(src)],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                pytest.skip(f"could not make a readable install ({' '.join(step[:4])}...): {done.stderr[-500:]}")
        for path in [root, *root.rglob("*")]:  # whatever the umask was
            if not path.is_symlink():
                path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o444 | (0o111 if path.is_dir() else 0))
        yield ReadableInstall(root=root, python=venv / "bin" / "python", user=UNPRIVILEGED_USER, uid=user[0],
                              gid=user[1])  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
