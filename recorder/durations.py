"""Lengths of time as people write them in flags, the environment and the configuration file.

`90m`, `3h`, `7d`, `1h30m`, `45s`, `1.5h`: whole or decimal numbers, each followed by a unit
(d, h, m, s), added up. Used by the settings (`identity_hold`, `no_report_warning`,
`stale_after`) and the simulator (`--duration`, `sim:?duration=`).
"""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> timedelta:
    """The duration `text` writes (see the module docstring). Raises ValueError saying what is
    expected."""
    cleaned = text.strip().lower()
    position = 0
    total = timedelta()
    for match in _PART.finditer(cleaned):
        if match.start() != position:
            break
        total += timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
        position = match.end()
    if not cleaned or position != len(cleaned):
        raise ValueError(f"{text!r} is not a duration (expected e.g. 90m, 3h, 7d or 1h30m)")
    return total
