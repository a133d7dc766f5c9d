"""Demo servers shared by the probe tests that leave them healthy (each started once for this package)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from examples.demo.harness import DemoServer


@pytest.fixture(scope="package")
def stateless_demo() -> Iterator[DemoServer]:
    """The demo as `make demo` runs it: 2 workers, stateless streamable HTTP (no session ids)."""
    with DemoServer(workers=2) as server:
        yield server


@pytest.fixture(scope="package")
def stateful_demo() -> Iterator[DemoServer]:
    """One worker with stateful sessions (session ids, DELETE); with one worker its SSE transport works too."""
    with DemoServer(workers=1, stateful=True) as server:
        yield server
