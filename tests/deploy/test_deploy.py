"""The shipped unit file and Kubernetes manifest are valid: systemd-analyze, kubernetes-validate, watchdog check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from watchdog.cli import main

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "mcp-watchdog@.service"
MANIFEST = REPO / "deploy" / "kubernetes" / "mcp-server-with-watchdog.yaml"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    # verify checks that ExecStart exists: point it at this environment's watchdog
    watchdog = Path(sys.executable).with_name("watchdog")
    unit = tmp_path / "mcp-watchdog@demo.service"
    unit.write_text(UNIT.read_text().replace("/opt/mcp-watchdog/bin/watchdog", str(watchdog)))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # warnings (unknown keys) count as failures too


def test_kubernetes_manifest_validates_strictly() -> None:
    validate = shutil.which("kubernetes-validate") or str(Path(sys.executable).with_name("kubernetes-validate"))
    if not Path(validate).exists():
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    proc = subprocess.run([validate, "--strict", str(MANIFEST)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("passed") == 3


def test_the_configmaps_watchdog_yaml_passes_watchdog_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = list(yaml.safe_load_all(MANIFEST.read_text()))
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    config = tmp_path / "watchdog.yaml"
    config.write_text(cm["data"]["watchdog.yaml"])
    monkeypatch.setenv("WATCHDOG_TOKEN", "t")
    monkeypatch.setenv("WATCHDOG_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    assert main(["check", "-c", str(config)]) == 0, capsys.readouterr().err
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    spec = deploy["spec"]["template"]["spec"]
    assert spec["shareProcessNamespace"] is True
    (sidecar,) = [c for c in spec["containers"] if c["name"] == "watchdog"]
    assert "SYS_PTRACE" in sidecar["securityContext"]["capabilities"]["add"]
