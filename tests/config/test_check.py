"""``watchdog check`` on every class of bad input: one clear message naming file, line and key; exit 2."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from watchdog.cli import main
from watchdog.config import Config, load_config
from watchdog.errors import ConfigErrors

GOOD = """\
targets:
  - name: demo
    match:
      cmdline: 'gunicorn .*examples\\.demo'
    metrics_url: http://127.0.0.1:8000/metrics
    memory_limit: 512Mi
budget:
  window: 10m
  cooldown: 90s
server:
  token: ${WATCHDOG_TEST_TOKEN}
notify:
  webhooks:
    - url: http://127.0.0.1:9999/hook
      headers: {Authorization: "Bearer ${WATCHDOG_TEST_TOKEN:-none}"}
"""


def check(
    tmp_path: Path,
    text: str | None,
    capsys: pytest.CaptureFixture[str],
    name: str = "watchdog.yaml",
) -> tuple[int, str, str]:
    path = tmp_path / name
    if text is not None:
        path.write_text(textwrap.dedent(text))
    code = main(["check", "-c", str(path)])
    out, err = capsys.readouterr()
    return code, out, err.replace(str(tmp_path) + "/", "")


def test_a_good_config_passes_and_reads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_TEST_TOKEN", "s3cret")
    code, out, err = check(tmp_path, GOOD, capsys)
    assert (code, err) == (0, "")
    assert "OK (1 target, " in out
    cfg = load_config(tmp_path / "watchdog.yaml")
    assert isinstance(cfg, Config)
    assert cfg.targets[0].memory_limit == 512 * 2**20
    assert cfg.budget.window == 600.0
    assert cfg.budget.cooldown == 90.0
    assert cfg.server.token == "s3cret"
    assert cfg.notify.webhooks[0].headers["Authorization"] == "Bearer s3cret"
    assert cfg.intervals.stacks == 5.0  # defaults fill what the file leaves out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "targets: [\n  - name: x\n",
            "watchdog.yaml:2: YAML syntax error: expected the node content",
            id="yaml-syntax",
        ),
        pytest.param(
            "targets:\n  - name: demo\n    match: {pid: abc}\n",
            "watchdog.yaml:3: targets[0].match.pid: expected an integer, got a string ('abc')",
            id="wrong-type",
        ),
        pytest.param(
            "targets:\n  - name: demo\n    match:\n      cmdlin: x\n",
            "watchdog.yaml:4: targets[0].match: unknown key 'cmdlin' (did you mean 'cmdline'?)",
            id="unknown-key",
        ),
        pytest.param(
            "targets:\n  - match: {pid: 1}\n",
            "watchdog.yaml:2: targets[0]: missing required key 'name'",
            id="missing-key",
        ),
        pytest.param(
            "targets:\n  - name: demo\n    match: {pid: 1}\nbudget:\n  window: 10\n",
            "watchdog.yaml:5: budget.window: duration '10' has no unit; write '10s'",
            id="bad-duration",
        ),
        pytest.param(
            "targets:\n  - name: demo\n    match: {pid: 1}\n    memory_limit: 5 gigs\n",
            "watchdog.yaml:4: targets[0].memory_limit: invalid size '5 gigs'",
            id="bad-size",
        ),
        pytest.param("", "watchdog.yaml:1: the file is empty", id="empty-file"),
        pytest.param("# only a comment\n", "watchdog.yaml:1: the file is empty", id="comment-only"),
        pytest.param("- a\n- b\n", "watchdog.yaml:1: expected a mapping", id="not-a-mapping"),
        pytest.param(
            "targets:\n  - name: demo\n    match: {pid: 1}\n    name: again\n",
            "watchdog.yaml:4: duplicate key 'name' (first on line 2)",
            id="duplicate-key",
        ),
        pytest.param(
            "targets:\n  - name: demo\n    match: {pid: 1, cmdline: x}\n",
            "watchdog.yaml:3: targets[0].match: give exactly one of",
            id="exclusive-keys",
        ),
        pytest.param(
            "targets:\n  - name: demo\n    match: {pid: 1}\nserver: {token: '${WATCHDOG_UNSET_VAR}'}\n",
            "watchdog.yaml:4: server.token: environment variable WATCHDOG_UNSET_VAR is not set",
            id="unset-env",
        ),
        pytest.param(
            "targets:\n  - name: demo\n    match: {pid: 1}\n    workers: kids\n",
            "watchdog.yaml:4: targets[0].workers: a string ('kids') is not one of 'auto', 'self', 'children'",
            id="bad-choice",
        ),
        pytest.param(
            "targets:\n  - name: demo\n    match: {cmdline: '(unclosed'}\n",
            "watchdog.yaml:3: targets[0].match.cmdline: invalid regular expression",
            id="bad-regex",
        ),
        pytest.param("targets: []\n", "watchdog.yaml:1: targets: name at least one target", id="no-targets"),
        pytest.param(
            "targets:\n  - name: demo\n    match: {pid: 1}\nserver:\n  listen: 0.0.0.0:9464\n",
            "watchdog.yaml:5: server.token: listen '0.0.0.0:9464' is not a loopback address",
            id="open-listener-without-token",
        ),
        pytest.param(
            "targets:\n  - name: demo\n    match: {pid: 1}\nserver: {listen: 'pod.local:9464', token: ''}\n",
            "watchdog.yaml:4: server.token: listen 'pod.local:9464' is not a loopback address",
            id="host-name-listener-with-empty-token",
        ),
    ],
)
def test_bad_input_gives_one_clear_message_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    code, out, err = check(tmp_path, text, capsys)
    assert code == 2
    assert out == ""
    first = err.splitlines()[0]
    assert first.startswith(expected), err
    assert "Traceback" not in err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = check(tmp_path, None, capsys, name="nope.yaml")
    assert code == 2
    assert err.strip() == "nope.yaml: no such file"


def test_a_directory_instead_of_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "conf.d").mkdir()
    code, _, err = check(tmp_path, None, capsys, name="conf.d")
    assert code == 2
    assert err.strip() == "conf.d: is a directory; expected a YAML file"


def test_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "w.yaml").write_bytes(b"targets:\n  - name: caf\xe9\n")
    code, _, err = check(tmp_path, None, capsys, name="w.yaml")
    assert code == 2
    assert err.strip() == "w.yaml:2: not UTF-8 text"


def test_every_independent_error_is_reported_once(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        "targets:\n  - name: a\n    match: {pid: 0}\n  - name: b\n    match: {pidd: 2}\nbudget: {cooldown: x}\n"
    )
    with pytest.raises(ConfigErrors) as info:
        load_config(path)
    assert [(e.line, e.key) for e in info.value] == [
        (3, "targets[0].match.pid"),
        (5, "targets[1].match"),
        (6, "budget.cooldown"),
    ]


def test_named_files_must_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = check(tmp_path, "targets:\n  - name: a\n    match: {pid: 1}\n    probes: [probes/x.yaml]\n", capsys)
    assert code == 2
    assert "targets[0].probes: no such probe file" in err
    assert "probes/x.yaml" in err


def test_the_console_script_prints_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("targets: {")
    proc = subprocess.run(
        [sys.executable, "-m", "watchdog", "check", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{path}:1: YAML syntax error")
    assert "Traceback" not in proc.stderr
