"""Safety end to end with real processes and real signals: pid reuse, crash loops, every worker failing.

The processes here are small Python programs this test starts (a CPU burner, a supervisor that respawns it),
so that every signal the watchdog sends lands only on processes the test owns.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from examples.demo.harness import free_port
from tests.sidecar.harness import Webhooks, watching

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

BURN_IGNORING_TERM = textwrap.dedent("""
    import signal, sys
    def on_term(signum, frame):
        print("TERM", flush=True)          # tell the test, and carry on burning
    signal.signal(signal.SIGTERM, on_term)
    print("ready", flush=True)
    while True:
        pass
""")

SUPERVISOR = textwrap.dedent("""
    import subprocess, sys, time
    # respawns a CPU-burning child whenever it dies: a target that crash-loops through every recycle
    while True:
        child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        child.wait()
        time.sleep(0.2)
""")

CPU_RULE = """
rules:
  - name: hot
    # the burner's demand, not the CPU it gets: on a shared 2-core machine it may get far less than half a core
    when: {all: ["loop_runnable_percent > 50"]}
    for: 1s
    actions: [recycle, notify]
    cooldown: 1s
"""


def kill_tree(proc: subprocess.Popen[Any]) -> None:
    try:
        procs = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.wait(10)


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    p = tmp_path / "rules.yaml"
    p.write_text(CPU_RULE)
    return p


def config(target: dict[str, Any], rules: Path, hooks: Webhooks, **budget: Any) -> dict[str, Any]:
    return {
        "targets": [target],
        "rules": [str(rules)],
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "intervals": {"process": "0.5s"},
        "budget": {"max_recycles": 3, "window": "10m", "cooldown": "0s", **budget},
        "stacks": {"enabled": False},
        "notify": {"webhooks": [{"url": hooks.url, "retries": 1}]},
        "log": {"format": "json"},
    }


def spawn_at_pid(pid: int, code: str, attempts: int = 50) -> subprocess.Popen[str] | None:
    """Start ``code`` on exactly ``pid`` by steering the kernel's next pid; None when it cannot be done."""
    for _ in range(attempts):
        try:
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(pid - 1))
        except OSError:
            return None
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        if proc.pid == pid:
            return proc
        proc.kill()
        proc.wait()
    return None


@pytest.fixture
def burner() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", BURN_IGNORING_TERM], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        kill_tree(proc)


@pytest.mark.skipif(not os.access("/proc/sys/kernel/ns_last_pid", os.W_OK), reason="needs root to force pid reuse")
async def test_a_new_process_on_a_reused_pid_is_never_signalled_from_stale_state(
    tmp_path: Path, rules_file: Path, burner: subprocess.Popen[str]
) -> None:
    pidfile = tmp_path / "app.pid"
    pidfile.write_text(f"{burner.pid}\n")
    target = {
        "name": "app",
        "match": {"pidfile": str(pidfile)},
        "workers": "self",
        "min_healthy_workers": 0,
        "recycle": {"grace": "3s", "replacement_timeout": "5s"},
    }
    innocent: subprocess.Popen[str] | None = None
    async with Webhooks().serve() as hooks, watching(config(target, rules_file, hooks)) as wd:
        try:
            # the watchdog judges the burner hot and sends SIGTERM, which it ignores
            assert burner.stdout is not None
            line = await anyio.to_thread.run_sync(burner.stdout.readline)
            assert line.strip() == "TERM"
            # during the grace period the burner dies and an innocent process takes its pid
            pid = burner.pid
            burner.kill()
            burner.wait()
            innocent = spawn_at_pid(pid, "import time; print('ready', flush=True); time.sleep(60)")
            if innocent is None:
                pytest.skip("could not steer the kernel onto the same pid (other processes forked meanwhile)")
            assert innocent.stdout is not None
            assert innocent.stdout.readline().strip() == "ready"
            note = await hooks.wait_for(lambda n: n["rule"] == "hot" and "recycle" in n["evidence"], within=20)
            steps = note["evidence"]["recycle"]["steps"]
            print(f"\npid reuse: steps {[(s['step'], s['detail']) for s in steps]}")
            assert steps[0] == {**steps[0], "step": "SIGTERM", "ok": True}
            # Whichever check saw the swap first (the exit wait, or the re-check before SIGKILL), the
            # identity comparison told the newcomer apart: no SIGKILL was sent to it.
            sent = [s for s in steps if s["step"] == "SIGKILL" and s["ok"]]
            assert sent == []
            assert any(s["step"] == "exited" or s["detail"] == f"not sent: pid {pid} is gone or reused" for s in steps)
            assert innocent.poll() is None, "the process that reused the pid was signalled"
            # and the watchdog watches it as a new worker, with none of the old one's rule state
            new_time = psutil.Process(pid).create_time()
            status = await wd.wait_status(
                lambda s: any(w["create_time"] == new_time for w in s["targets"][0]["workers"]), within=10
            )
            workers = status["targets"][0]["workers"]
            assert workers[0]["pid"] == pid
            assert [r for r in workers[0]["rules"] if r["state"] == "firing"] == []
        finally:
            if innocent is not None:
                kill_tree(innocent)


@pytest.fixture
def supervisor() -> Iterator[subprocess.Popen[bytes]]:
    sup = subprocess.Popen([sys.executable, "-c", SUPERVISOR])
    try:
        yield sup
    finally:
        kill_tree(sup)


async def test_a_crash_looping_target_exhausts_the_budget_and_alerts(
    rules_file: Path, supervisor: subprocess.Popen[bytes]
) -> None:
    sup = supervisor
    target = {
        "name": "loop",
        "match": {"pid": sup.pid},
        "workers": "children",
        "min_healthy_workers": 0,
        "recycle": {"grace": "2s", "replacement_timeout": "5s"},
    }
    async with Webhooks().serve() as hooks, watching(config(target, rules_file, hooks, max_recycles=2)) as wd:
        denied = await hooks.wait_for(lambda n: n["status"] == "budget_denied", within=60)
        outcomes = [n.get("evidence", {}).get("recycle", {}).get("outcome") for n in hooks.received]
        recycled = [o for o in outcomes if o == "recycled"]
        print(f"\ncrash loop: {len(recycled)} recycles, then: {denied['evidence']['budget']}")
        assert len(recycled) == 2
        assert denied["evidence"]["budget"].startswith("2 recycles in the last 600 s already (max 2)")
        status = await wd.status()
        assert status["targets"][0]["budget"]["recycles_in_window"] == 2
        # the budget holds: the child burning now is left alone
        child = psutil.Process(sup.pid).children()[0]
        await anyio.sleep(2.0)
        assert child.is_running()
