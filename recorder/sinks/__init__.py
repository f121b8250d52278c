"""Where readings go: InfluxDB points (pure), the InfluxDB writer, JSON lines."""

from __future__ import annotations
