"""``watchdog diagnose`` from the command line: every failure mode gives its message and exit code, and the
JSON output follows the schema. Each test runs the real command in a subprocess against a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples.demo.harness import DemoServer
from tests.conftest import REPO, ReadableInstall, py_spy_path, python_with_anyio
from tests.diagnose.helpers import target
from watchdog.diagnose import schema

pytestmark = pytest.mark.slow


def watchdog(
    *args: str, install: ReadableInstall | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``watchdog diagnose ARGS`` from this checkout, or from ``install`` as its unprivileged user."""
    if install is not None:
        cmd = install.as_user([str(install.python), "-m", "watchdog", "diagnose", *args])
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=install.cwd, env=install.env())
    cmd = [sys.executable, "-m", "watchdog", "diagnose", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def test_json_output_follows_the_schema_and_exit_code_says_a_problem_was_found() -> None:
    import jsonschema

    py_spy_path()
    with target(python_with_anyio("3.11"), "block") as pid:
        out = watchdog(str(pid), "--json", "--duration", "1.5")
    assert out.returncode == 1, out.stderr
    data = json.loads(out.stdout)
    jsonschema.validate(data, schema())
    (p,) = data["processes"]
    assert p["pid"] == pid
    assert p["role"] == "process"
    assert p["verdicts"][0]["kind"] == "blocked"
    assert data["exit_code"] == 1


def test_the_terminal_report_for_an_idle_process_exits_0() -> None:
    py_spy_path()
    with target(python_with_anyio("3.11"), "idle") as pid:
        out = watchdog(str(pid), "--duration", "1")
    assert out.returncode == 0, out.stderr
    assert f"process {pid}: IDLE" in out.stdout
    assert "nothing wrong found" in out.stdout


def test_no_such_pid_exits_3() -> None:
    out = watchdog("4194000")  # above any pid_max this machine hands out
    assert out.returncode == 3
    assert "no such process: 4194000" in out.stderr


def test_a_process_that_is_not_python_exits_3() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        out = watchdog(str(proc.pid))
    finally:
        proc.kill()
        proc.wait()
    assert out.returncode == 3
    assert f"process {proc.pid} is not a Python process" in out.stderr
    assert "sleep" in out.stderr


def test_a_process_that_exits_mid_sampling_exits_3() -> None:
    py_spy_path()
    with target(python_with_anyio("3.11"), "exit", "1.0") as pid:
        out = watchdog(str(pid), "--duration", "4")
    assert out.returncode == 3
    assert f"process {pid} exited during sampling" in out.stderr


def test_missing_py_spy_exits_3_and_says_how_to_install_it(tmp_path: Path) -> None:
    with target(python_with_anyio("3.11"), "idle") as pid:
        out = watchdog(str(pid), "--py-spy", str(tmp_path / "py-spy"))
    assert out.returncode == 3
    assert "py-spy is not installed" in out.stderr
    assert "pip install py-spy" in out.stderr


def test_missing_py_spy_is_found_missing_next_to_python_and_on_path(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    from watchdog.errors import PySpyMissing
    from watchdog.signals.stacks import find_py_spy

    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PySpyMissing) as err:
        find_py_spy(pid=1)
    assert "pip install py-spy" in str(err.value)


def test_no_ptrace_permission_exits_3_and_says_what_is_needed(readable_install: ReadableInstall) -> None:
    py_spy_path()
    with target(python_with_anyio("3.11"), "idle") as pid:
        out = watchdog(str(pid), "--duration", "1", install=readable_install)
    assert out.returncode == 3, out.stdout + out.stderr
    assert f"permission denied inspecting process {pid}" in out.stderr
    for needed in ("root", "CAP_SYS_PTRACE", "shareProcessNamespace", "SYS_PTRACE"):
        assert needed in out.stderr


def test_an_unsupported_python_exits_3_naming_its_version() -> None:
    import glob

    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/2.7*/bin/python2.7")))
    if not found:
        pytest.skip("Python 2.7 (an interpreter diagnose does not support) is not installed under pyenv")
    proc = subprocess.Popen([found[-1], "-c", "import time; time.sleep(30)"])
    try:
        out = watchdog(str(proc.pid), "--duration", "1")
    finally:
        proc.kill()
        proc.wait()
    assert out.returncode == 3
    assert "runs Python 2.7" in out.stderr
    assert "CPython 3.8 to 3.13" in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [(["abc"], "not a process id"), (["0"], "not a process id"), (["1", "--duration", "0"], "--duration must be"),
     (["1", "--rate", "x"], "--rate must be a number"), ([], "required")],
)  # fmt: skip
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    out = watchdog(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "usage:" in out.stderr


def test_flamegraph_of_a_spinning_process_opens_in_chromium_with_the_spin_frames(tmp_path: Path) -> None:
    import re

    from tests.browser import chromium, dump_dom, screenshot

    py_spy_path()
    chromium()
    html_file = tmp_path / "spin.html"
    with target(python_with_anyio("3.11"), "spin") as pid:
        out = watchdog(str(pid), "--duration", "2", "--flamegraph", str(html_file))
    assert out.returncode == 1, out.stderr
    assert f"flame graph: {html_file}" in out.stderr
    # the search in the URL runs the page's own script: the spin's frames are found and their share shown
    dom = dump_dom(html_file.as_uri() + "#q=_deliver_cancellation")
    assert f"process {pid}" in dom
    assert "CancelScope._deliver_cancellation" in dom
    m = re.search(r"matched graph 0: ([\d.]+) %", dom)
    assert m is not None, dom[-3000:]
    assert float(m.group(1)) > 0
    assert 'class="f k-spin hit"' in dom
    print(f"\nspin flame graph: {m.group(1)} % of samples under _deliver_cancellation; "
          f"screenshot {screenshot(html_file.as_uri(), 'diagnose-spin-flamegraph.png')}")  # fmt: skip


def test_flamegraph_into_a_missing_directory_is_a_usage_error_before_sampling() -> None:
    out = watchdog("1", "--flamegraph", "/nonexistent/dir/x.html", timeout=20)
    assert out.returncode == 2
    assert "cannot write /nonexistent/dir/x.html" in out.stderr


def test_flamegraph_of_a_gunicorn_master_has_one_graph_per_process(demo: DemoServer, tmp_path: Path) -> None:
    import re

    py_spy_path()
    html_file = tmp_path / "demo.html"
    out = watchdog(str(demo.master_pid), "--duration", "1", "--flamegraph", str(html_file))
    assert out.returncode in (0, 1), out.stderr
    headings = re.findall(r"<h2>(\w+) (\d+) \(gunicorn\)</h2>", html_file.read_text())
    assert headings[0] == ("master", str(demo.master_pid))
    assert sorted(int(pid) for role, pid in headings[1:] if role == "worker") == sorted(demo.worker_pids())
    assert html_file.read_text().count('<svg id="g') == 1 + len(demo.worker_pids())
