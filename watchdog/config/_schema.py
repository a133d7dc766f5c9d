"""One declaration drives parsing, validation and documentation of every YAML file the watchdog reads.

A section is a frozen dataclass; each field says its type by annotation and its meaning with ``setting()``::

    @dataclass(frozen=True)
    class Budget:
        max_recycles: int = setting(3, doc="Recycles allowed per window.", check=at_least(1))
        window: Duration = setting(Duration(600.0), doc="The window max_recycles counts over.")

``parse(Budget, node, ctx)`` turns a YAML node into a ``Budget`` or records ``ConfigError``s that name the file,
line and key path, and what would be valid. ``describe(Budget)`` writes the reference documentation from the
same declaration, so the docs cannot drift from the parser.

Types understood: ``str``, ``int``, ``float``, ``bool``, ``Duration`` (seconds), ``Size`` (bytes), ``Regex``
(a pattern checked to compile), ``FilePath`` (resolved against the file's folder), ``Literal[...]`` choices,
``X | None``, ``list[X]``, ``dict[str, X]`` and nested sections. A class that needs a shape of its own (a rule
condition written as ``cpu > 90``) defines ``__config_parse__(cls, node, ctx, key)``.

Strings may use ``${NAME}`` or ``${NAME:-default}`` to take a value (a secret, typically) from the
environment; ``$$`` is a literal dollar. That is the only substitution there is: no user text is evaluated.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, NewType, TypeVar, Union

from watchdog.config._yaml import MappingNode, Node, ScalarNode, SequenceNode, line_of, scalar_value
from watchdog.config.units import format_duration, format_size, parse_duration, parse_size
from watchdog.errors import ConfigError, ConfigErrors

Duration = NewType("Duration", float)
"""Seconds, written in YAML as ``30s``, ``250ms``, ``5m`` or ``1h30m``."""
Size = NewType("Size", int)
"""Bytes, written in YAML as ``512Mi``, ``2Gi``, ``100M`` or a plain number."""
Regex = NewType("Regex", str)
"""A Python regular expression, checked to compile."""
FilePath = NewType("FilePath", str)
"""A path, resolved against the folder of the file that names it."""
HeaderValue = NewType("HeaderValue", str)
"""Text sent in an HTTP header (a header's value, a bearer token): checked, after ``${ENV}`` substitution, to hold
no CR, LF or other control character (one stray ``\\r`` from a file edited on Windows would otherwise make every
request fail, or split the header)."""
Secret = NewType("Secret", str)
"""A credential sent in an HTTP header (checked as ``HeaderValue``); written inline rather than as ``${NAME}``, it
draws a warning: a secret in a config file ends up in backups, tickets and screenshots."""

T = TypeVar("T")
_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_META_DOC = "watchdog.doc"
_META_CHECK = "watchdog.check"
_META_KEY = "watchdog.key"


@dataclasses.dataclass
class Context:
    """Where parsing happens: the file (for messages), its folder (for paths), the environment, the errors."""

    file: str
    base_dir: Path = dataclasses.field(default_factory=Path.cwd)
    env: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(os.environ))
    errors: list[ConfigError] = dataclasses.field(default_factory=list)
    warnings: list[ConfigError] = dataclasses.field(default_factory=list)
    """Things that work but should not be so (a token written inline); ``watchdog check`` prints them."""
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Facts a custom ``__config_parse__`` needs from elsewhere (for example names declared in another file)."""

    def error(self, node: Node | None, key: str, message: str) -> None:
        """Record one error at ``node`` (its line) for the key path ``key``."""
        line = line_of(node) if node is not None else None
        self.errors.append(ConfigError(message, file=self.file, line=line, key=key))

    def warn(self, node: Node | None, key: str, message: str) -> None:
        """Record one warning at ``node`` (its line) for the key path ``key``."""
        line = line_of(node) if node is not None else None
        self.warnings.append(ConfigError(message, file=self.file, line=line, key=key))

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ConfigErrors(self.errors)


class _Invalid(Exception):
    """Internal: the value at hand is unusable; the error is already recorded."""


def setting(
    default: Any = dataclasses.MISSING,
    *,
    doc: str,
    check: Callable[[Any], str | None] | None = None,
    factory: Callable[[], Any] | None = None,
    key: str | None = None,
) -> Any:
    """Declare one configurable field: its default (none means required), its documentation and a check.

    ``check`` receives the parsed value and returns an error message, or None when the value is fine.
    ``key`` is the YAML key when it cannot be the field's name (``for`` is a Python keyword).
    """
    metadata = {_META_DOC: doc, _META_CHECK: check, _META_KEY: key}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def at_least(low: float) -> Callable[[Any], str | None]:
    """A check: the number is ``>= low``."""
    return lambda v: None if v >= low else f"must be at least {low:g}, got {v:g}"


def positive(value: float) -> str | None:
    """A check: the number is more than 0 (a zero interval would spin, a zero timeout would mean none)."""
    return None if value > 0 else f"must be more than 0, got {value:g}"


def positive_because(why: str) -> Callable[[Any], str | None]:
    """A check: the number is more than 0; the message says what a zero would do."""
    return lambda v: None if v > 0 else f"must be more than 0 ({why}), got {v:g}"


_HEADER_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _looks_secret(name: str) -> bool:
    from watchdog.redact import looks_secret

    return looks_secret(name)


def header_value_problem(text: str) -> str | None:
    """None when ``text`` can be sent as an HTTP header value, else what is wrong with it."""
    m = _HEADER_BAD.search(text)
    if m is None:
        return None
    names = {"\r": "a carriage return (CR, \\r)", "\n": "a line feed (LF, \\n)"}
    what = names.get(m.group(0), f"the control character U+{ord(m.group(0)):04X}")
    where = "at the end" if m.start() == len(text) - 1 else f"at position {m.start() + 1}"
    why = (
        " (a file edited on Windows leaves a CR at the end of each line: check the environment file or the value)"
        if m.group(0) == "\r"
        else ""
    )
    return f"contains {what} {where}; an HTTP header cannot carry it{why}"


def http_url(value: str) -> str | None:
    """A check: ``value`` is an http(s) URL with a host and, if it has one, a valid port."""
    u = urllib.parse.urlsplit(value)
    if u.scheme not in ("http", "https") or not u.hostname:
        return f"expected an http:// or https:// URL with a host, got {value!r}"
    try:
        u.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        return f"invalid port in URL {value!r}"
    return None


def between(low: float, high: float) -> Callable[[Any], str | None]:
    """A check: the number is within ``[low, high]``."""
    return lambda v: None if low <= v <= high else f"must be between {low:g} and {high:g}, got {v:g}"


def _describe_value(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"a boolean ({str(v).lower()})"
    if isinstance(v, int):
        return f"an integer ({v})"
    if isinstance(v, float):
        return f"a number ({v:g})"
    if isinstance(v, str):
        return f"a string ({v!r})"
    return type(v).__name__


def _node_kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return _describe_value(scalar_value(node))  # type: ignore[arg-type]


def _type_name(tp: Any) -> str:
    """How a type reads in messages and docs."""
    names = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        Duration: "duration",
        Size: "size",
        Regex: "regex",
        FilePath: "path",
        HeaderValue: "header value",
        Secret: "secret",
    }
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin is Literal:
        args = [f"`{a}`" for a in typing.get_args(tp)]
        return f"one of {', '.join(args[:-1])} or {args[-1]}" if len(args) > 1 else args[0]
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"mapping of string to {_type_name(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _interpolate(text: str, node: Node, key: str, ctx: Context) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if name in ctx.env:
            from watchdog.redact import remember

            remember(ctx.env[name])  # a value from the environment is never shown (logs, status, webhooks)
            return ctx.env[name]
        if default is not None:
            return default
        ctx.error(node, key, f"environment variable {name} is not set (referenced as '${{{name}}}')")
        raise _Invalid

    return _ENV_REF.sub(sub, text)


def _scalar(node: Node, key: str, ctx: Context, want: str) -> object:
    if not isinstance(node, ScalarNode):
        ctx.error(node, key, f"expected {want}, got {_node_kind(node)}")
        raise _Invalid
    return scalar_value(node)


def _convert(tp: Any, node: Node, key: str, ctx: Context) -> Any:
    """Turn ``node`` into a value of type ``tp`` or record why not (and raise ``_Invalid``)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if isinstance(node, ScalarNode) and scalar_value(node) is None:
            return None
        if len(args) != 1:
            raise TypeError(f"unsupported union {tp!r} at {key}")
        return _convert(args[0], node, key, ctx)
    if hasattr(tp, "__config_parse__"):
        return tp.__config_parse__(node, ctx, key)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _parse_section(tp, node, key, ctx)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(node, SequenceNode):
            ctx.error(node, key, f"expected a list of {_type_name(item_tp)}, got {_node_kind(node)}")
            raise _Invalid
        out, bad = [], False
        for i, item in enumerate(node.value):
            try:
                out.append(_convert(item_tp, item, f"{key}[{i}]", ctx))
            except _Invalid:
                bad = True
        if bad:
            raise _Invalid
        return out
    if origin is dict:
        _, val_tp = typing.get_args(tp)
        if not isinstance(node, MappingNode):
            ctx.error(node, key, f"expected a mapping, got {_node_kind(node)}")
            raise _Invalid
        result: dict[str, Any] = {}
        bad = False
        for k, v in node.value:
            name = str(scalar_value(k)) if isinstance(k, ScalarNode) else "?"
            try:
                result[name] = _convert(val_tp, v, f"{key}.{name}" if key else name, ctx)
            except _Invalid:
                bad = True
        if bad:
            raise _Invalid
        return result
    if origin is Literal:
        choices = typing.get_args(tp)
        value = _scalar(node, key, ctx, "one of " + ", ".join(repr(c) for c in choices))
        if value not in choices:
            hint = _did_you_mean(str(value), [str(c) for c in choices])
            ctx.error(node, key, f"{_describe_value(value)} is not one of {', '.join(repr(c) for c in choices)}{hint}")
            raise _Invalid
        return value
    return _convert_scalar(tp, node, key, ctx)


def _convert_scalar(tp: Any, node: Node, key: str, ctx: Context) -> Any:
    want = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, f"a {_type_name(tp)}")
    value = _scalar(node, key, ctx, want)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp in (str, Regex, FilePath, Duration, Size, HeaderValue, Secret):
        if isinstance(value, bool):
            ctx.error(node, key, f"expected {want}, got {_describe_value(value)}; quote it if you meant the word")
            raise _Invalid
        if value is None:
            ctx.error(node, key, f"expected {want}, got nothing (null)")
            raise _Invalid
        text = _interpolate(str(value), node, key, ctx) if isinstance(value, str) else str(value)
        try:
            if tp is Duration:
                return Duration(parse_duration(text))
            if tp is Size:
                return Size(parse_size(text))
        except ValueError as exc:
            ctx.error(node, key, str(exc))
            raise _Invalid from None
        if tp is Regex:
            try:
                re.compile(text)
            except re.error as exc:
                ctx.error(node, key, f"invalid regular expression {text!r}: {exc}")
                raise _Invalid from None
            return Regex(text)
        if tp is FilePath:
            p = Path(os.path.expanduser(text))
            return FilePath(str(p if p.is_absolute() else (ctx.base_dir / p)))
        if tp in (HeaderValue, Secret):
            if (problem := header_value_problem(text)) is not None:
                ctx.error(node, key, problem)
                raise _Invalid
            secret = tp is Secret or _looks_secret(key.rpartition(".")[2])  # e.g. headers.Authorization
            if secret and isinstance(value, str) and text and not _ENV_REF.search(value):
                ctx.warn(node, key, "a secret written inline in the file; write it as '${NAME}' and set NAME in the "
                         "environment (or an EnvironmentFile readable only by the watchdog)")  # fmt: skip
            return HeaderValue(text) if tp is HeaderValue else Secret(text)
        if isinstance(value, str):
            return text
    else:
        raise TypeError(f"unsupported config type {tp!r} at {key}")
    ctx.error(node, key, f"expected {want}, got {_describe_value(value)}")
    raise _Invalid


def _did_you_mean(word: str, options: list[str]) -> str:
    import difflib  # only for a config error: not kept in the sidecar's memory

    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _yaml_key(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get(_META_KEY) or f.name


def _parse_section(cls: type[T], node: Node, key: str, ctx: Context) -> T:
    fields = {_yaml_key(f): f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    if not isinstance(node, MappingNode):
        ctx.error(node, key, f"expected a mapping with keys {', '.join(fields)}; got {_node_kind(node)}")
        raise _Invalid
    values: dict[str, Any] = {}
    nodes: dict[str, Node] = {}
    bad = False
    for k, v in node.value:
        name = scalar_value(k) if isinstance(k, ScalarNode) else None
        path = f"{key}.{name}" if key else str(name)
        if not isinstance(name, str) or name not in fields:
            valid = ", ".join(fields)
            hint = _did_you_mean(str(name), list(fields)) or f" (valid keys: {valid})"
            ctx.error(k, key or "(top level)", f"unknown key {name!r}{hint}")
            bad = True
            continue
        nodes[name] = v
        try:
            value = _convert(hints[fields[name].name], v, path, ctx)
        except _Invalid:
            bad = True
            continue
        check = fields[name].metadata.get(_META_CHECK)
        problem = check(value) if check is not None and value is not None else None
        if problem:
            ctx.error(v, path, problem)
            bad = True
            continue
        values[fields[name].name] = value
    for name, f in fields.items():
        if name not in nodes and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            ctx.error(
                node,
                key or "(top level)",
                f"missing required key {name!r} ({_type_name(hints[f.name])}: {f.metadata.get(_META_DOC, '')})",
            )
            bad = True
    if bad:
        raise _Invalid
    obj = cls(**values)
    checker = getattr(obj, "__config_check__", None)
    if checker is not None:
        before = len(ctx.errors)

        yaml_keys = {f.name: k for k, f in fields.items()}

        def report(field: str | None, message: str) -> None:
            field = yaml_keys.get(field, field) if field else field
            at = nodes.get(field, node) if field else node
            path = key if not field else (f"{key}.{field}" if key else field)
            ctx.error(at, path or "(top level)", message)

        checker(report)
        if len(ctx.errors) > before:
            raise _Invalid
    return obj


def parse(cls: type[T], node: Node, ctx: Context, key: str = "") -> T:
    """Parse ``node`` as section ``cls``; raise ``ConfigErrors`` with everything wrong in it."""
    try:
        result = _convert(cls, node, key, ctx)
    except _Invalid:
        pass
    else:
        if not ctx.errors:
            return typing.cast(T, result)
    ctx.raise_if_errors()
    raise AssertionError("unreachable: _Invalid raised with no error recorded")


def try_parse(tp: Any, node: Node, key: str, ctx: Context) -> Any:
    """For ``__config_parse__`` hooks: convert a part, re-raising the internal marker on failure."""
    return _convert(tp, node, key, ctx)


Invalid = _Invalid
"""Raise from a ``__config_parse__`` hook after ``ctx.error(...)`` to mark the value unusable."""


def describe(cls: type[Any], *, heading_level: int = 3, prefix: str = "") -> str:
    """Reference documentation (Markdown) for a section and its nested sections, from their declarations."""
    hints = typing.get_type_hints(cls)
    lines = [f"{'#' * heading_level} `{prefix or cls.__name__}`", ""]
    if cls.__doc__:
        lines += [" ".join(cls.__doc__.split()), ""]
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    nested: list[tuple[str, type[Any]]] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if f.default is not dataclasses.MISSING:
            default = _format_default(tp, f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = _format_default(tp, f.default_factory())
        else:
            default = "**required**"
        lines.append(f"| `{_yaml_key(f)}` | {_type_name(tp)} | {default} | {f.metadata.get(_META_DOC, '')} |")
        inner = tp
        while typing.get_origin(inner) in (list, Union, types.UnionType, dict):
            args = [a for a in typing.get_args(inner) if a is not type(None)]
            inner = args[-1]
        if dataclasses.is_dataclass(inner) and isinstance(inner, type):
            sub = f"{prefix}.{f.name}" if prefix else f.name
            nested.append((sub + ("[]" if typing.get_origin(tp) is list else ""), inner))
    out = "\n".join(lines) + "\n"
    for sub, inner in nested:
        out += "\n" + describe(inner, heading_level=heading_level, prefix=sub)
    return out


def _format_default(tp: Any, value: Any) -> str:
    if value is None:
        return "none"
    if tp is Duration or (typing.get_origin(tp) in (Union, types.UnionType) and Duration in typing.get_args(tp)):
        return f"`{format_duration(value)}`"
    if tp is Size or (typing.get_origin(tp) in (Union, types.UnionType) and Size in typing.get_args(tp)):
        return f"`{format_size(value)}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (list, dict)) and not value:
        return "empty"
    if dataclasses.is_dataclass(value):
        return "see below"
    return f"`{value}`"
