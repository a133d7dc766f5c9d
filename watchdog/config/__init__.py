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
    Invalid,
    Regex,
    Size,
    at_least,
    between,
    describe,
    http_url,
    parse,
    setting,
    try_parse,
)
from watchdog.config._yaml import MappingNode, Node, ScalarNode, SequenceNode, line_of, read_yaml, scalar_value
from watchdog.config.model import (
    BUNDLED_RULES,
    Alertmanager,
    Budget,
    Config,
    Intervals,
    Logging,
    Match,
    Notify,
    Recycle,
    Server,
    Stacks,
    Target,
    Webhook,
    Windows,
)
from watchdog.config.units import format_duration, format_size, parse_duration, parse_size

__all__ = [
    "BUNDLED_RULES",
    "Alertmanager",
    "Budget",
    "Config",
    "Context",
    "Duration",
    "FilePath",
    "Intervals",
    "Invalid",
    "Logging",
    "MappingNode",
    "Match",
    "Node",
    "Notify",
    "Recycle",
    "Regex",
    "ScalarNode",
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
    "http_url",
    "line_of",
    "load_config",
    "load_file",
    "parse",
    "parse_duration",
    "parse_size",
    "read_yaml",
    "scalar_value",
    "setting",
    "try_parse",
]


def load_file(cls: type[object], path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> object:
    """Read ``path`` and parse it as section ``cls`` (relative paths inside resolve against its folder)."""
    name = os.fspath(path)
    node = read_yaml(path, display=name)
    ctx = Context(file=name, base_dir=Path(path).resolve().parent, env=dict(os.environ) if env is None else env)
    return parse(cls, node, ctx)


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate ``watchdog.yaml``; raise ``ConfigErrors`` naming file, line and key for each problem."""
    cfg = load_file(Config, path, env=env)
    assert isinstance(cfg, Config)
    return cfg
