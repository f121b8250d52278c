"""`recorder nodes`: the optimizers the recorder knows, by barcode, and their history."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from recorder.cli.common import DbOption, database_path, display_time, utc_now
from recorder.storage.imports import load_import_file
from recorder.storage.state import NodeRow, StateStore

app = typer.Typer(
    help="Optimizers by barcode: mappings, history, labels, import and export.", no_args_is_help=True
)


def open_store(db: Path | None) -> StateStore:
    path, is_default = database_path(db)
    return StateStore.open(path, create_directory=is_default)


def _gateway(row: NodeRow) -> str:
    return row.gateway_barcode or str(row.gateway_id)


def _label(row: NodeRow) -> str:
    return " / ".join(part for part in (row.name, row.string) if part) or "-"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [
        max(len(header), *(len(row[i]) for row in rows)) if rows else len(header)
        for i, header in enumerate(headers)
    ]
    for line in [headers, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


@app.command("list")
def list_nodes(
    db: Path | None = DbOption,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    gateway: int | None = typer.Option(None, "--gateway", help="Only this gateway ID (e.g. 4609)."),
    unresolved: bool = typer.Option(False, "--unresolved", help="Only nodes whose barcode is not known yet."),
) -> None:
    """Every node: resolved ones by barcode, unresolved ones with the readings waiting for them."""
    store = open_store(db)
    rows = store.list_nodes(gateway_id=gateway, unresolved=unresolved)
    if as_json:
        keys = (
            "gateway_id",
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
                _gateway(r),
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
                _gateway(r),
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


@app.command("history")
def history(
    query: str = typer.Argument(
        ..., metavar="BARCODE|NODE_ID", help="A barcode (4-9A57A2L) or a node ID (116)."
    ),
    db: Path | None = DbOption,
    gateway: int | None = typer.Option(None, "--gateway", help="Only this gateway ID."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Which node ID an optimizer had when, or which optimizer a node ID meant when."""
    rows = open_store(db).history(query, gateway_id=gateway)
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
                str(r.gateway_id),
                r.source or "-",
            ]
            for r in rows
        ],
    )


@app.command("label")
def label(
    barcode: str = typer.Argument(..., help="The optimizer's barcode, e.g. 4-9A57A2L."),
    db: Path | None = DbOption,
    name: str | None = typer.Option(None, "--name", help='A name of your own ("" clears it).'),
    string: str | None = typer.Option(None, "--string", help='The string it is wired in ("" clears it).'),
    note: str | None = typer.Option(None, "--note", help='Free-form note ("" clears it).'),
) -> None:
    """Give an optimizer a name and a string; both become InfluxDB tags on new points."""
    labels = open_store(db).set_labels(barcode, name=name, string=string, note=note)
    print(f"{barcode.upper()}: name={labels.name or '-'} string={labels.string or '-'}")


@app.command("import")
def import_file(
    file: Path = typer.Argument(
        ...,
        help="A `recorder nodes export` file, a taptap persistent state file or an infrastructure report.",
    ),
    db: Path | None = DbOption,
) -> None:
    """Load mappings you already have, so barcodes resolve before any identity traffic is heard."""
    now = utc_now()
    plan = load_import_file(file, now)
    changed, gateways = open_store(db).import_records(plan.mappings, plan.gateways, plan.labels, now)
    print(
        f"imported {file} ({plan.layout}): {len(plan.mappings)} mappings ({changed} new or changed), "
        f"{gateways} gateways, {len(plan.labels)} labelled optimizers"
    )


@app.command("export")
def export(
    db: Path | None = DbOption,
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here instead of standard output."),
) -> None:
    """Everything the recorder knows about identity, as JSON that `nodes import` reads back."""
    text = json.dumps(open_store(db).export(), indent=2)
    if out is None:
        sys.stdout.write(text + "\n")
    else:
        out.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {out}")
