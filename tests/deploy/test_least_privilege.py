"""The systemd unit's privilege model, exercised for real: the installed watchdog runs as 'nobody' holding exactly
CAP_SYS_PTRACE, CAP_KILL and CAP_DAC_READ_SEARCH as ambient capabilities (what the unit gives it; setpriv does
what systemd would), and it still diagnoses and recycles a worker that belongs to root."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import anyio
import psutil
import pytest

from examples.demo import inject
from examples.demo.harness import DemoServer, free_port
from tests.deploy.conftest import Installed
from tests.sidecar.harness import Webhooks, demo_config, watching

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(600)]

CAPS = ("sys_ptrace", "kill", "dac_read_search")
BITS = {"dac_read_search": 2, "kill": 5, "sys_ptrace": 19}  # linux/capability.h
UNIT = Path(__file__).resolve().parents[2] / "systemd" / "mcp-watchdog@.service"
ENTRYPOINT = Path(__file__).resolve().parents[2] / "deploy" / "docker" / "entrypoint.sh"

RULES = """\
rules:
  - name: spin-seen-in-stacks
    description: py-spy's samples show the worker spinning in anyio's cancel delivery
    severity: critical
    when:
      all:
        - stack_spin_confidence >= 2
    for: 2s
    actions: [diagnose, recycle, notify]
    grace: 3s
"""


def _as_nobody(*cmd: str) -> list[str]:
    caps = ",".join(f"+{c}" for c in CAPS)
    ent = pwd.getpwnam("nobody")
    return ["setpriv", f"--reuid={ent.pw_uid}", f"--regid={ent.pw_gid}", "--clear-groups",
            f"--inh-caps={caps}", f"--ambient-caps={caps}", *cmd]  # fmt: skip


def _caps(pid: int) -> dict[str, int]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: int(v, 16) for k, v in (line.split(":\t", 1) for line in lines if line.startswith("Cap"))}


def test_the_unit_grants_the_same_three_capabilities() -> None:
    text = UNIT.read_text()
    wanted = " ".join(f"CAP_{c.upper()}" for c in CAPS)
    assert f"AmbientCapabilities={wanted}" in text
    assert f"CapabilityBoundingSet={wanted}" in text
    assert "User=mcp-watchdog" in text


async def test_as_nobody_with_three_capabilities_it_diagnoses_and_recycles_a_root_worker(
    installed: Installed,
) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run the watchdog as 'nobody' with capabilities")
    probe = installed.package / "_bundled" / "probes" / "demo-echo.yaml"  # the wheel's copy; nobody reads it
    with DemoServer(workers=2) as demo:
        workers = demo.worker_pids()
        assert {psutil.Process(p).uids().real for p in workers} == {0}

        # by hand, as an engineer would: `watchdog diagnose` as nobody on a root worker
        out = await anyio.run_process(
            _as_nobody(installed.watchdog, "diagnose", str(workers[0]), "--duration", "1", "--json"),
            cwd=installed.work, env=installed.env(), check=False,
        )  # fmt: skip
        assert out.returncode in (0, 1), out.stderr.decode()  # 3 would be: could not inspect
        (report,) = json.loads(out.stdout)["processes"]
        assert report["error"] is None
        assert report["stacks"]["samples"] > 0
        assert report["facts"]["fds"]["end"] > 0, report["facts"]  # /proc/PID/fd (mode 0500, root): DAC_READ_SEARCH

        # the default pack's spin rule also wants cpu_percent > 80, which a worker on a crowded CI machine may
        # not reach; this rule acts on what only CAP_SYS_PTRACE can see: the stacks
        rules = installed.work / "stack-spin.yaml"
        rules.write_text(RULES)
        cfg = demo_config(demo, None, target={"probes": [str(probe)], "probe_url": demo.mcp_url}, rules=[str(rules)])
        async with (
            Webhooks().serve() as hooks,
            watching(
                {**cfg, "notify": {"webhooks": [{"url": hooks.url, "retries": 1}]}},
                user="nobody",
                python=installed.python,
                ambient_caps=CAPS,
            ) as wd,
        ):
            assert wd.proc is not None
            caps = _caps(wd.proc.pid)
            mask = sum(1 << b for b in BITS.values())
            assert caps["CapAmb"] == mask, hex(caps["CapAmb"])
            assert caps["CapEff"] == mask, hex(caps["CapEff"])
            assert psutil.Process(wd.proc.pid).uids().effective == pwd.getpwnam("nobody").pw_uid

            pid = await inject.spin(demo.mcp_url)
            note = await hooks.wait_for(lambda n: n["worker"] == pid and "recycle" in n["evidence"], within=120)
            ev = note["evidence"]
            print(
                f"\nas nobody + {','.join(CAPS)}: worker {pid} (root) -> {note['rule']}, "
                f"verdict {ev['stack_verdict']['kind']}, recycle {ev['recycle']['outcome']}, "
                f"steps {[s['step'] for s in ev['recycle']['steps']]}"
            )
            assert ev["stack_verdict"]["kind"] == "spin"  # py-spy read a root process: CAP_SYS_PTRACE
            assert ev["recycle"]["outcome"] == "recycled"  # signals reached a root process: CAP_KILL
            assert pid not in demo.worker_pids()


def test_the_images_entrypoint_drops_to_the_user_with_exactly_three_capabilities(installed: Installed) -> None:
    """deploy/docker/entrypoint.sh, run as root as the container runtime would, with the installed wheel."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux), as the image's entrypoint does")
    listen = f"127.0.0.1:{free_port()}"
    config = installed.work / "entrypoint.yaml"
    config.write_text(
        f"targets:\n  - name: me\n    match: {{pid: 1}}\n    workers: self\nserver: {{listen: '{listen}'}}\n"
    )
    nobody = pwd.getpwnam("nobody")
    env = installed.env() | {
        "PATH": f"{installed.venv / 'bin'}:{os.environ['PATH']}",
        "WATCHDOG_UID": str(nobody.pw_uid),
        "WATCHDOG_GID": str(nobody.pw_gid),
    }
    proc = subprocess.Popen(
        ["sh", str(ENTRYPOINT), "run", "-c", str(config)],
        cwd=installed.work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:  # the process offers nothing to await: poll /healthz, bounded
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                with urllib.request.urlopen(f"http://{listen}/healthz", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "the watchdog never answered /healthz"
                time.sleep(0.2)
        p = psutil.Process(proc.pid)  # sh and setpriv exec'd: the same pid is the watchdog now
        assert "watchdog" in " ".join(p.cmdline())
        assert p.uids().real == p.uids().effective == nobody.pw_uid
        caps = _caps(proc.pid)
        mask = sum(1 << b for b in BITS.values())
        assert (caps["CapAmb"], caps["CapEff"], caps["CapPrm"]) == (mask, mask, mask), {
            k: hex(v) for k, v in caps.items()
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
