"""Logging set-up: one line per record on stderr, friendly to journald.

Under systemd (JOURNAL_STREAM is set) the journal adds timestamps and we prefix the syslog
priority (`<4>`) so warnings are coloured and filterable; elsewhere we print a timestamp.
"""

from __future__ import annotations

import logging
import os
import sys

_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITIES.get(record.levelno, 6)
        return f"<{priority}>{record.name}: {super().format(record)}"


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The InfluxDB client logs every retry at WARNING with the URL; we report failures ourselves.
    logging.getLogger("influxdb_client").setLevel(logging.ERROR)
    # Alembic narrates every connection at INFO; schema upgrades are reported by us.
    logging.getLogger("alembic").setLevel(logging.WARNING)
