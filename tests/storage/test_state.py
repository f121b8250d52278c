from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from recorder.errors import ImportFormatError, UsageError
from recorder.observer import GatewayLearned, MappingLearned
from recorder.protocol.barcode import barcode_from_address, format_long_address
from recorder.storage.imports import load_import_file
from recorder.storage.state import StateStore
from recorder.timestamps import to_millis
from tests.helpers import T0

A = bytes.fromhex("04C05B4000C286CC")  # 4-C286CCZ
B = bytes.fromhex("04C05B4000C2834B")  # 4-C2834BY
GATEWAY = 0x1201


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore.open(tmp_path / "state.db")


def learned(
    node_id: int, address: bytes, hours: float, source: str = "node_table", previous: bytes | None = None
) -> MappingLearned:
    return MappingLearned(GATEWAY, node_id, address, source, T0 + timedelta(hours=hours), previous)


def test_a_change_closes_one_interval_and_opens_another(store: StateStore) -> None:
    store.record_outputs([learned(5, A, 0)])
    store.record_outputs([learned(5, B, 10, "topology_report", A)])
    history = store.history("5")
    assert [(row.barcode, row.valid_from, row.valid_to, row.source) for row in history] == [
        ("4-C286CCZ", T0, T0 + timedelta(hours=10), "node_table"),
        ("4-C2834BY", T0 + timedelta(hours=10), None, "topology_report"),
    ]
    assert store.resolve(GATEWAY, 5, T0 + timedelta(hours=9, minutes=59)) == A
    assert store.resolve(GATEWAY, 5, T0 + timedelta(hours=10)) == B
    assert store.resolve(GATEWAY, 5, T0 - timedelta(days=3)) == A  # before anything known: the first
    assert store.resolve(GATEWAY, 6, T0) is None
    assert [row.node_id for row in store.history("4-C2834BY")] == [5]


def test_the_identity_map_loaded_at_start_matches_the_history(store: StateStore) -> None:
    store.record_outputs([learned(5, A, 0), learned(0x8005, B, 10)])
    store.record_outputs([learned(5, B, 10, previous=A)])
    identities = store.identity_map()
    assert identities.resolve((GATEWAY, 5), to_millis(T0 + timedelta(hours=1))) == A
    assert identities.resolve((GATEWAY, 5), to_millis(T0 + timedelta(hours=11))) == B
    rows = {row.node_id: row for row in store.list_nodes()}
    assert rows[0x8005].is_alias and rows[5].barcode == "4-C2834BY"


def test_gateways_are_recorded_with_identity_and_version(store: StateStore) -> None:
    address = bytes.fromhex("04C05B300002BE16")
    store.record_outputs([GatewayLearned(GATEWAY, address, "Mgate Version G8.59", T0)])
    assert store.gateway_addresses() == {GATEWAY: address}
    assert store.gateway_labels() == {GATEWAY: "3-2BE16Y"}


def test_labels(store: StateStore) -> None:
    store.record_outputs([learned(5, A, 0)])
    labels = store.set_labels("4-c286ccz", name="east 3", string="A1", at=T0)
    assert (labels.name, labels.string) == ("east 3", "A1")
    assert store.labels() == {A: labels}
    assert store.list_nodes()[0].name == "east 3"
    with pytest.raises(UsageError, match="check character"):
        store.set_labels("4-C2834BZ", name="x", at=T0)


def test_labels_before_the_optimizer_is_heard_apply_once_it_is(store: StateStore) -> None:
    """Labels before sunrise: a barcode never heard can be labelled; the mapping finds the labels."""
    labels = store.set_labels("4-C286CCZ", name="east 3", string="A1", at=T0)
    assert store.labels() == {A: labels}
    assert store.list_nodes() == []  # nothing heard yet: no node to show
    store.record_outputs([learned(5, A, 60)])
    (row,) = store.list_nodes()
    assert (row.barcode, row.node_id, row.name, row.string) == ("4-C286CCZ", 5, "east 3", "A1")


def write_json(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    "table",
    [
        [{"node_id": 2, "long_address": "04:C0:5B:40:00:C2:86:CC"}, {"node_id": 3, "long_address": list(B)}],
        [[2, "04:C0:5B:40:00:C2:86:CC"], [3, "04:C0:5B:40:00:C2:83:4B"]],
        {"2": "04:C0:5B:40:00:C2:86:CC", "3": list(B)},
    ],
    ids=["entry objects", "pairs", "object"],
)
def test_taptap_persistent_state_layouts(store: StateStore, tmp_path: Path, table: object) -> None:
    path = write_json(
        tmp_path / "taptap.json",
        {
            "gateway_node_tables": {"4609": table},
            "gateway_identities": {"4609": [4, 192, 91, 48, 0, 2, 190, 22]},
            "gateway_versions": {"4609": "Mgate Version G8.59"},
        },
    )
    plan = load_import_file(path, T0)
    assert plan.layout == "taptap persistent state"
    store.import_records(plan.mappings, plan.gateways, plan.labels, T0)
    assert store.resolve(GATEWAY, 2, T0) == A and store.resolve(GATEWAY, 3, T0) == B
    assert store.gateway_labels() == {GATEWAY: "3-2BE16Y"}


def test_infrastructure_report_and_export_round_trip(store: StateStore, tmp_path: Path) -> None:
    report = {
        "event_type": "infrastructure_report",
        "gateways": {"4609": {"address": "04:C0:5B:30:00:02:BE:16", "version": "x"}},
        "nodes": {"4609": {"7": {"address": format_long_address(A), "barcode": barcode_from_address(A)}}},
    }
    plan = load_import_file(write_json(tmp_path / "report.json", report), T0)
    store.import_records(plan.mappings, plan.gateways, plan.labels, T0)
    store.set_labels("4-C286CCZ", name="roof", string="S2", at=T0)
    exported = store.export()
    other = StateStore.open(tmp_path / "other.db")
    plan = load_import_file(write_json(tmp_path / "export.json", exported), T0)
    other.import_records(plan.mappings, plan.gateways, plan.labels, T0)
    assert other.export() == exported


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"gateway_node_tables": {"4609": [[2, "04:C0:5B:nope"]]}}, "is not a long address"),
        ({"gateway_node_tables": {"99999": []}}, "is not a valid gateway ID"),
        ({"gateway_node_tables": {"4609": [[0, "04:C0:5B:40:00:C2:86:CC"]]}}, "is not a valid node ID"),
        ({"something": "else"}, "not a layout we know"),
        ([1, 2, 3], "expected a JSON object"),
        (
            {
                "event_type": "infrastructure_report",
                "nodes": {"4609": {"2": {"address": "04:C0:5B:40:00:C2:86:CC", "barcode": "4-C2834BY"}}},
            },
            "does not belong to the address",
        ),
    ],
)
def test_malformed_imports_name_the_problem_and_import_nothing(
    store: StateStore, tmp_path: Path, document: object, message: str
) -> None:
    path = tmp_path / "bad.json"
    # A valid entry before the bad one must not be imported either.
    if isinstance(document, dict) and "gateway_node_tables" in document:
        for table in document["gateway_node_tables"].values():
            table.insert(0, [5, "04:C0:5B:40:00:C2:5D:F5"])
    path.write_text(json.dumps(document))
    with pytest.raises(ImportFormatError, match=message):
        load_import_file(path, T0)
    assert store.list_nodes() == []


def test_not_json_is_reported_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"gateway_node_tables": {')
    with pytest.raises(ImportFormatError, match="invalid JSON at line 1"):
        load_import_file(path, T0)
