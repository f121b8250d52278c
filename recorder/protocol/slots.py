"""Slot counters, and the per-gateway clock that turns them into wall-clock measurement times.

Theory of operation
-------------------
Each gateway runs a slot counter shared with its optimizers (reference: "PV link layer / Slot
counter"). A slot lasts nominally 5 ms (±1 %, the gateway's oscillator). The 16-bit value is not
contiguous: the top two bits count *epochs*, the low 14 bits count slots 0..11999 within the
epoch. So one epoch is ~60 s, and the counter repeats every 4 × 12000 = 48000 slots (~240 s).
Values whose low 14 bits are 12000 or more never occur; we treat them as invalid.

We flatten a counter into an *index* `epoch × 12000 + slot` in [0, 48000) so that differences are
plain modular arithmetic.

The receive response that carries a power report also carries the gateway's slot counter as it
was when the gateway answered that poll. `SlotClock` remembers the latest such observation
(counter, receive time) and maps a report's counter to the time `receive time − elapsed slots ×
5 ms`, where elapsed slots is the modular distance back from the observation. Two consequences,
both deliberate:

* The result depends only on the response the report arrived in and the time it was received,
  never on earlier history. Replaying the same bytes with the same timestamps (backfill from the
  run archive) therefore reproduces the same timestamps exactly, which is what makes InfluxDB
  writes idempotent across `run` and `backfill`.
* The error is the oscillator tolerance times the delivery delay: ±1 % of a 30 s delay is 0.3 s.

Reports cannot be more than one counter cycle (~240 s) old and still be placed; a report that
appears to be slightly *ahead* of the observation (up to `FUTURE_TOLERANCE_SLOTS`) is placed
after it rather than ~4 minutes earlier.
"""

from __future__ import annotations

from datetime import datetime, timedelta

SLOTS_PER_EPOCH = 12000
EPOCHS = 4
SLOT_CYCLE = SLOTS_PER_EPOCH * EPOCHS  # 48000 slots, ~240 s
NOMINAL_SLOT_SECONDS = 0.005
FUTURE_TOLERANCE_SLOTS = 2000  # 10 s


def is_valid_slot_counter(slot_counter: int) -> bool:
    return 0 <= slot_counter <= 0xFFFF and (slot_counter & 0x3FFF) < SLOTS_PER_EPOCH


def slot_index(slot_counter: int) -> int:
    """Position of a counter value in the 48000-slot cycle. Raises ValueError if invalid."""
    slot_number = slot_counter & 0x3FFF
    if slot_number >= SLOTS_PER_EPOCH or not 0 <= slot_counter <= 0xFFFF:
        raise ValueError(f"invalid slot counter 0x{slot_counter:04X}")
    return (slot_counter >> 14) * SLOTS_PER_EPOCH + slot_number


def slot_counter_from_index(index: int) -> int:
    """Inverse of `slot_index`; `index` is taken modulo the cycle."""
    index %= SLOT_CYCLE
    return ((index // SLOTS_PER_EPOCH) << 14) | (index % SLOTS_PER_EPOCH)


def add_slots(slot_counter: int, slots: int) -> int:
    return slot_counter_from_index(slot_index(slot_counter) + slots)


def slots_since(earlier: int, later: int) -> int:
    """How many slots after `earlier` `later` is, in [0, 48000)."""
    return (slot_index(later) - slot_index(earlier)) % SLOT_CYCLE


class SlotClock:
    """Maps one gateway's slot counter values to wall-clock time (see module docstring)."""

    __slots__ = ("_observed_at", "_observed_index")

    def __init__(self) -> None:
        self._observed_index: int | None = None
        self._observed_at: datetime | None = None

    def observe(self, slot_counter: int, received_at: datetime) -> bool:
        """Record that the gateway's counter read `slot_counter` at `received_at`."""
        if not is_valid_slot_counter(slot_counter):
            return False
        self._observed_index = slot_index(slot_counter)
        self._observed_at = received_at
        return True

    @property
    def is_synchronised(self) -> bool:
        return self._observed_at is not None

    def time_of(self, slot_counter: int) -> datetime | None:
        """When the gateway's counter last read `slot_counter`; None if unknown or invalid."""
        if self._observed_at is None or self._observed_index is None:
            return None
        if not is_valid_slot_counter(slot_counter):
            return None
        elapsed = (self._observed_index - slot_index(slot_counter)) % SLOT_CYCLE
        if elapsed > SLOT_CYCLE - FUTURE_TOLERANCE_SLOTS:
            elapsed -= SLOT_CYCLE
        # Whole milliseconds keep the result exact and reproducible (5 ms per slot).
        return self._observed_at - timedelta(milliseconds=5 * elapsed)
