"""YAML aliases in any file the watchdog loads (config, rule pack, probe): bounded, with file:line, fast."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from watchdog.cli import main
from watchdog.config import MAX_ALIAS_NODES, read_yaml

LAUGHS = """\
a: &a [x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
"""
"""9^8 (43 million) scalars once expanded, in 8 lines: minutes for anything that walks the tree."""


@pytest.mark.parametrize("kind", ["config", "rules", "probe"])
def test_exponential_aliases_are_refused_with_file_and_line_in_every_loaded_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    bomb = tmp_path / f"{kind}.yaml"
    if kind == "probe":
        bomb.write_text(f"name: p\nkind: mcp\nurl: http://127.0.0.1:9/mcp\n{LAUGHS}mcp:\n  arguments: {{x: *h}}\n")
        argv = ["probe", "-f", str(bomb)]
        line = 8  # the first *d (line 5 of LAUGHS, after 3 lines) crosses the bound: 8,289 nodes before it
    else:
        body = LAUGHS if kind == "rules" else f"targets:\n  - name: t\n    match: {{pid: 1}}\n{LAUGHS}"
        bomb.write_text(body)
        config = tmp_path / "watchdog.yaml"
        if kind == "rules":
            config.write_text(f"targets:\n  - name: t\n    match: {{pid: 1}}\nrules: [{bomb}]\n")
        argv = ["check", "-c", str(config if kind == "rules" else bomb)]
        line = 5 + (3 if kind == "config" else 0)
    t0 = time.monotonic()
    code = main(argv)
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{kind}.yaml:{line}: YAML aliases expand to more than {MAX_ALIAS_NODES} nodes (at alias *d)" in err, err
    assert took < 10, took


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("x: 1\ny: &a\n  - 1\n  - *a\n")
    with pytest.raises(Exception, match="alias \\*a refers to a node that contains it") as info:
        read_yaml(path)
    assert str(info.value).startswith(f"{path}:4: ")


def test_a_few_ordinary_aliases_still_work(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("base: &t {connect: 2s, call: 5s}\none: *t\ntwo: *t\n")
    node = read_yaml(path)
    assert [k.value for k, _ in node.value] == ["base", "one", "two"]
