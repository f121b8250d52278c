"""The wired gateway network: link framing and the transport on top of it."""

from __future__ import annotations
