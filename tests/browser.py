"""Headless Chromium (Debian's ``chromium``) for tests that look at a page as a person would: the DOM after its
scripts ran, and a screenshot kept as a test artifact under ``.artifacts/`` (git-ignored)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO

ARTIFACTS = REPO / ".artifacts"
_FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root in CI; the sandbox refuses root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str:
    """The Chromium executable; skip, naming the package, when it is not installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("chromium is not installed (Debian package `chromium`; .ci/run installs it)")


def _run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    exe = chromium()
    with tempfile.TemporaryDirectory(prefix="watchdog-chromium-") as profile:
        cmd = [exe, *_FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def dump_dom(url: str, *, budget_ms: int = 2000) -> str:
    """The page's DOM, serialised after its scripts ran (``budget_ms`` of virtual time for them; keep it below a
    self-refreshing page's period, or the dump catches the page mid-reload, empty)."""
    out = _run(f"--virtual-time-budget={budget_ms}", "--dump-dom", url)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "<body" in out.stdout, f"Chromium returned no page for {url}: {out.stderr[-2000:]}"
    return out.stdout


def screenshot(url: str, name: str, *, size: tuple[int, int] = (1280, 1000)) -> Path:
    """A PNG of the page, kept as ``.artifacts/NAME``; returns its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.unlink(missing_ok=True)
    out = _run(f"--screenshot={path}", f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=3000", url)
    assert out.returncode == 0, out.stderr[-2000:]
    assert path.exists(), out.stderr[-2000:]
    return path
