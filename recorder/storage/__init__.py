"""The state database: identity history, labels, health, and the outbox (SQLite)."""

from __future__ import annotations
