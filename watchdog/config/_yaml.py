"""Reading YAML into nodes that remember their line, so every later error can name it.

PyYAML's composer gives a node tree with marks; we stop there and never construct arbitrary Python objects
(the safe constructor is used on scalars only). Duplicate keys, which PyYAML would silently resolve to the
last one, are reported here.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from watchdog.errors import ConfigError

__all__ = ["MappingNode", "Node", "ScalarNode", "SequenceNode", "line_of", "read_yaml", "scalar_value"]

_constructor = yaml.SafeLoader("")
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def line_of(node: Node) -> int:
    """The 1-based line a node starts on."""
    return int(node.start_mark.line) + 1


def scalar_value(node: ScalarNode) -> object:
    """The plain Python value of a scalar node, as YAML 1.1's safe schema types it (str, int, float, bool, None).

    Timestamps stay text: nothing the watchdog reads is a date, and an unquoted protocol revision such as
    ``2025-06-18`` (or an impossible one, ``2025-13-01``, which PyYAML cannot even construct) means its text.
    """
    if node.tag == _TIMESTAMP:
        return str(node.value)
    return _constructor.construct_object(node, deep=True)


def read_yaml(path: str | os.PathLike[str], *, display: str | None = None) -> Node:
    """Read and compose one YAML document, raising ``ConfigError`` for every way a file can be unusable.

    ``display`` is the name errors show (defaults to the path as given).
    """
    name = display or os.fspath(path)
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError("no such file", file=name) from None
    except IsADirectoryError:
        raise ConfigError("is a directory; expected a YAML file", file=name) from None
    except PermissionError:
        raise ConfigError("permission denied reading the file", file=name) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=name) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("not UTF-8 text", file=name, line=line) from None
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at: int | None = int(mark.line) + 1 if mark is not None else None
        column = f" (column {int(mark.column) + 1})" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"YAML syntax error: {problem}{column}", file=name, line=at) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=name) from None
    if not nodes or nodes[0] is None:
        raise ConfigError("the file is empty; expected a YAML mapping", file=name, line=1)
    if len(nodes) > 1:
        raise ConfigError(
            "more than one YAML document ('---'); put everything in one", file=name, line=line_of(nodes[1])
        )
    _check_duplicate_keys(nodes[0], name)
    return nodes[0]


def _check_duplicate_keys(node: Node, name: str) -> None:
    stack: list[Node] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, MappingNode):
            seen: dict[object, int] = {}
            for k, v in n.value:
                if isinstance(k, ScalarNode):
                    key = k.value
                    if key in seen:
                        raise ConfigError(
                            f"duplicate key {key!r} (first on line {seen[key]})", file=name, line=line_of(k)
                        )
                    seen[key] = line_of(k)
                stack.append(v)
        elif isinstance(n, SequenceNode):
            stack.extend(n.value)
