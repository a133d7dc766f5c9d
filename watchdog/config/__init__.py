"""Loading and validating the watchdog's YAML files.

``load_config(path)`` returns a ``Config`` or raises ``ConfigErrors`` in which each error names the file, the
line, the key path and what would be valid. The same engine (``parse``, ``setting``) reads rule packs and probe
definitions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from watchdog.config._schema import (
    Context,
    Duration,
    FilePath,
    HeaderValue,
    Invalid,
    Regex,
    Secret,
    Size,
    at_least,
    between,
    describe,
    header_value_problem,
    http_url,
    parse,
    positive,
    positive_because,
    setting,
    try_parse,
)
from watchdog.config._yaml import (
    MAX_ALIAS_NODES,
    MappingNode,
    Node,
    ScalarNode,
    SequenceNode,
    line_of,
    read_yaml,
    scalar_value,
)
from watchdog.config.model import (
    BUNDLED_RULES,
    Alertmanager,
    Budget,
    Config,
    Flamegraphs,
    Intervals,
    Logging,
    Match,
    Notify,
    Recycle,
    Redaction,
    Server,
    Stacks,
    Target,
    Webhook,
    Windows,
)
from watchdog.config.units import format_duration, format_size, parse_duration, parse_size
from watchdog.errors import ConfigError

__all__ = [
    "BUNDLED_RULES",
    "MAX_ALIAS_NODES",
    "Alertmanager",
    "Budget",
    "Config",
    "Context",
    "Duration",
    "FilePath",
    "Flamegraphs",
    "HeaderValue",
    "Intervals",
    "Invalid",
    "Logging",
    "MappingNode",
    "Match",
    "Node",
    "Notify",
    "Recycle",
    "Redaction",
    "Regex",
    "ScalarNode",
    "Secret",
    "SequenceNode",
    "Server",
    "Size",
    "Stacks",
    "Target",
    "Webhook",
    "Windows",
    "at_least",
    "between",
    "describe",
    "format_duration",
    "format_size",
    "header_value_problem",
    "http_url",
    "line_of",
    "load_config",
    "load_file",
    "parse",
    "parse_duration",
    "parse_size",
    "positive",
    "positive_because",
    "read_yaml",
    "scalar_value",
    "setting",
    "try_parse",
]


def load_file(
    cls: type[object],
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    warnings: list[ConfigError] | None = None,
) -> object:
    """Read ``path`` and parse it as section ``cls`` (relative paths inside resolve against its folder).

    ``warnings``, when given, receives what works but should not be so (a secret written inline)."""
    name = os.fspath(path)
    node = read_yaml(path, display=name)
    ctx = Context(file=name, base_dir=Path(path).resolve().parent, env=dict(os.environ) if env is None else env)
    try:
        return parse(cls, node, ctx)
    finally:
        if warnings is not None:
            warnings.extend(ctx.warnings)


def load_config(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None, warnings: list[ConfigError] | None = None
) -> Config:
    """Read and validate ``watchdog.yaml``; raise ``ConfigErrors`` naming file, line and key for each problem."""
    cfg = load_file(Config, path, env=env, warnings=warnings)
    assert isinstance(cfg, Config)
    return cfg
