"""Headless Chromium (Debian's ``chromium``) to look at a page as a person would: its DOM after its scripts ran,
or a screenshot. Used by ``make demo ARGS=--screenshots DIR`` and by the tests (``tests/browser.py``)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",  # the tests and CI run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def run_chromium(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Chromium with a fresh profile (removed after), headless; raises FileNotFoundError when not installed."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (Debian package `chromium`)")
    with tempfile.TemporaryDirectory(prefix="watchdog-chromium-") as profile:
        cmd = [exe, *FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def dump_dom(url: str, *, budget_ms: int = 2000) -> subprocess.CompletedProcess[str]:
    """The page's DOM on stdout, after ``budget_ms`` of virtual time for its scripts (keep that below a
    self-refreshing page's period, or the dump catches the page mid-reload, empty)."""
    return run_chromium(f"--virtual-time-budget={budget_ms}", "--dump-dom", url)


def screenshot(url: str, path: Path, *, size: tuple[int, int] = (1280, 1000)) -> subprocess.CompletedProcess[str]:
    """A PNG of the page at ``path``."""
    path.unlink(missing_ok=True)
    return run_chromium(f"--screenshot={path}", f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=1500", url)
