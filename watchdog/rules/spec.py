"""Rule packs as YAML: what a rule says, parsed and checked with file, line and key.

A rule pack::

    rules:
      - name: cancel-delivery-spin
        description: A worker burns a core in anyio's _deliver_cancellation loop.
        severity: critical
        when:
          all:
            - cpu_percent > 80
            - stack_spin_samples >= 1
        for: 6s
        actions: [diagnose, recycle, notify]
        cooldown: 5m

A condition is ``OPERAND OP OPERAND`` with OP one of ``> >= < <= == !=`` and each operand a signal name (see
``watchdog.signals.catalog``) or a number, optionally with a duration unit (``30s``, ``5m``: seconds) or a size
unit (``512Mi``, ``2G``: bytes). Nothing else is accepted; nothing is evaluated.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from watchdog.config import (
    Context,
    Duration,
    Invalid,
    Node,
    ScalarNode,
    parse_duration,
    parse_size,
    scalar_value,
    setting,
)
from watchdog.signals.catalog import SignalRef, parse_ref

Severity = Literal["info", "warning", "critical"]
ActionName = Literal["log", "notify", "diagnose", "recycle"]

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
# An operand is a metric reference with labels (whose quoted values may hold spaces and operators) or a word.
_OPERAND = r'metric:[a-zA-Z_:][a-zA-Z0-9_:]*\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\}|\S+?'
_CONDITION = re.compile(rf"\s*({_OPERAND})\s*(>=|<=|==|!=|>|<)\s*({_OPERAND}|\S+)\s*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Operand:
    """A signal reference or a constant."""

    ref: SignalRef | None = None
    constant: float | None = None

    def __str__(self) -> str:
        return self.ref.text if self.ref is not None else f"{self.constant:g}"


def _operand(text: str, stack_patterns: frozenset[str]) -> Operand:
    if _NUMBER.fullmatch(text):
        return Operand(constant=float(text))
    if re.fullmatch(r"\d+(?:\.\d+)?(ms|s|m|h|d)+(\d+(?:\.\d+)?(ms|s|m|h|d))*", text):
        return Operand(constant=parse_duration(text))
    if re.fullmatch(r"\d+(?:\.\d+)?([KMGTP]i?|[KMGTP]B|B)", text):
        return Operand(constant=float(parse_size(text)))
    return Operand(ref=parse_ref(text, stack_patterns=stack_patterns))


@dataclass(frozen=True)
class Condition:
    """``left op right``; true only when both sides have a current value and the comparison holds."""

    left: Operand
    op: str
    right: Operand
    text: str

    @property
    def refs(self) -> list[SignalRef]:
        return [o.ref for o in (self.left, self.right) if o.ref is not None]

    def holds(self, lookup: Callable[[SignalRef], float | None]) -> bool | None:
        """True or False, or None when a signal it needs has no current value (missing is not healthy)."""
        a = self.left.constant if self.left.ref is None else lookup(self.left.ref)
        b = self.right.constant if self.right.ref is None else lookup(self.right.ref)
        if a is None or b is None:
            return None
        return OPS[self.op](a, b)

    @classmethod
    def from_text(cls, text: str, stack_patterns: frozenset[str] = frozenset()) -> Condition:
        m = _CONDITION.fullmatch(text)
        if m is None:
            raise ValueError(
                f"invalid condition {text!r}; write SIGNAL OP VALUE such as 'cpu_percent > 80' "
                "(OP is one of > >= < <= == !=)"
            )
        left, op, right = m.groups()
        cond = cls(_operand(left, stack_patterns), op, _operand(right, stack_patterns), text.strip())
        if cond.left.ref is None and cond.right.ref is None:
            raise ValueError(f"condition {text!r} compares two constants; name a signal on one side")
        return cond

    @classmethod
    def __config_parse__(cls, node: Node, ctx: Context, key: str) -> Condition:
        value = scalar_value(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, str):
            ctx.error(node, key, "expected a condition string such as 'cpu_percent > 80'")
            raise Invalid
        try:
            return cls.from_text(value, frozenset(ctx.options.get("stack_patterns", ())))
        except ValueError as exc:
            ctx.error(node, key, str(exc))
            raise Invalid from None


@dataclass(frozen=True)
class When:
    """Conditions: every one of ``all`` and at least one of ``any`` (each list optional, not both empty)."""

    all: list[Condition] = setting(doc="Conditions that must all hold.", factory=list)
    any: list[Condition] = setting(doc="Conditions of which at least one must hold.", factory=list)

    def __config_check__(self, report: Callable[[str | None, str], None]) -> None:
        if not self.all and not self.any:
            report(None, "give at least one condition under 'all' or 'any'")

    @property
    def conditions(self) -> list[Condition]:
        return [*self.all, *self.any]


@dataclass(frozen=True)
class Rule:
    """A named judgement over signals: when its conditions hold for `for`, it fires its actions."""

    name: str = setting(doc="Unique name, used in events, metrics and alerts.")
    when: When = setting(doc="The conditions.")
    description: str = setting("", doc="What the rule means, for the operator reading an alert.")
    severity: Severity = setting("warning", doc="How bad it is when it fires.")
    for_: Duration = setting(Duration(0.0), key="for", doc="How long the conditions must hold before the rule fires.")
    actions: list[ActionName] = setting(doc="What to do when it fires, in order.", factory=lambda: ["log"])
    cooldown: Duration = setting(
        Duration(300.0), doc="Minimum time between two runs of the actions for one worker (or target)."
    )
    advice: str = setting("", doc="What an operator should do; attached to notifications.")
    grace: Duration | None = setting(
        None,
        doc="Overrides the target's recycle grace (SIGTERM to SIGKILL) when this rule recycles: a worker that "
        "cannot act on SIGTERM (a spin) gains nothing from a long wait.",
    )

    @property
    def target_scope(self) -> bool:
        """A rule over target-level signals only is judged once per target, not per worker."""
        refs = [r for c in self.when.conditions for r in c.refs]
        return bool(refs) and all(r.target_level for r in refs)

    def __config_check__(self, report: Callable[[str | None, str], None]) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.\-]*", self.name):
            report("name", f"use lower-case letters, digits, '-', '_' or '.' (got {self.name!r})")
        if self.target_scope and "recycle" in self.actions:
            report("actions", "a rule over target-level signals only cannot recycle a worker; use notify")
        if len(set(self.actions)) != len(self.actions):
            report("actions", "an action is listed twice")


@dataclass(frozen=True)
class RulePack:
    """A rule pack file: `rules: [...]`."""

    rules: list[Rule] = setting(doc="The rules.")

    def __config_check__(self, report: Callable[[str | None, str], None]) -> None:
        names = [r.name for r in self.rules]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            report("rules", f"rule name {dup!r} is used more than once")


@dataclass(frozen=True)
class LoadedRules:
    """Rules from one or more packs, with where each came from."""

    rules: list[Rule] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)


__all__ = ["OPS", "ActionName", "Condition", "LoadedRules", "Operand", "Rule", "RulePack", "Severity", "When"]
