"""Rules: YAML packs (``spec``), their loading, and the state machine that judges them (``engine``).

Rules read signals by name and know nothing of how actions are carried out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from watchdog.config import BUNDLED_RULES, Context, parse, read_yaml
from watchdog.errors import ConfigError, ConfigErrors
from watchdog.rules.engine import RuleEngine, RuleState, State, Transition
from watchdog.rules.spec import Condition, LoadedRules, Rule, RulePack, When

__all__ = [
    "Condition",
    "LoadedRules",
    "Rule",
    "RuleEngine",
    "RulePack",
    "RuleState",
    "State",
    "Transition",
    "When",
    "load_rules",
]


def load_rules(
    paths: Iterable[str | os.PathLike[str]] = (),
    *,
    stack_patterns: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> LoadedRules:
    """Load rule packs (the bundled default when none is named); raise ``ConfigErrors`` for every problem,
    including a rule name defined in two packs.
    """
    files = [os.fspath(p) for p in paths] or [os.fspath(BUNDLED_RULES)]
    errors: list[ConfigError] = []
    loaded = LoadedRules()
    for f in files:
        try:
            node = read_yaml(f)
            ctx = Context(
                file=f,
                env=dict(os.environ) if env is None else env,
                options={"stack_patterns": frozenset(stack_patterns)},
            )
            pack = parse(RulePack, node, ctx)
        except ConfigErrors as errs:
            errors.extend(errs)
            continue
        except ConfigError as err:
            errors.append(err)
            continue
        for rule in pack.rules:
            if rule.name in loaded.origin:
                errors.append(ConfigError(f"rule {rule.name!r} is also defined in {loaded.origin[rule.name]}", file=f))
                continue
            loaded.rules.append(rule)
            loaded.origin[rule.name] = f
    if errors:
        raise ConfigErrors(errors)
    return loaded
