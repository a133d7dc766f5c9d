"""Reading YAML into nodes that remember their line, so every later error can name it.

PyYAML's composer gives a node tree with marks; we stop there and never construct arbitrary Python objects
(the safe constructor is used on scalars only). Duplicate keys, which PyYAML would silently resolve to the
last one, are reported here.

Aliases are allowed but bounded: a node tree shares an aliased node rather than copying it, yet everything
that walks the tree later (duplicate keys, the schema, a probe's ``arguments``) expands it, so a few lines of
nested aliases ("billion laughs") would cost exponential time. ``_BoundedLoader`` counts, while composing,
how many nodes the aliases would expand to and stops at ``MAX_ALIAS_NODES`` with the alias's line; an alias to
a node that contains it (a cycle, which PyYAML composes) is refused too.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from yaml.events import AliasEvent
from yaml.nodes import CollectionNode, MappingNode, Node, ScalarNode, SequenceNode

from watchdog.errors import ConfigError

__all__ = ["MappingNode", "Node", "ScalarNode", "SequenceNode", "line_of", "read_yaml", "scalar_value"]

_constructor = yaml.SafeLoader("")
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
MAX_ALIAS_NODES = 10_000
"""How many nodes all aliases of one file may expand to together (a real config uses a handful)."""


class _AliasBomb(Exception):
    def __init__(self, why: str, line: int) -> None:
        super().__init__(why)
        self.why = why
        self.line = line


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, composing only, with alias expansion counted and bounded (see the module's docstring)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._expanded = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            target = self.anchors.get(event.anchor)
            if target is not None:
                line = int(event.start_mark.line) + 1
                if target.end_mark is None:  # still being composed: the alias sits inside its own anchor
                    raise _AliasBomb(f"alias *{event.anchor} refers to a node that contains it", line)
                self._expanded += self._size(target)
                if self._expanded > MAX_ALIAS_NODES:
                    raise _AliasBomb(
                        f"YAML aliases expand to more than {MAX_ALIAS_NODES} nodes (at alias *{event.anchor}); "
                        "write the values out or use fewer nested aliases",
                        line,
                    )
        return super().compose_node(parent, index)

    def _size(self, node: Node) -> int:
        """How many nodes ``node`` stands for once every alias inside it is expanded (memoized, iterative)."""
        stack: list[tuple[Node, bool]] = [(node, False)]
        while stack:
            n, done = stack.pop()
            if id(n) in self._sizes:
                continue
            children = _children(n)
            if done:
                self._sizes[id(n)] = min(1 + sum(self._sizes[id(c)] for c in children), MAX_ALIAS_NODES + 1)
            else:
                stack.append((n, True))
                stack.extend((c, False) for c in children if id(c) not in self._sizes)
        return self._sizes[id(node)]


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, CollectionNode):
        return list(node.value)
    return []


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
        nodes = _compose_all(text)
    except _AliasBomb as exc:
        raise ConfigError(exc.why, file=name, line=exc.line) from None
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


def _compose_all(text: str) -> list[Node]:
    loader = _BoundedLoader(text)
    try:
        nodes: list[Node] = []
        while loader.check_node():
            if (node := loader.get_node()) is not None:
                nodes.append(node)
        return nodes
    finally:
        loader.dispose()


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
