"""Fixtures of the guard tests."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def keep_sigterm() -> Iterator[None]:
    """Whatever a test does (a Drain installs its handler at the first request), SIGTERM gets its handler back."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)
