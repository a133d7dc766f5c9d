"""gunicorn settings for the demo server (the launcher passes bind, workers and pidfile on the command line)."""

from __future__ import annotations

from typing import Any

worker_class = "uvicorn_worker.UvicornWorker"
# A spinning uvicorn worker ignores SIGTERM (DESIGN.md): keep the wait before SIGKILL short in a lab.
graceful_timeout = 5
# A worker whose loop is blocked stops sending heartbeats; gunicorn kills it after this many seconds.
timeout = 60
proc_name = "mcp-watchdog-demo"


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the shared metrics directory."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
