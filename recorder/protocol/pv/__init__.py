"""The wireless PV network as seen through the gateway: packet headers and application bodies."""

from __future__ import annotations
