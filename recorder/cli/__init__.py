"""The `recorder` command line (typer)."""

from __future__ import annotations
