"""`recorder run`: the live loop, one module per thing it owns.

- `loop`: `Ingest`, the reader loop (source -> pipeline -> memory and outbox; identity hold,
  durability, a full disk, shutdown: its module docstring is the theory of operation);
- `sender`: `Sender`, the thread that writes readings to InfluxDB (memory first, then the outbox);
- `health`: `DecodeWatch` (frames but no power report in daylight: a new format?) and `Health`,
  the values the loop hands the sender;
- `latency`: `LatencyProbe`, report arrival to InfluxDB acknowledgement.

Exports `Ingest`, `Sender`, `DecodeWatch`, `Health` and `LatencyProbe`. They are imported on
first use (PEP 562 `__getattr__`), so importing `recorder.run.latency` alone, or this package,
costs nothing heavy: the CLI imports lazily for the Raspberry Pi's start-up time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recorder.lazy import lazy_exports

if TYPE_CHECKING:
    from recorder.run.health import DecodeWatch, Health
    from recorder.run.latency import LatencyProbe
    from recorder.run.loop import Ingest
    from recorder.run.sender import Sender

__all__ = ["DecodeWatch", "Health", "Ingest", "LatencyProbe", "Sender"]

_HOMES = {
    "DecodeWatch": "recorder.run.health",
    "Health": "recorder.run.health",
    "Ingest": "recorder.run.loop",
    "LatencyProbe": "recorder.run.latency",
    "Sender": "recorder.run.sender",
}

__getattr__ = lazy_exports(__name__, _HOMES)
