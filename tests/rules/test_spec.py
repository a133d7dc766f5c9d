"""Rule packs: what parses, and that every mistake names file, line and key with a suggestion."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from watchdog.config import BUNDLED_RULES
from watchdog.errors import ConfigErrors
from watchdog.rules import Condition, load_rules


def pack(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "rules.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def test_the_bundled_default_pack_loads() -> None:
    loaded = load_rules()
    assert loaded.rules
    assert all(loaded.origin[r.name] == str(BUNDLED_RULES) for r in loaded.rules)


@pytest.mark.parametrize(
    ("text", "left", "op", "right"),
    [
        ("cpu_percent > 80", "cpu_percent", ">", 80.0),
        ("seconds_to_memory_limit<5m", "seconds_to_memory_limit", "<", 300.0),
        ("rss_bytes >= 512Mi", "rss_bytes", ">=", 512 * 2**20),
        ("probe_ok == 0", "probe_ok", "==", 0.0),
        ("open_fds != 1.5", "open_fds", "!=", 1.5),
        ("rss_growth_bytes_per_second > 2M", "rss_growth_bytes_per_second", ">", 2e6),
        ("probe_latency_seconds > 250ms", "probe_latency_seconds", ">", 0.25),
    ],
)
def test_conditions(text: str, left: str, op: str, right: float) -> None:
    c = Condition.from_text(text)
    assert c.left.ref is not None
    assert c.left.ref.name == left
    assert c.op == op
    assert c.right.constant == right


def test_a_condition_may_compare_two_signals_and_metrics_with_labels() -> None:
    c = Condition.from_text('metric:limiter_in_flight{name="downstream"} >= metric:limiter_limit{name="downstream"}')
    assert c.left.ref is not None
    assert c.right.ref is not None
    assert c.left.ref.metric == "limiter_in_flight"
    assert c.left.ref.labels == (("name", "downstream"),)
    assert c.holds(lambda ref: {"limiter_in_flight": 4.0, "limiter_limit": 4.0}[ref.metric or ""]) is True


def test_missing_data_is_neither_true_nor_false() -> None:
    c = Condition.from_text("cpu_percent > 80")
    assert c.holds(lambda ref: None) is None


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("cpu_percnt > 80", "unknown signal 'cpu_percnt' (did you mean 'cpu_percent'?)"),
        ("cpu_percent >> 80", "invalid condition"),
        ("cpu_percent", "invalid condition"),
        ("80 > 70", "compares two constants"),
        ("stack_share:nope > 0.1", "unknown stack pattern"),
        ("metric:x{a=1} > 0", "invalid label matcher"),
        ("__import__('os') > 1", "unknown signal"),
    ],
)
def test_bad_conditions(tmp_path: Path, condition: str, message: str) -> None:
    p = pack(
        tmp_path,
        f"""\
        rules:
          - name: r
            when:
              all:
                - {condition!r}
        """,
    )
    with pytest.raises(ConfigErrors) as info:
        load_rules([p])
    (err,) = info.value.errors
    assert err.line == 5
    assert err.key == "rules[0].when.all[0]"
    assert message in err.message


def test_rule_level_mistakes_are_located(tmp_path: Path) -> None:
    p = pack(
        tmp_path,
        """\
        rules:
          - name: a
            when: {all: ["cpu_percent > 1"]}
            for: 10
            actions: [recycle, reboot]
          - name: b
            when: {all: ["target_probe_consecutive_failures >= 3"]}
            actions: [recycle]
          - name: c
            when: {}
          - name: a
            when: {any: ["threads > 100"]}
            severity: fatal
        """,
    )
    with pytest.raises(ConfigErrors) as info:
        load_rules([p])
    got = [(e.line, e.key, e.message.split(";")[0]) for e in info.value]
    assert got == [
        (4, "rules[0].for", "duration '10' has no unit"),
        (5, "rules[0].actions[1]", "a string ('reboot') is not one of 'log', 'notify', 'diagnose', 'recycle'"),
        (8, "rules[1].actions", "a rule over target-level signals only cannot recycle a worker"),
        (10, "rules[2].when", "give at least one condition under 'all' or 'any'"),
        (13, "rules[3].severity", "a string ('fatal') is not one of 'info', 'warning', 'critical'"),
    ]


def test_a_rule_defined_in_two_packs(tmp_path: Path) -> None:
    one = pack(tmp_path, "rules:\n  - name: x\n    when: {all: ['threads > 1']}\n")
    two = tmp_path / "two.yaml"
    two.write_text(one.read_text())
    with pytest.raises(ConfigErrors, match=r"rule 'x' is also defined in .*rules.yaml"):
        load_rules([one, two])


def test_declared_stack_patterns_are_accepted(tmp_path: Path) -> None:
    p = pack(tmp_path, "rules:\n  - name: x\n    when: {all: ['stack_share:db_wait > 0.5']}\n")
    (rule,) = load_rules([p], stack_patterns=["db_wait"]).rules
    assert rule.when.all[0].left.ref is not None
    assert rule.when.all[0].left.ref.pattern == "db_wait"
