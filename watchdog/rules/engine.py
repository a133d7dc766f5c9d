"""Judging rules over signals: states per rule and subject, transitions, and when actions are due.

The engine is pure bookkeeping: it is handed the time and a way to look signals up, and returns what changed.
It never sleeps, never reads a clock and never acts, so every path is tested with plain numbers.

States, per rule and subject (a worker, or the target for target-level rules)::

    inactive ──conditions hold──> pending ──held for `for`──> firing ──conditions fail──> resolved
        ^                            │                                                       │
        └──────conditions fail───────┘<────────────────conditions hold again─────────────────┘

Actions are due when a rule enters ``firing`` and again every ``cooldown`` while it stays there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from watchdog.rules.spec import Condition, Rule
from watchdog.signals.catalog import SignalRef

State = Literal["inactive", "pending", "firing", "resolved"]
Lookup = Callable[[SignalRef], float | None]


@dataclass
class RuleState:
    """Where one rule stands for one subject, and the evidence of its latest evaluation."""

    rule: str
    subject: str
    state: State = "inactive"
    since: float = 0.0
    pending_since: float | None = None
    last_actions: float | None = None
    values: dict[str, float | None] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "subject": self.subject,
            "state": self.state,
            "since": self.since,
            "values": self.values,
            "missing": self.missing,
        }


@dataclass(frozen=True)
class Transition:
    """A state change, and whether the rule's actions are due now."""

    rule: Rule
    subject: str
    before: State
    after: State
    at: float
    values: dict[str, float | None]
    actions_due: bool


def _judge(rule: Rule, lookup: Lookup) -> tuple[bool, dict[str, float | None], list[str]]:
    values: dict[str, float | None] = {}
    missing: list[str] = []

    def once(ref: SignalRef) -> float | None:  # each signal looked up once per judgement (it is recorded too)
        if ref.text not in values:
            values[ref.text] = lookup(ref)
        return values[ref.text]

    def holds(c: Condition) -> bool:
        result = c.holds(once)
        for ref in c.refs:
            if once(ref) is None and ref.text not in missing:
                missing.append(ref.text)
        return bool(result)

    all_ok = all([holds(c) for c in rule.when.all])  # a list, not a generator: record every value
    any_ok = not rule.when.any or any([holds(c) for c in rule.when.any])
    return all_ok and any_ok, values, missing


class RuleEngine:
    """Keeps every rule's state for every subject and advances them on each evaluation."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = list(rules)
        self._target_scope: dict[str, bool] = {}  # rule name: target_scope (asked several times a second)
        self._states: dict[tuple[str, str], RuleState] = {}

    def worker_rules(self) -> list[Rule]:
        return [r for r in self.rules if not self._scoped(r)]

    def target_rules(self) -> list[Rule]:
        return [r for r in self.rules if self._scoped(r)]

    def _scoped(self, rule: Rule) -> bool:
        scoped = self._target_scope.get(rule.name)
        if scoped is None:
            scoped = self._target_scope[rule.name] = rule.target_scope
        return scoped

    def evaluate(self, subject: str, rules: Iterable[Rule], lookup: Lookup, now: float) -> list[Transition]:
        """Judge ``rules`` for ``subject`` at ``now``; return the transitions (and due repeats) it caused."""
        out: list[Transition] = []
        for rule in rules:
            st = self._states.get((rule.name, subject))
            if st is None:
                st = self._states[(rule.name, subject)] = RuleState(rule.name, subject, since=now)
            ok, st.values, st.missing = _judge(rule, lookup)
            before = st.state
            if ok:
                if st.state in ("inactive", "resolved"):
                    st.pending_since = now
                    st.state, st.since = "pending", now
                if st.state == "pending" and st.pending_since is not None and now - st.pending_since >= rule.for_:
                    st.state, st.since = "firing", now
            elif st.state in ("pending", "firing"):
                st.state = "resolved" if st.state == "firing" else "inactive"
                st.since, st.pending_since = now, None
            due = st.state == "firing" and (st.last_actions is None or now - st.last_actions >= rule.cooldown)
            if due:
                st.last_actions = now
            if due or st.state != before:
                out.append(Transition(rule, subject, before, st.state, now, dict(st.values), due))
        return out

    def forget(self, subject: str) -> list[RuleState]:
        """Drop every state of a subject that no longer exists (a worker that exited); return them."""
        gone = [k for k in self._states if k[1] == subject]
        return [self._states.pop(k) for k in gone]

    def states(self, subject: str | None = None) -> list[RuleState]:
        return [s for (_, subj), s in self._states.items() if subject is None or subj == subject]

    def firing(self, subject: str) -> list[RuleState]:
        return [s for s in self.states(subject) if s.state == "firing"]
