"""Sans-IO decoders and encoders for the Tigo TAP bus.

Layers, bottom up: `gateway.link` (bytes -> frames), `gateway.transport` (frames -> packets and
command exchanges), `pv.network` (packet headers), `pv.application` (packet bodies -> values).
`stack.Stack` composes them. Nothing here performs IO or reads the clock: time is always an
argument.
"""

from __future__ import annotations
