"""The public surface of watchdog.guard is exactly its sorted ``__all__`` (as httpx keeps its own)."""

from __future__ import annotations

import inspect
import types

import watchdog.errors
import watchdog.guard as guard


def isort_style(name: str) -> tuple[int, str]:
    """The order ruff keeps ``__all__`` in (RUF022): CONSTANTS, then Classes, then functions, each alphabetical."""
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


def test_all_is_sorted_and_is_exactly_the_public_names() -> None:
    # dir(), not vars(): the package imports each name on first use (PEP 562), and its __dir__ lists them
    public = {
        name
        for name in dir(guard)
        if not name.startswith("_") and not isinstance(getattr(guard, name), types.ModuleType)
    }
    assert guard.__all__ == sorted(guard.__all__, key=isort_style)
    assert set(guard.__all__) == public


def test_every_export_comes_from_the_package_and_teaches() -> None:
    for name in guard.__all__:
        value = getattr(guard, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("watchdog."), name
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"


def test_errors_are_the_ones_of_the_errors_module() -> None:
    assert guard.Saturated is watchdog.errors.Saturated
    assert guard.GuardError is watchdog.errors.GuardError
    assert issubclass(guard.Saturated, watchdog.errors.WatchdogError)
