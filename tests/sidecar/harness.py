"""Configs for running the watchdog against the demo server in tests (the runner lives in examples.demo.sidecar)."""

from __future__ import annotations

from typing import Any

from examples.demo.harness import DemoServer, free_port
from examples.demo.sidecar import Watchdog, Webhooks, watching

__all__ = ["Watchdog", "Webhooks", "demo_config", "watching"]


def demo_config(demo: DemoServer, hooks: Webhooks | None, **overrides: Any) -> dict[str, Any]:
    """A watchdog.yaml for the demo: its gunicorn master by command line and port, tight test intervals."""
    target: dict[str, Any] = {
        "name": "demo",
        "match": {"pid": demo.master_pid},
        "workers": "children",
        "metrics_url": demo.metrics_url,
        "recycle": {"grace": "3s", "replacement_timeout": "30s"},
    }
    target.update(overrides.pop("target", {}))
    cfg: dict[str, Any] = {
        "targets": [target],
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "intervals": {"process": "1s", "metrics": "1s", "stacks": "2s", "probes": "2s"},
        "log": {"format": "json", "level": "info"},
    }
    if hooks is not None:
        cfg["notify"] = {"webhooks": [{"url": hooks.url, "retries": 1}]}
    cfg.update(overrides)
    return cfg
