"""Instants as integer milliseconds since the Unix epoch: how capture records, the state database
and InfluxDB points all carry time.

Both conversions are `timedelta` arithmetic: exact (no float on the way) and done in C, which
matters because a backfill converts millions. A naive datetime is refused, never guessed at.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def to_millis(at: datetime) -> int:
    """Milliseconds since the epoch, rounded down (a capture record's precision)."""
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at.isoformat()}: times must be timezone-aware")
    return (at - _EPOCH) // _MILLISECOND


def from_millis(milliseconds: int) -> datetime:
    """The UTC instant; timedelta's fourth argument is milliseconds."""
    return _EPOCH + timedelta(0, 0, 0, milliseconds)
