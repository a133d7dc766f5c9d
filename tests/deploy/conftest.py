"""The package as a user installs it: the wheel built from a copy of the sources, installed into a fresh venv in
a world-readable temporary directory outside the checkout (so 'nobody' can run it, and nothing of the checkout
leaks in through the working directory or an editable install)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_IGNORE = shutil.ignore_patterns(
    ".git", ".venv*", "*cache*", "__pycache__", "build", "dist", "*.egg-info", "node_modules", "bench"
)


@dataclass(frozen=True)
class Installed:
    root: Path  # world-readable temporary directory holding the venv and a scratch working directory
    venv: Path
    wheel: Path
    work: Path  # an empty directory outside the checkout to run commands from

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    @property
    def watchdog(self) -> str:
        return str(self.venv / "bin" / "watchdog")

    @property
    def package(self) -> Path:
        out = subprocess.run(
            [self.python, "-c", "import watchdog, os; print(os.path.dirname(watchdog.__file__))"],
            capture_output=True,
            text=True,
            cwd=self.work,
            env=self.env(),
            timeout=60,
            check=True,
        )
        return Path(out.stdout.strip())

    def env(self) -> dict[str, str]:
        drop = ("PYTHONPATH", "VIRTUAL_ENV", "NOTIFY_SOCKET", "WATCHDOG_USEC")
        return {k: v for k, v in os.environ.items() if k not in drop} | {"PYTHONUNBUFFERED": "1"}

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.watchdog, *args], capture_output=True, text=True, cwd=self.work, env=self.env(), timeout=timeout
        )


def _pip(python: str, *args: str, cwd: Path) -> None:
    proc = subprocess.run(
        [python, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=900,
    )
    if proc.returncode != 0:
        pytest.fail(f"pip {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


@pytest.fixture(scope="session")
def installed() -> Iterator[Installed]:
    root = Path(tempfile.mkdtemp(prefix="watchdog-wheel-"))
    try:
        root.chmod(0o755)
        src = root / "src"
        shutil.copytree(REPO, src, ignore=_IGNORE)
        # the same steps as the Dockerfile: build the wheel, install it (and its dependencies) into a venv
        _pip(sys.executable, "wheel", "--no-deps", "--quiet", "-w", str(root / "dist"), str(src), cwd=root)
        (wheel,) = (root / "dist").glob("mcp_watchdog-*.whl")
        venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        _pip(str(venv / "bin" / "python"), "install", "--quiet", str(wheel), cwd=root)
        shutil.rmtree(src)  # nothing may refer to the sources after the install
        work = root / "work"
        work.mkdir(mode=0o755)
        yield Installed(root=root, venv=venv, wheel=wheel, work=work)
    finally:
        shutil.rmtree(root, ignore_errors=True)
