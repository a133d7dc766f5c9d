"""``watchdog probe`` as an operator runs it: output, --json, --count, and the exit codes 0, 1 and 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from examples.demo.harness import DemoServer, free_port

REPO = Path(__file__).resolve().parents[2]
ECHO = str(REPO / "probes" / "demo-echo.yaml")


def watchdog(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "watchdog", *argv], capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_a_passing_probe_prints_each_phase_and_exits_0(stateless_demo: DemoServer) -> None:
    proc = watchdog("probe", "-f", ECHO, "--url", stateless_demo.mcp_url)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"demo-echo: {stateless_demo.mcp_url} (streamable-http)"
    assert [line.split()[0] for line in lines[1:5]] == ["server/discover", "tools/list", "tools/call", "session"]
    assert lines[-1].startswith("PASS  ")
    assert "protocol 2026-07-28, worker " in lines[-1]


@pytest.mark.slow
def test_json_lines_with_count(stateless_demo: DemoServer) -> None:
    proc = watchdog("probe", "-f", ECHO, "--url", stateless_demo.mcp_url, "--json", "--count", "3", "--interval", "0")
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == 3
    assert all(r["ok"] and r["worker_pid"] in stateless_demo.worker_pids() for r in results)
    assert [p["name"] for p in results[0]["phases"]] == ["server/discover", "tools/list", "tools/call", "session end"]


@pytest.mark.slow
def test_count_prints_a_line_each_and_a_summary(stateless_demo: DemoServer) -> None:
    proc = watchdog("probe", "-f", ECHO, "--url", stateless_demo.mcp_url, "--count", "2", "--interval", "10ms")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line[:8] for line in lines[:2]] == ["#1 PASS ", "#2 PASS "]
    assert lines[2].startswith("2 probes: 2 passed, 0 failed; passing latency median ")


def test_a_failing_probe_exits_1_with_the_phase_and_reason() -> None:
    port = free_port()
    proc = watchdog("probe", "-f", ECHO, "--url", f"http://127.0.0.1:{port}/mcp")
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1].startswith(f"FAIL  server/discover: connection refused (127.0.0.1:{port})")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["probe"], "the following arguments are required: -f/--file"),
        (["probe", "-f", ECHO, "--count", "0"], "argument --count: must be between 1 and 100000, got 0"),
        (["probe", "-f", ECHO, "--interval", "soon"], "argument --interval: invalid duration 'soon'"),
        (["probe", "-f", ECHO, "--url", "127.0.0.1:8000"], "--url: expected an http:// or https:// URL"),
    ],
)
def test_usage_errors_print_usage_and_exit_2(argv: list[str], message: str) -> None:
    proc = watchdog(*argv)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: watchdog probe")
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_bad_probe_file_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nkind: mcp\nurl: http://127.0.0.1:1/mcp\nmcp:\n  tool: echo\n  protocol: 2099-01-01\n")
    proc = watchdog("probe", "-f", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{bad}:6: mcp.protocol: a string ('2099-01-01') is not one of 'auto'")
    proc = watchdog("probe", "-f", str(tmp_path / "missing.yaml"))
    assert (proc.returncode, proc.stderr.strip()) == (2, f"{tmp_path / 'missing.yaml'}: no such file")
