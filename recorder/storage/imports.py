"""Reading mapping files users already have, for `recorder nodes import`.

Accepted layouts (detected from the content):

* our own `recorder nodes export` (`{"format": "recorder-nodes", ...}`): mappings with their
  intervals and sources, gateways, labels;
* the taptap fork's `--persistent-file` state: `{"gateway_node_tables": {GATEWAY: TABLE},
  "gateway_identities": {GATEWAY: ADDRESS}, "gateway_versions": {GATEWAY: TEXT}}` where a TABLE is
  a list of `{"node_id": N, "long_address": A}` or `[N, A]` entries (or an object `{N: A}`), and
  an ADDRESS is `"04:C0:5B:..."` or a list of eight byte values;
* taptap's `infrastructure_report` event (`{"event_type": "infrastructure_report",
  "gateways": {...}, "nodes": {GATEWAY: {NODE: {"address": A, "barcode": B}}}}`), also as the
  last such line of a JSON-lines log.

Everything is validated before anything is written; the first problem is reported with where it
is in the file, and nothing is imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from recorder.errors import ImportFormatError
from recorder.protocol.barcode import address_from_barcode, parse_long_address
from recorder.storage.state import ImportedGateway, ImportedLabels, ImportedMapping


@dataclass
class ImportPlan:
    layout: str
    mappings: list[ImportedMapping] = field(default_factory=list)
    gateways: list[ImportedGateway] = field(default_factory=list)
    labels: list[ImportedLabels] = field(default_factory=list)


def load_import_file(path: Path, at: datetime) -> ImportPlan:
    """Parse `path`; mappings without a time of their own are valid from `at`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImportFormatError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ImportFormatError(f"cannot read {path}: {error}") from None
    document = _parse_json(text, path)
    if not isinstance(document, dict):
        raise ImportFormatError(
            f"{path}: expected a JSON object at the top level, found {type(document).__name__}"
        )
    if document.get("format") == "recorder-nodes":
        return _own_export(document, path)
    if "gateway_node_tables" in document or "gateway_identities" in document:
        return _persistent_state(document, path, at)
    if document.get("event_type") == "infrastructure_report":
        return _infrastructure_report(document, path, at)
    raise ImportFormatError(
        f"{path}: not a layout we know (expected a `recorder nodes export` file, a taptap "
        "persistent state file with gateway_node_tables, or an infrastructure_report)"
    )


def _parse_json(text: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as whole_error:
        # A JSON-lines log: take its last infrastructure report.
        last = None
        for number, line in enumerate(text.splitlines(), 1):
            if '"infrastructure_report"' not in line:
                continue
            try:
                last = json.loads(line)
            except json.JSONDecodeError as error:
                raise ImportFormatError(f"{path} line {number}: invalid JSON ({error.msg})") from None
        if last is None:
            raise ImportFormatError(
                f"{path}: invalid JSON at line {whole_error.lineno} "
                f"column {whole_error.colno} ({whole_error.msg})"
            ) from None
        return last


def _address(value: Any, where: str) -> bytes:
    if isinstance(value, str):
        try:
            return parse_long_address(value)
        except ValueError:
            raise ImportFormatError(
                f"{where}: {value!r} is not a long address like 04:C0:5B:40:00:9A:57:A2"
            ) from None
    if (
        isinstance(value, list)
        and len(value) == 8
        and all(isinstance(b, int) and 0 <= b <= 255 for b in value)
    ):
        return bytes(value)
    raise ImportFormatError(f"{where}: expected a long address (text or 8 byte values), found {value!r}")


def _integer(value: Any, where: str, low: int, high: int, what: str) -> int:
    try:
        number = int(value, 0) if isinstance(value, str) else value
    except ValueError:
        number = None
    if not isinstance(number, int) or isinstance(number, bool) or not low <= number <= high:
        raise ImportFormatError(f"{where}: {value!r} is not a valid {what} ({low}-{high})")
    return number


def _gateway_id(value: Any, where: str) -> int:
    return _integer(value, where, 0, 0x7FFF, "gateway ID")


def _node_id(value: Any, where: str) -> int:
    return _integer(value, where, 1, 0xFFFF, "node ID")


def _check_barcode(address: bytes, barcode: Any, where: str) -> None:
    if barcode is None:
        return
    try:
        matches = address_from_barcode(str(barcode)) == address
    except ValueError as error:
        raise ImportFormatError(f"{where}: {error}") from None
    if not matches:
        raise ImportFormatError(f"{where}: barcode {barcode} does not belong to the address given with it")


def _time(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ImportFormatError(f"{where}: {value!r} is not an ISO-8601 time") from None
    if parsed.tzinfo is None:
        raise ImportFormatError(f"{where}: {value!r} has no UTC offset")
    return parsed


def _own_export(document: dict[str, Any], path: Path) -> ImportPlan:
    plan = ImportPlan("recorder export")
    for index, entry in enumerate(document.get("mappings", [])):
        where = f"{path}: mappings[{index}]"
        if not isinstance(entry, dict):
            raise ImportFormatError(f"{where}: expected an object")
        address = _address(entry.get("long_address"), where)
        _check_barcode(address, entry.get("barcode"), where)
        valid_from = _time(entry.get("valid_from"), where)
        if valid_from is None:
            raise ImportFormatError(f"{where}: valid_from is missing")
        plan.mappings.append(
            ImportedMapping(
                gateway_id=_gateway_id(entry.get("gateway_id"), where),
                node_id=_node_id(entry.get("node_id"), where),
                long_address=address,
                valid_from=valid_from,
                valid_to=_time(entry.get("valid_to"), where),
                source=str(entry.get("source") or "import"),
            )
        )
    for index, entry in enumerate(document.get("gateways", [])):
        where = f"{path}: gateways[{index}]"
        gateway_address = _address(entry["long_address"], where) if entry.get("long_address") else None
        plan.gateways.append(
            ImportedGateway(
                _gateway_id(entry.get("gateway_id"), where), gateway_address, entry.get("version")
            )
        )
    for index, entry in enumerate(document.get("optimizers", [])):
        where = f"{path}: optimizers[{index}]"
        if entry.get("name") or entry.get("string") or entry.get("note"):
            address = _address(entry.get("long_address"), where)
            _check_barcode(address, entry.get("barcode"), where)
            plan.labels.append(
                ImportedLabels(address, entry.get("name"), entry.get("string"), entry.get("note"))
            )
    return plan


def _table_entries(table: Any, where: str) -> list[tuple[Any, Any]]:
    if isinstance(table, dict):
        return list(table.items())
    if not isinstance(table, list):
        raise ImportFormatError(f"{where}: expected a list of node entries")
    entries = []
    for index, entry in enumerate(table):
        if isinstance(entry, dict) and "node_id" in entry:
            entries.append((entry["node_id"], entry.get("long_address", entry.get("address"))))
        elif isinstance(entry, list) and len(entry) == 2:
            entries.append((entry[0], entry[1]))
        else:
            raise ImportFormatError(
                f"{where}[{index}]: expected {{node_id, long_address}} or [node_id, address]"
            )
    return entries


def _persistent_state(document: dict[str, Any], path: Path, at: datetime) -> ImportPlan:
    plan = ImportPlan("taptap persistent state")
    tables = document.get("gateway_node_tables") or {}
    if not isinstance(tables, dict):
        raise ImportFormatError(f"{path}: gateway_node_tables must be an object keyed by gateway ID")
    for gateway_key, table in tables.items():
        gateway_id = _gateway_id(gateway_key, f"{path}: gateway_node_tables key")
        where = f"{path}: gateway_node_tables[{gateway_key}]"
        for node_key, address in _table_entries(table, where):
            plan.mappings.append(
                ImportedMapping(
                    gateway_id, _node_id(node_key, where), _address(address, f"{where} node {node_key}"), at
                )
            )
    identities = document.get("gateway_identities") or {}
    versions = document.get("gateway_versions") or {}
    for gateway_key in sorted(set(identities) | set(versions)):
        where = f"{path}: gateway_identities[{gateway_key}]"
        address = _address(identities[gateway_key], where) if gateway_key in identities else None
        plan.gateways.append(
            ImportedGateway(_gateway_id(gateway_key, where), address, versions.get(gateway_key))
        )
    if not plan.mappings and not plan.gateways:
        raise ImportFormatError(f"{path}: the persistent state holds no node tables or gateway identities")
    return plan


def _infrastructure_report(document: dict[str, Any], path: Path, at: datetime) -> ImportPlan:
    from recorder.backfill.taptap_json import infrastructure_report  # the one reader of this shape

    try:
        report = infrastructure_report(document)
    except ValueError as error:
        raise ImportFormatError(f"{path}: {error}") from None
    plan = ImportPlan("taptap infrastructure report")
    plan.gateways = [
        ImportedGateway(gateway, address, version) for gateway, address, version in report.gateways
    ]
    plan.mappings = [ImportedMapping(gateway, node, address, at) for gateway, node, address in report.nodes]
    return plan
