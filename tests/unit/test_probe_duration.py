"""Durations on the command line: `10s`, `1m`, `500ms`, chained parts, and what is refused."""

from __future__ import annotations

import pytest

from pushctl.errors import UsageError
from pushctl.probe.duration import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("1m", 60.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("2h", 7200.0),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("250", 250.0),
        ("0.25", 0.25),
        (" 10S ", 10.0),
        (".5s", 0.5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "ten", "10x", "10 s s", "-1s", "1s-", "m1", "1e3s", "nan", "inf"])
def test_invalid_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_duration(text, what="--duration")
    assert err.value.exit_code == 2
    assert "--duration" in err.value.message


def test_zero_is_refused_unless_allowed() -> None:
    with pytest.raises(UsageError, match="must be > 0"):
        parse_duration("0s")
    assert parse_duration("0s", allow_zero=True) == 0.0


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.5, "500ms"), (10.0, "10s"), (1.5, "1.5s"), (90, "1m30s"), (120, "2m")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
