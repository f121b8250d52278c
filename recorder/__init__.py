"""The recorder: a passive listener for the Tigo TAP RS-485 bus that records optimizer data."""

from __future__ import annotations

__version__ = "0.1.0"
