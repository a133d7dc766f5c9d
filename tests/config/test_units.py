from __future__ import annotations

import pytest

from watchdog.config.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("0", 0.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("30", "has no unit; write '30s'"),
        ("", "empty duration"),
        ("5x", "invalid duration"),
        ("m5", "invalid"),
        ("5m 3s", "invalid"),
        ("-5s", "invalid"),
    ],
)
def test_bad_durations_say_what_would_be_valid(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512Mi", 512 * 2**20),
        ("2Gi", 2 * 2**30),
        ("100M", 100_000_000),
        ("2GB", 2_000_000_000),
        ("1024", 1024),
        ("64B", 64),
        ("1.5Ki", 1536),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["12Q", "", "Mi", "5 MiB", "-1Mi"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize("seconds", [0.0, 0.25, 1.5, 30.0, 90.0, 5400.0, 86400.0])
def test_duration_round_trip(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("n", [1, 1024, 512 * 2**20, 3 * 2**30 + 1])
def test_size_round_trip(n: int) -> None:
    assert parse_size(format_size(n)) == n
