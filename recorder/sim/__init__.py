"""A bus simulator: a whole Tigo installation as a passive listener would hear it.

`model` holds the physical array (optimizers, strings, sun, clouds, shade, temperature) and
turns a moment into the values an optimizer would measure. `bus` plays the controller and the
gateways: polling, packet numbers, status words, late/bundled/retransmitted reports, topology
reports, node tables, enumeration, strings, noise. It produces timestamped bus bytes (built
with the same encoders the decoder is tested against) and, alongside, the ground truth: every
report produced, with the exact quantised values a perfect decoder must output, and every
(gateway, node ID) -> optimizer assignment. `outputs` writes those to files, a TCP server or a
pseudo-terminal at the chosen speed; `source` makes the simulator a `sim:` source URL.
"""

from __future__ import annotations
