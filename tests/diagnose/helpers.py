"""Start the small anyio target program in a chosen state and stop it by pid, whatever happens."""

from __future__ import annotations

import contextlib
import selectors
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

TARGET = Path(__file__).with_name("target.py")


@contextlib.contextmanager
def target(python: str, mode: str, *args: str, wait: float = 30.0) -> Iterator[int]:
    """Run ``target.py MODE`` under ``python``; yield its pid once it says it is ready; kill it by pid after."""
    proc = subprocess.Popen([python, str(TARGET), mode, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + wait
        line = b""
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                chunk = proc.stdout.read1(100)  # type: ignore[attr-defined]
                if not chunk:
                    break
                line += chunk
        sel.close()
        if not line.startswith(b"ready"):
            err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None and proc.stderr else ""
            raise RuntimeError(f"target {mode} under {python} did not start: {line!r} {err[-2000:]}")
        yield proc.pid
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
