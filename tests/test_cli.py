from __future__ import annotations

import subprocess
import sys

import pytest

from watchdog import __version__
from watchdog.cli import COMMANDS, build_parser, main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"watchdog {__version__}"


def test_help_lists_only_the_commands_that_exist(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for module in COMMANDS:
        assert module.rsplit(".", 1)[1] in out
    sub = build_parser()._subparsers
    assert sub is not None
    listed = sub._group_actions[0].choices
    assert isinstance(listed, dict)
    assert sorted(listed) == sorted(m.rsplit(".", 1)[1] for m in COMMANDS)


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["check"], ["check", "-c"], ["--bogus"]])
def test_usage_errors_print_usage_and_exit_2(argv: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "watchdog", *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: watchdog")
    assert "Traceback" not in proc.stderr
