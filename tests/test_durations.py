from __future__ import annotations

from datetime import timedelta

import pytest

from recorder.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", timedelta(minutes=90)),
        ("3h", timedelta(hours=3)),
        ("7d", timedelta(days=7)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 45S ", timedelta(seconds=45)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_forms(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "3", "h", "3h soon", "-3h", "3 weeks"])
def test_anything_else_says_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration \(expected e\.g\. 90m, 3h, 7d or 1h30m\)"):
        parse_duration(text)
