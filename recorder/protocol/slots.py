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
was when the gateway answered that poll. `measured_ms` places a report at `receive time −
elapsed slots × 5 ms`, where elapsed slots is the modular distance back from the response's
counter to the report's. Consequences, all deliberate:

* The result depends only on the response the report arrived in and the time it was received,
  never on earlier history. Replaying the same bytes with the same timestamps (backfill from the
  run archive) therefore reproduces the same timestamps exactly, however the replay starts,
  which is what makes InfluxDB writes idempotent across `run` and `backfill`.
* A response whose own counter is impossible (low 14 bits 12000 or more) places nothing: its
  reports are not placed and the caller counts them (`unplaced_reports`). Placing them against
  an earlier response's counter instead would be wrong by however long ago that response came
  (we measured a report placed 58.7 s before it was received that way), and extrapolating from
  it would make the result depend on history.
* The error is the oscillator tolerance times the delivery delay: ±1 % of a 30 s delay is 0.3 s.
* Times are whole milliseconds (5 per slot): exact, reproducible integer arithmetic.

Reports cannot be more than one counter cycle (~240 s) old and still be placed; a report that
appears to be slightly *ahead* of the response's counter (up to `FUTURE_TOLERANCE_SLOTS`) is
placed after it rather than ~4 minutes earlier. So a report is measured no earlier than
`PLACEMENT_HORIZON_MS` before it was received (what bounds the de-duplication memory).
"""

from __future__ import annotations

SLOTS_PER_EPOCH = 12000
EPOCHS = 4
SLOT_CYCLE = SLOTS_PER_EPOCH * EPOCHS  # 48000 slots, ~240 s
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


MILLISECONDS_PER_SLOT = 5  # nominal: the gateway's oscillator is within about 1 %
# The furthest back from its receive time that a report can be placed.
PLACEMENT_HORIZON_MS = (SLOT_CYCLE - FUTURE_TOLERANCE_SLOTS) * MILLISECONDS_PER_SLOT


def measured_ms(received_ms: int, gateway_slot_counter: int, slot_counter: int) -> int | None:
    """When a report with counter `slot_counter` was measured, in epoch milliseconds, given the
    counter of the receive response that carried it and that response's receive time; None if
    the response's counter is impossible (see the module docstring). `slot_counter` is a valid
    report's (the PV application layer drops reports whose own counter is impossible)."""
    gateway_number = gateway_slot_counter & 0x3FFF
    if gateway_number >= SLOTS_PER_EPOCH:
        return None
    elapsed = (
        (gateway_slot_counter >> 14) * SLOTS_PER_EPOCH
        + gateway_number
        - (slot_counter >> 14) * SLOTS_PER_EPOCH
        - (slot_counter & 0x3FFF)
    ) % SLOT_CYCLE
    if elapsed > SLOT_CYCLE - FUTURE_TOLERANCE_SLOTS:
        elapsed -= SLOT_CYCLE  # slightly ahead of the response, not a whole cycle back
    return received_ms - MILLISECONDS_PER_SLOT * elapsed
