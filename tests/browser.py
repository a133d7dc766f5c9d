"""Headless Chromium for tests that look at a page as a person would (``examples/demo/browser.py`` runs it): the
DOM after its scripts ran, and screenshots kept as test artifacts under ``.artifacts/`` (git-ignored)."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.demo import browser
from tests.conftest import REPO

ARTIFACTS = REPO / ".artifacts"


def chromium() -> str:
    """The Chromium executable; skip, naming the package, when it is not installed."""
    found = browser.find_chromium()
    if found is None:
        pytest.skip("chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    return found


def dump_dom(url: str) -> str:
    """The page's DOM, serialised after its scripts ran."""
    chromium()
    out = browser.dump_dom(url)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "<body" in out.stdout, f"Chromium returned no page for {url}: {out.stderr[-2000:]}"
    return out.stdout


def screenshot(url: str, name: str, *, size: tuple[int, int] = (1280, 1000)) -> Path:
    """A PNG of the page, kept as ``.artifacts/NAME``; returns its path."""
    chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    out = browser.screenshot(url, path, size=size)
    assert out.returncode == 0, out.stderr[-2000:]
    assert path.exists(), out.stderr[-2000:]
    return path
