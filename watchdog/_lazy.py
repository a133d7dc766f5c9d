"""A package's exported names, each imported from its module when first used (PEP 562).

A process that needs one piece of a package (the sidecar reads only the guard's metric names) then does not load
the rest; ``bench/sidecar_memory.py`` measures what that saves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    namespace: dict[str, Any], where: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of a package whose names ``where`` maps to their modules;
    ``namespace`` is the package's ``globals()``, where each name is kept once imported."""

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = namespace[name] = getattr(importlib.import_module(module), name)  # the next lookup finds it
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *where])

    return __getattr__, __dir__
