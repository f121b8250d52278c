"""`recorder nodes`: the optimizers the recorder knows, by barcode, and their history.

`list`, `history` and `export` only look (read-only, see `recorder.storage.readonly`); `label`
and `import` change the state database (creating it if needed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from recorder.cli.common import (
    ConfigOption,
    DbOption,
    check_output_path,
    display_time,
    read_only_database,
    settings_for,
    utc_now,
    writable_store,
)
from recorder.cli.framework import Command, Group
from recorder.errors import UsageError

if TYPE_CHECKING:
    from recorder.storage.queries import NodeRow

app = typer.Typer(
    help="Optimizers by barcode: mappings, history, labels, import and export.",
    no_args_is_help=True,
    rich_markup_mode=None,
    cls=Group,
)

GatewayOption = typer.Option(
    None,
    "--gateway",
    help="Only this gateway: its barcode (e.g. 3-2BE16Y) or its ID (e.g. 4609).",
    metavar="GATEWAY",
)


def _label(row: NodeRow) -> str:
    return " / ".join(part for part in (row.name, row.string) if part) or "-"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [
        max(len(header), *(len(row[i]) for row in rows)) if rows else len(header)
        for i, header in enumerate(headers)
    ]
    for line in [headers, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


@app.command("list", cls=Command)
def list_nodes(
    db: Path | None = DbOption,
    config: Path | None = ConfigOption,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    gateway: str | None = GatewayOption,
    unresolved: bool = typer.Option(False, "--unresolved", help="Only nodes whose barcode is not known yet."),
) -> None:
    """Every node: resolved ones by barcode, unresolved ones with the readings waiting for them."""
    from recorder.storage import queries

    connection = read_only_database(settings_for(db, config))
    gateway_id = queries.resolve_gateway(connection, gateway) if gateway is not None else None
    rows = queries.list_nodes(connection, gateway_id=gateway_id, unresolved=unresolved)
    if as_json:
        keys = (
            "gateway_id",
            "gateway",
            "node_id",
            "long_address",
            "barcode",
            "name",
            "string",
            "source",
            "valid_from",
            "valid_to",
            "first_seen",
            "last_seen",
        )
        extra = ("is_alias", "last_report_at", "report_count", "waiting")
        print(json.dumps([{key: row.as_json()[key] for key in (*keys, *extra)} for row in rows], indent=2))
        return
    if not rows:
        print("no nodes known yet" + (" without a barcode" if unresolved else ""))
        return
    if unresolved:
        headers = ["NODE", "GATEWAY", "FIRST SEEN", "LAST REPORT", "REPORTS", "WAITING"]
        table = [
            [
                str(r.node_id),
                r.gateway,
                display_time(r.first_seen),
                display_time(r.last_report_at),
                str(r.report_count),
                str(r.waiting),
            ]
            for r in rows
        ]
    else:
        headers = ["BARCODE", "NODE", "GATEWAY", "LABEL", "SOURCE", "FIRST SEEN", "LAST SEEN", "LAST REPORT"]
        table = [
            [
                r.barcode or "(unknown)",
                f"{r.node_id}{' (alias)' if r.is_alias else ''}",
                r.gateway,
                _label(r),
                r.source or "-",
                display_time(r.first_seen),
                display_time(r.last_seen),
                display_time(r.last_report_at),
            ]
            for r in rows
        ]
    print_table(headers, table)
    waiting = sum(r.waiting for r in rows)
    resolved = sum(1 for r in rows if r.barcode)
    print(
        f"\n{len(rows)} nodes, {resolved} with a barcode"
        + (f", {waiting} readings waiting for a barcode" if waiting else "")
    )


@app.command("history", cls=Command)
def history(
    query: str = typer.Argument(
        ..., metavar="BARCODE|NODE_ID", help="A barcode (4-9A57A2L) or a node ID (116)."
    ),
    db: Path | None = DbOption,
    config: Path | None = ConfigOption,
    gateway: str | None = GatewayOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Which node ID an optimizer had when, or which optimizer a node ID meant when."""
    from recorder.storage import queries

    connection = read_only_database(settings_for(db, config))
    gateway_id = queries.resolve_gateway(connection, gateway) if gateway is not None else None
    rows = queries.history(connection, query, gateway_id=gateway_id)
    if as_json:
        print(json.dumps([row.as_json() for row in rows], indent=2))
        return
    print_table(
        ["FROM", "TO", "BARCODE", "NODE", "GATEWAY", "SOURCE"],
        [
            [
                display_time(r.valid_from),
                display_time(r.valid_to) if r.valid_to else "now",
                r.barcode or "-",
                f"{r.node_id}{' (alias)' if r.is_alias else ''}",
                r.gateway,
                r.source or "-",
            ]
            for r in rows
        ],
    )


@app.command("label", cls=Command)
def label(
    barcode: str = typer.Argument(..., help="The optimizer's barcode, e.g. 4-9A57A2L.", metavar="BARCODE"),
    db: Path | None = DbOption,
    config: Path | None = ConfigOption,
    name: str | None = typer.Option(None, "--name", help='A name of your own ("" clears it).'),
    string: str | None = typer.Option(None, "--string", help='The string it is wired in ("" clears it).'),
    note: str | None = typer.Option(None, "--note", help='Free-form note ("" clears it).'),
) -> None:
    """Give an optimizer a name and a string; both become InfluxDB tags on new points.

    The optimizer need not have been heard yet: labels given before sunrise apply once it reports.
    """
    labels = writable_store(settings_for(db, config)).set_labels(
        barcode, name=name, string=string, note=note, at=utc_now()
    )
    print(f"{barcode.upper()}: name={labels.name or '-'} string={labels.string or '-'}")


@app.command("import", cls=Command)
def import_file(
    file: Path = typer.Argument(
        ...,
        help="A `recorder nodes export` file, a taptap persistent state file or an infrastructure report.",
        metavar="FILE",
    ),
    db: Path | None = DbOption,
    config: Path | None = ConfigOption,
) -> None:
    """Load mappings you already have, so barcodes resolve before any identity traffic is heard."""
    from recorder.storage.imports import load_import_file

    now = utc_now()
    plan = load_import_file(file, now)
    store = writable_store(settings_for(db, config))
    changed, gateways = store.import_records(plan.mappings, plan.gateways, plan.labels, now)
    print(
        f"imported {file} ({plan.layout}): {len(plan.mappings)} mappings ({changed} new or changed), "
        f"{gateways} gateways, {len(plan.labels)} labelled optimizers"
    )


@app.command("export", cls=Command)
def export(
    db: Path | None = DbOption,
    config: Path | None = ConfigOption,
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write here instead of standard output.", metavar="FILE"
    ),
) -> None:
    """Everything the recorder knows about identity, as JSON that `nodes import` reads back."""
    from recorder.storage import queries

    if out is not None:
        out = check_output_path(out, "--out")
    text = json.dumps(queries.export(read_only_database(settings_for(db, config))), indent=2)
    if out is None:
        sys.stdout.write(text + "\n")
        return
    try:
        out.write_text(text + "\n", encoding="utf-8")
    except OSError as error:
        raise UsageError(f"--out: cannot write {out}: {error.strerror}") from None
    print(f"wrote {out}")
