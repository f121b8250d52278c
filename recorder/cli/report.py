"""`recorder report`: per-panel energy and health from the state database (read-only)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer

from recorder.cli.common import ConfigOption, DbOption, read_only_database, settings_for
from recorder.errors import UsageError


def report(
    db: Path | None = DbOption,
    config: Path | None = ConfigOption,
    day: str | None = typer.Option(
        None, "--date", help="One local day, YYYY-MM-DD (default: the latest day with energy)."
    ),
    days: int | None = typer.Option(None, "--days", help="The last N days with energy up to the latest."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per panel (a JSON list)."),
    out: Path | None = typer.Option(None, "--out", help="Also write a picture: report.png or report.html."),
    threshold: float = typer.Option(
        0.9, "--threshold", help="Underperforming below this fraction of the string's median energy."
    ),
) -> None:
    """Energy per panel, and which panels lag: underperforming, not reporting, weak radio."""
    from recorder import report_render
    from recorder.panel_health import build_report, read_only_engine

    if day is not None and days is not None:
        raise UsageError("give --date or --days, not both")
    wanted = None
    if day is not None:
        try:
            wanted = date.fromisoformat(day)
        except ValueError:
            raise UsageError(f"--date: {day!r} is not a date (expected YYYY-MM-DD)") from None
    engine = read_only_engine(read_only_database(settings_for(db, config)))
    try:
        result = build_report(engine, day=wanted, days=days, threshold=threshold)
    finally:
        engine.dispose()
    print(report_render.as_json(result) if as_json else report_render.table(result))
    if out is not None:
        report_render.write(result, out)
