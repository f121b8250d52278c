from __future__ import annotations

import json
from pathlib import Path

import pytest

from recorder import __version__
from recorder.capture import write_capture
from recorder.protocol import encode
from recorder.protocol.pv import application as app
from tests.conftest import run_recorder
from tests.helpers import T0
from tests.protocol import reference_frames as ref

POWER_KEYS = {
    "type",
    "gateway_id",
    "node_id",
    "barcode",
    "measured_at",
    "received_at",
    "slot_counter",
    "voltage_in",
    "voltage_out",
    "current_in",
    "current_out",
    "power",
    "duty_cycle",
    "temperature",
    "rssi",
}


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    """Enumeration, a node table naming node 116, then a power report from node 116."""
    address = bytes.fromhex("04C05B4000 9A57A2".replace(" ", ""))
    table = app.encode_node_table_response(116, [app.NodeTableEntry(address, 116)])
    data = (
        b"".join(ref.ENUMERATION_SEQUENCE)
        + encode.command_request(0x1201, app.NODE_TABLE_REQUEST, 1, b"\x00\x00")
        + encode.command_response(0x1201, app.NODE_TABLE_RESPONSE, 1, table)
        + encode.command_request(0x1201, app.NODE_TABLE_REQUEST, 2, b"\x00\x75")
        + encode.command_response(
            0x1201, app.NODE_TABLE_RESPONSE, 2, app.encode_node_table_response(0x75, [])
        )
        + encode.receive_request(0x1201, 0x10)
        + encode.receive_response(
            0x1201, 0x00FE, 0x10, 0xE000, [encode.packet(app.POWER_REPORT, 116, ref.POWER_REPORT_15)]
        )
        + b"\x13\x37 noise"
    )
    path = tmp_path / "sample.cap.gz"
    write_capture(path, [(data, T0)])
    return path


def test_observe_prints_the_documented_json_lines(capture: Path) -> None:
    lines = [
        json.loads(line)
        for line in run_recorder("observe", "--source", f"capture:{capture}").stdout.splitlines()
    ]
    kinds = [line["type"] for line in lines]
    assert kinds[-1] == "counters" and "gateway_identity" in kinds and "gateway_version" in kinds
    table = next(line for line in lines if line["type"] == "node_table")
    assert table["nodes"] == [
        {"node_id": 116, "long_address": "04:C0:5B:40:00:9A:57:A2", "barcode": "4-9A57A2L"}
    ]
    report = next(line for line in lines if line["type"] == "power_report")
    assert set(report) == POWER_KEYS
    assert (report["gateway_id"], report["node_id"], report["barcode"]) == (4609, 116, "4-9A57A2L")
    assert (report["voltage_in"], report["current_in"], report["temperature"], report["rssi"]) == (
        45.25,
        6.165,
        23.0,
        178,
    )
    assert report["measured_at"].endswith("+00:00") and report["slot_counter"] == 0xDF40
    counters = lines[-1]
    assert counters["power_reports"] == 1 and counters["noise_bytes"] > 0 and counters["checksum_errors"] == 0


def test_peek_levels(capture: Path) -> None:
    hexdump = run_recorder("peek", "bytes", "--source", f"capture:{capture}").stdout
    assert "00 ff ff 7e 07 12 01 0b 00" in hexdump
    frames = run_recorder("peek", "frames", "-s", f"capture:{capture}").stdout
    assert "-> gateway 4609 ping request" in frames and "gateway -> 4661 enumeration response" in frames
    activity = run_recorder("peek", "activity", "-s", f"capture:{capture}").stdout
    assert "power report gateway 4609 node 116: Vin 45.25 V" in activity
    assert "=> reading 4-9A57A2L" in activity
    limited = run_recorder("peek", "frames", "-s", f"capture:{capture}", "--limit", "3").stdout
    assert len(limited.splitlines()) == 3


def test_peek_activity_shows_addresses_as_barcodes_and_texts_as_text(capture: Path) -> None:
    activity = run_recorder("peek", "activity", "-s", f"capture:{capture}").stdout
    assigned = next(line for line in activity.splitlines() if "GatewayIdAssigned" in line)
    assert "long_address=04:C0:5B:30:00:02:BE:16 (3-2BE16Y)" in assigned and "new_gateway_id=4609" in assigned
    assert "enumeration response: 04:C0:5B:30:00:02:BE:16 (3-2BE16Y)" in activity
    assert 'runs "Mgate Version G8.59 Jul 6 2020 16:51:51 GW-H158.4.3S0.12"' in activity
    assert 'version "Mgate Version G8.59 Jul 6 2020 16:51:51 GW-H158.4.3S0.12"' in activity
    for python_repr in ("b'", 'b"', "\\x", "\\r"):
        assert python_repr not in activity, python_repr


def test_version_and_help() -> None:
    assert run_recorder("--version").stdout.strip() == f"recorder {__version__}"
    help_text = run_recorder("--help").stdout
    for command in ("observe", "peek", "simulate", "list-serial-ports"):
        assert command in help_text
    assert run_recorder("list-serial-ports").returncode == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ("observe", "--source", "capture:/no/such/file.cap.gz"),
            "capture file /no/such/file.cap.gz does not exist",
        ),
        (("observe", "--source", "nonsense"), "unknown source 'nonsense'"),
        (("observe", "--source", "/dev/ttyNOPE7"), "serial port /dev/ttyNOPE7 does not exist"),
        (("observe", "--source", "tcp://host:notaport"), "port must be a number"),
        (("peek", "sideways", "--source", "raw:/etc/hostname"), "'sideways' is not one of"),
        (("observe",), "Missing option '--source'"),
    ],
)
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(arguments: tuple[str, ...], message: str) -> None:
    completed = run_recorder(*arguments, check=False)
    assert completed.returncode == 2
    assert message in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1
    assert "Traceback" not in completed.stderr


def test_unreadable_capture_names_the_file(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("definitely not a capture")
    completed = run_recorder("observe", "--source", f"capture:{bogus}", check=False)
    assert completed.returncode == 2
    assert f"{bogus}: not a capture file" in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1


def test_refused_tcp_connection_fails_fast_for_diagnostics() -> None:
    completed = run_recorder("observe", "--source", "tcp://127.0.0.1:1", check=False, timeout=30)
    assert completed.returncode == 2 and "cannot connect to tcp 127.0.0.1:1" in completed.stderr
