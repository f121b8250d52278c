"""Sans-IO decoders and encoders for the Tigo TAP bus.

Layers, bottom up: `gateway.link` (bytes -> frames), `gateway.transport` (frames -> packets and
command exchanges), `pv.network` (packet headers), `pv.application` (packet bodies -> events).
Each is a class with `feed(...) -> list` and typed counters; `stack.Stack` composes them.
Beside them: `events` (what the stack returns), `units` (a power report's units), `slots` (the
slot counter and measurement times), `barcode`, `crc`, `encode` (whole frames, for the simulator
and tests). Nothing here performs IO or reads the clock: time is always an argument.
"""

from __future__ import annotations
