"""The rule state machine, driven by plain numbers: no clock, no sleeps."""

from __future__ import annotations

from watchdog.rules import Condition, Rule, RuleEngine, When
from watchdog.signals.catalog import SignalRef


def rule(*conditions: str, for_: float = 0.0, cooldown: float = 60.0, any_: tuple[str, ...] = ()) -> Rule:
    return Rule(
        name="r",
        when=When(all=[Condition.from_text(c) for c in conditions], any=[Condition.from_text(c) for c in any_]),
        for_=for_,  # type: ignore[arg-type]
        cooldown=cooldown,  # type: ignore[arg-type]
        actions=["notify"],
    )


def values(**v: float | None):  # type: ignore[no-untyped-def]
    return lambda ref: v.get(ref.name)


def states(engine: RuleEngine, r: Rule, seq: list[tuple[float, dict[str, float | None]]]) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    for t, vals in seq:
        trs = engine.evaluate("w1", [r], lambda ref, vals=vals: vals.get(ref.name), t)  # type: ignore[misc]
        st = engine.states("w1")[0]
        out.append((st.state, any(tr.actions_due for tr in trs)))
    return out


def test_pending_then_firing_after_for_then_resolved() -> None:
    r = rule("cpu_percent > 80", for_=5.0)
    got = states(
        RuleEngine([r]),
        r,
        [
            (0, {"cpu_percent": 90}),
            (3, {"cpu_percent": 95}),
            (5, {"cpu_percent": 99}),
            (6, {"cpu_percent": 10}),
        ],
    )
    assert got == [("pending", False), ("pending", False), ("firing", True), ("resolved", False)]


def test_a_dip_before_for_elapses_resets_the_clock() -> None:
    r = rule("cpu_percent > 80", for_=5.0)
    got = states(
        RuleEngine([r]),
        r,
        [
            (0, {"cpu_percent": 90}),
            (4, {"cpu_percent": 50}),
            (5, {"cpu_percent": 90}),
            (9, {"cpu_percent": 90}),
            (10, {"cpu_percent": 90}),
        ],
    )
    assert [s for s, _ in got] == ["pending", "inactive", "pending", "pending", "firing"]


def test_missing_data_never_fires_and_is_reported() -> None:
    r = rule("cpu_percent > 80", "stack_spin_samples >= 1")
    engine = RuleEngine([r])
    engine.evaluate("w1", [r], values(cpu_percent=99.0), 0)
    (st,) = engine.states("w1")
    assert st.state == "inactive"
    assert st.missing == ["stack_spin_samples"]
    assert st.values == {"cpu_percent": 99.0, "stack_spin_samples": None}


def test_actions_repeat_every_cooldown_while_firing() -> None:
    r = rule("cpu_percent > 80", cooldown=30.0)
    got = states(RuleEngine([r]), r, [(t, {"cpu_percent": 99}) for t in (0, 10, 29, 30, 59, 60)])
    assert [due for _, due in got] == [True, False, False, True, False, True]


def test_any_needs_one_and_all_needs_every() -> None:
    r = rule("threads > 1", any_=("cpu_percent > 80", "open_fds > 100"))
    engine = RuleEngine([r])
    assert not engine.evaluate("w", [r], values(threads=2, cpu_percent=10, open_fds=5), 0)
    assert engine.evaluate("w", [r], values(threads=2, cpu_percent=10, open_fds=500), 1)[0].after == "firing"


def test_subjects_are_independent_and_forgotten_when_gone() -> None:
    r = rule("cpu_percent > 80")
    engine = RuleEngine([r])
    engine.evaluate("a", [r], values(cpu_percent=99), 0)
    engine.evaluate("b", [r], values(cpu_percent=1), 0)
    assert [s.subject for s in engine.firing("a")] == ["a"]
    assert engine.firing("b") == []
    assert [s.state for s in engine.forget("a")] == ["firing"]
    assert engine.states("a") == []


def test_signal_refs_reach_the_lookup_unchanged() -> None:
    seen: list[SignalRef] = []
    r = rule('metric:x{pool="db"} > 1')
    RuleEngine([r]).evaluate("w", [r], lambda ref: seen.append(ref) or 2.0, 0)  # type: ignore[func-returns-value]
    assert {s.metric for s in seen} == {"x"}
    assert {s.labels for s in seen} == {(("pool", "db"),)}
