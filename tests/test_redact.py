"""Redaction: what counts as a secret, and that non-finite numbers leave as valid JSON."""

from __future__ import annotations

import json
import math

import pytest

from watchdog.redact import MASK, Redactor, looks_secret, outward


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("app --api-key=sk-live-abc123 --workers 2", "app --api-key=*** --workers 2"),
        ("app --password hunter22 --port 80", "app --password *** --port 80"),
        ("PGPASSWORD=hunter22 FOO=bar", "PGPASSWORD=*** FOO=bar"),
        ("postgres://app:pa55@db:5432/x", "postgres://***@db:5432/x"),
        ("http://h/metrics?token=abc&format=text", "http://h/metrics?token=***&format=***"),
        ('{"auth_token": "abc"}', '{"auth_token": "***"}'),
        ("probe failed: HTTP 500 after 2.1 s", "probe failed: HTTP 500 after 2.1 s"),
        ("the token expired", "the token expired"),  # prose: a secret-looking word alone hides nothing
    ],
)
def test_text(text: str, want: str) -> None:
    assert Redactor().text(text) == want


def test_authorization_credentials_are_hidden() -> None:
    out = Redactor().text("Authorization: Bearer eyJhbGciOi.xyz")
    assert "eyJhbGciOi" not in out
    assert MASK in out


def test_remembered_values_and_extra_patterns() -> None:
    r = Redactor(values=["from-the-env-1234", "ab"], patterns=[r"acct-\d+"])
    assert r.text("url /hooks/from-the-env-1234/x for acct-991 ab") == "url /hooks/***/x for *** ab"  # "ab": too short


def test_argv_hides_the_value_after_a_secret_flag() -> None:
    argv = ["python", "app.py", "--api-key", "sk-1", "--token=t", "--workers", "2", "--secret", "--verbose"]
    assert Redactor().argv(argv) == [
        "python", "app.py", "--api-key", MASK, "--token=***", "--workers", "2", "--secret", "--verbose",
    ]  # fmt: skip


def test_values_walk_dicts_lists_and_numbers() -> None:
    out = outward(
        {"drain_token": "abc", "cmdline": ["x", "--password", "p"], "n": math.inf, "m": -math.inf, "z": math.nan},
        redactor=Redactor(),
    )
    assert out == {"drain_token": MASK, "cmdline": ["x", "--password", MASK], "n": "inf", "m": "-inf", "z": "nan"}
    json.loads(json.dumps(out, allow_nan=False))  # valid JSON: no bare Infinity or NaN


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("api_key", True), ("X-Api-Key", True), ("PGPASSWORD", True), ("client_secret", True), ("auth", True),
        ("session_id", True), ("monkey", False), ("author", False), ("max_recycles", False), ("keyboard", False),
    ],
)  # fmt: skip
def test_looks_secret(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret
