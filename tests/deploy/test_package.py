"""The installed wheel runs on its own: rule pack and probes inside it, the three commands a user runs first work
from a directory that is not the checkout."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from examples.demo.harness import free_port
from tests.deploy.conftest import REPO, Installed
from tests.diagnose.helpers import target

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_wheel_has_every_package_under_watchdog(installed: Installed) -> None:
    # [tool.setuptools] packages is a list (it maps rules/ and probes/): a new subpackage must be added there
    on_disk = {p.parent.relative_to(REPO / "watchdog") for p in (REPO / "watchdog").rglob("__init__.py")}
    missing = sorted(str(d) for d in on_disk if not (installed.package / d / "__init__.py").exists())
    assert missing == [], f"add to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_the_wheel_carries_rules_and_probes_equal_to_the_top_level_files(installed: Installed) -> None:
    bundled = installed.package / "_bundled"
    for folder in ("rules", "probes"):
        shipped = sorted(p.name for p in (REPO / folder).glob("*.yaml"))
        packaged = sorted(p.name for p in (bundled / folder).glob("*.yaml"))
        assert packaged == shipped, folder
        for name in shipped:
            assert (bundled / folder / name).read_bytes() == (REPO / folder / name).read_bytes(), f"{folder}/{name}"
    out = subprocess.run(
        [installed.python, "-c", "from watchdog.config import BUNDLED_RULES; print(BUNDLED_RULES)"],
        capture_output=True, text=True, cwd=installed.work, env=installed.env(), timeout=60, check=True,
    )  # fmt: skip
    assert Path(out.stdout.strip()) == bundled / "rules" / "default.yaml"


def _config(installed: Installed, pid: int, listen: str) -> Path:
    config = installed.work / "watchdog.yaml"  # names no rule pack: the bundled default applies
    config.write_text(
        f"targets:\n  - name: app\n    match: {{pid: {pid}}}\n    workers: self\n"
        f"server: {{listen: '{listen}'}}\nintervals: {{process: 1s}}\n"
    )
    return config


def test_check_diagnose_and_run_from_another_directory(installed: Installed) -> None:
    default_rules = [r["name"] for r in yaml.safe_load((REPO / "rules" / "default.yaml").read_text())["rules"]]
    # a live Python process with anyio (the installed venv has it, as a dependency)
    with target(installed.python, "idle") as pid:
        listen = f"127.0.0.1:{free_port()}"
        config = _config(installed, pid, listen)

        check = installed.run("check", "-c", str(config))
        assert check.returncode == 0, check.stderr
        print(f"\nwatchdog check (installed, cwd {installed.work}): {check.stdout.strip()}")

        diagnose = installed.run("diagnose", str(pid), "--duration", "1", "--json")
        assert diagnose.returncode in (0, 1), diagnose.stderr
        report = json.loads(diagnose.stdout)
        (proc,) = report["processes"]
        assert proc["pid"] == pid
        assert proc["verdicts"][0]["kind"] == "idle", proc["verdicts"]

        log = (installed.root / "run.log").open("wb")
        run = subprocess.Popen(
            [installed.watchdog, "run", "-c", str(config)],
            cwd=installed.work, env=installed.env(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            status = _wait_status(run, listen, lambda s: len(s["targets"][0]["workers"]) == 1)
            assert status["rules"] == default_rules
            assert status["targets"][0]["workers"][0]["pid"] == pid
            run.send_signal(signal.SIGTERM)
            assert run.wait(timeout=30) == 0
        finally:
            if run.poll() is None:
                run.kill()
                run.wait(timeout=10)
            log.close()
        text = (installed.root / "run.log").read_text()
        assert "no such file" not in text
        assert "Traceback" not in text


def _wait_status(
    proc: subprocess.Popen[bytes], listen: str, pred: Callable[[dict[str, Any]], bool], within: float = 60
) -> dict[str, Any]:
    """Poll /v1/status (another process: no push channel) until ``pred`` holds, at most ``within`` seconds."""
    deadline = time.monotonic() + within
    last: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, "watchdog run exited early"
        try:
            with urllib.request.urlopen(f"http://{listen}/v1/status", timeout=5) as r:
                last = json.load(r)
                if last is not None and pred(last):
                    return last
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"status never matched within {within} s; last: {last}")
