"""Probe definitions: the shipped examples load; every bad input is one clear error with file, line and key."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from watchdog.cli import main
from watchdog.errors import ConfigErrors
from watchdog.probes import ProbeSpec, load_probe

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "probes").glob("*.yaml"))


def test_the_shipped_probe_files_are_the_three_documented_ones() -> None:
    assert [p.name for p in SHIPPED] == ["demo-echo.yaml", "http-health.yaml", "tools-list.yaml"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_probe_files_load(path: Path) -> None:
    spec = load_probe(path)
    assert isinstance(spec, ProbeSpec)
    assert spec.name == path.stem
    assert spec.timeouts.total > spec.timeouts.end


def test_demo_echo_reads_as_documented() -> None:
    spec = load_probe(REPO / "probes" / "demo-echo.yaml")
    mcp = spec.mcp
    assert mcp is not None
    assert (mcp.transport, mcp.protocol, mcp.tool, mcp.list_tools, mcp.match) == (
        "streamable-http",
        "auto",
        "echo",
        True,
        "watchdog-probe",
    )
    assert dict(mcp.arguments) == {"text": "watchdog-probe"}
    assert spec.worker_pid is not None
    assert spec.worker_pid.json == "pid"


GOOD = """\
name: p
kind: mcp
url: http://127.0.0.1:8000/mcp
mcp: {tool: echo, arguments: {nested: {list: [1, 2.5, true, null, "${PROBE_TEST_VALUE:-dflt}"]}}}
"""


def test_arguments_are_any_json_object_with_env_substitution() -> None:
    spec_path = REPO / "tests" / "probes" / "_tmp_good.yaml"
    try:
        spec_path.write_text(GOOD)
        spec = load_probe(spec_path, env={"PROBE_TEST_VALUE": "from-env"})
    finally:
        spec_path.unlink(missing_ok=True)
    assert spec.mcp is not None
    assert spec.mcp.arguments == {"nested": {"list": [1, 2.5, True, None, "from-env"]}}


BAD = [
    ("name: p\nkind: mcp\nurl: http://h/mcp\n", "p.yaml:1: (top level): a 'kind: mcp' probe needs an 'mcp' section"),
    ("name: p\nkind: mcpp\nurl: http://h/\n", "p.yaml:2: kind: a string ('mcpp') is not one of 'mcp', 'http'"),
    ("name: p\nkind: http\nurl: ftp://h/\n", "p.yaml:3: url: expected an http:// or https:// URL"),
    (
        "name: p\nkind: mcp\nurl: http://h/\nmcp: {}\n",
        "p.yaml:4: mcp: name a 'tool' to call, or set 'list_tools: true'",
    ),
    (
        "name: p\nkind: mcp\nurl: http://h/\nmcp:\n  tool: echo\n  protocol: 2025-13-01\n",
        "p.yaml:6: mcp.protocol: a string ('2025-13-01') is not one of 'auto'",
    ),
    (
        "name: p\nkind: mcp\nurl: http://h/\nmcp: {tool: echo, transprot: sse}\n",
        "p.yaml:4: mcp: unknown key 'transprot' (did you mean 'transport'?)",
    ),
    (
        "name: p\nkind: mcp\nurl: http://h/\nmcp: {tool: echo, arguments: [1]}\n",
        "p.yaml:4: mcp.arguments: expected a mapping",
    ),
    (
        "name: p\nkind: mcp\nurl: http://h/\nmcp: {tool: echo}\nworker_pid: {json: pid, regex: 'p(\\d+)'}\n",
        "p.yaml:5: worker_pid: give exactly one of 'json', 'regex' or 'header'",
    ),
    (
        "name: p\nkind: mcp\nurl: http://h/\nmcp: {tool: echo}\nworker_pid: {regex: 'pid=\\d+'}\n",
        "p.yaml:5: worker_pid.regex: the pattern needs a group around the pid",
    ),
    (
        "name: p\nkind: http\nurl: http://h/\ntimeouts:\n  end: 5s\n  total: 5s\n",
        "p.yaml:6: timeouts.total: must be more than 'end' (5 s)",
    ),
    ("name: p\nkind: http\nurl: http://h/\ntimeouts: {call: 5}\n", "p.yaml:4: timeouts.call: duration '5' has no unit"),
    ("name: p\nkind: http\nurl: http://h/\nhttp: {status: 999}\n", "p.yaml:4: http.status: must be between 100"),
    ("name: p\nkind: http\nurl: http://h/\nmcp: {tool: x}\n", "p.yaml:4: mcp: the 'mcp' section is for 'kind: mcp'"),
    (
        "name: p\nkind: http\nurl: http://h/\nauth: {bearer_env: T}\nheaders: {'Bad Header': x}\n",
        "p.yaml:5: headers: not a valid HTTP header name: 'Bad Header'",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[b[1].split(": ", 2)[1] + str(i) for i, b in enumerate(BAD)])
def test_bad_probe_files_give_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as info:
        load_probe(path)
    first = str(info.value.errors[0]).replace(str(tmp_path) + "/", "")
    assert first.startswith(expected), first


def test_watchdog_check_validates_the_probe_files_a_config_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good.yaml").write_text((REPO / "probes" / "http-health.yaml").read_text())
    (tmp_path / "bad.yaml").write_text("name: bad\nkind: mcp\nurl: http://h/\nmcp:\n  tool: echo\n  list_tool: true\n")
    config = tmp_path / "watchdog.yaml"
    config.write_text(
        textwrap.dedent("""\
        targets:
          - name: demo
            match: {pid: 1}
            probes: [good.yaml, bad.yaml]
        """)
    )
    code = main(["check", "-c", str(config)])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.replace(str(tmp_path) + "/", "").splitlines() == [
        "bad.yaml:6: mcp: unknown key 'list_tool' (did you mean 'list_tools'?)",
        "watchdog.yaml: 1 error",
    ]
    config.write_text(config.read_text().replace(", bad.yaml", ""))
    assert main(["check", "-c", str(config)]) == 0


def test_docs_probes_md_is_generated_from_the_declarations() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "watchdog.probes"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert (REPO / "docs" / "probes.md").read_text() == out, "run: python -m watchdog.probes > docs/probes.md"


def test_an_unquoted_protocol_revision_is_text_not_a_date(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nkind: mcp\nurl: http://h/\nmcp: {tool: echo, protocol: 2025-06-18}\n")
    spec = load_probe(path)
    assert spec.mcp is not None
    assert spec.mcp.protocol == "2025-06-18"
