"""/metrics, /api/status and / from a real server on loopback, fed by a real latest-reading view."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from recorder.config import load_settings
from recorder.identity import IdentityMap
from recorder.live.address import HttpAddress
from recorder.live.latest import LatestReadings
from recorder.live.server import MAX_CLIENTS, LiveServer, start_live_face
from recorder.live.snapshot import LiveData
from recorder.protocol.barcode import barcode_from_address
from recorder.storage.state import Labels
from tests.chromium import dump_dom
from tests.live.helpers import GATEWAY, T0, FakeMonotonic, TileParser, address, reading

HEALTH: dict[str, Any] = {
    "bytes": 123456,
    "frames": 2345,
    "checksum_errors": 3,
    "noise_bytes": 17,
    "power_reports": 400,
    "readings": 398,
    "points_written": 390,
    "write_errors": 2,
    "outbox_ready": 8,
    "outbox_held": 5,
    "points_parked": 1,
    "unresolved_nodes": 1,
    "source_connected": True,
    "decode_stalled": False,
    "influx_reachable": True,
    "latency_p50_ms": 40,
    "latency_p99_ms": 1200,
    "source": "tcp://192.168.1.50:7160",
    "source_state": "connected",
    "last_data_at": (T0 + timedelta(seconds=100)).isoformat(),
    "influx_url": "http://localhost:8086",
    "influx_bucket": "tigo",
}


def array(clock: FakeMonotonic) -> LatestReadings:
    """Four optimizers: two fresh with labels, one stale, one waiting for its barcode, one
    whose hold expired (written without a barcode)."""
    latest = LatestReadings(timedelta(minutes=10), monotonic=clock)
    latest.observe(
        [
            reading(2, 90, long_address=address(2), current_in_raw=1800),  # 292.5 W
            reading(3, 95, long_address=address(3), current_in_raw=900),  # 146.25 W
            reading(4, -900, long_address=address(4)),  # 16.7 min before "now": stale
            reading(5, 80),  # held
            reading(6, 85),  # hold expired
        ],
        T0 + timedelta(seconds=100),
    )
    latest.identify(IdentityMap(), hold_expired={(GATEWAY, 6)})
    return latest


@pytest.fixture
def face() -> Iterator[tuple[LiveServer, LiveData]]:
    clock = FakeMonotonic()
    labels = {address(2): Labels("east 1", "A"), address(3): Labels("east 2", "A")}
    data = LiveData(array(clock), health=lambda: HEALTH, labels=lambda: labels, monotonic=clock)
    server = start_live_face(HttpAddress("127.0.0.1", 0), data, "9.9.9")
    assert server is not None
    try:
        yield server, data
    finally:
        server.stop()


def get(server: LiveServer, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels_of(node_id: int, barcode: str, string: str = "", name: str = "") -> tuple[tuple[str, str], ...]:
    """Prometheus labels: `string` and `name` only when the optimizer is labelled."""
    labels = {"barcode": barcode, "gateway": str(GATEWAY), "node_id": str(node_id)}
    labels.update({key: value for key, value in (("string", string), ("name", name)) if value})
    return tuple(sorted(labels.items()))


def test_metrics_show_published_optimizers_leave_out_stale_values_and_carry_health(
    face: tuple[LiveServer, LiveData],
) -> None:
    server, _ = face
    status, headers, body = get(server, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    values = samples(body.decode())
    two = labels_of(2, barcode_from_address(address(2)) or "", "A", "east 1")
    four = labels_of(4, barcode_from_address(address(4)) or "")
    six = labels_of(6, "")
    assert values[("tigo_optimizer_power_watts", two)] == 292.5
    assert values[("tigo_optimizer_voltage_in_volts", two)] == 32.5
    assert values[("tigo_optimizer_voltage_out_volts", two)] == 32.5
    assert values[("tigo_optimizer_current_in_amperes", two)] == 9.0
    assert values[("tigo_optimizer_current_out_amperes", two)] == 9.0
    assert values[("tigo_optimizer_temperature_celsius", two)] == 55.3
    assert values[("tigo_optimizer_duty_cycle_ratio", two)] == 1.0
    assert values[("tigo_optimizer_rssi", two)] == 180
    assert (
        values[("tigo_optimizer_last_report_timestamp_seconds", two)]
        == (T0 + timedelta(seconds=90)).timestamp()
    )
    # Stale: the timestamp stays, the values go.
    assert ("tigo_optimizer_last_report_timestamp_seconds", four) in values
    assert ("tigo_optimizer_power_watts", four) not in values
    # Hold expired: there, with an empty barcode. Still held (node 5): absent altogether.
    assert values[("tigo_optimizer_power_watts", six)] == 292.5
    assert not any(dict(labels).get("node_id") == "5" for _, labels in values)
    power = [labels for name, labels in values if name == "tigo_optimizer_power_watts"]
    assert len(power) == 3
    # Health: counters with _total, gauges without.
    assert values[("tigo_recorder_bytes_total", ())] == 123456
    assert values[("tigo_recorder_checksum_errors_total", ())] == 3
    assert values[("tigo_recorder_points_written_total", ())] == 390
    assert values[("tigo_recorder_write_errors_total", ())] == 2
    assert values[("tigo_recorder_outbox_ready", ())] == 8
    assert values[("tigo_recorder_outbox_held", ())] == 5
    assert values[("tigo_recorder_outbox_parked", ())] == 1
    assert values[("tigo_recorder_unresolved_nodes", ())] == 1
    assert values[("tigo_recorder_source_connected", ())] == 1
    assert values[("tigo_recorder_decode_stalled", ())] == 0
    assert values[("tigo_recorder_influxdb_up", ())] == 1
    assert (
        values[("tigo_recorder_last_data_timestamp_seconds", ())] == (T0 + timedelta(seconds=100)).timestamp()
    )
    assert values[("tigo_recorder_report_latency_seconds", (("quantile", "0.99"),))] == 1.2


def test_metrics_answer_the_classic_text_format_even_when_openmetrics_is_offered(
    face: tuple[LiveServer, LiveData],
) -> None:
    server, _ = face
    prometheus_accept = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
        "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    status, headers, body = get(server, "/metrics", Accept=prometheus_accept)
    assert status == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# EOF" not in body and b"tigo_recorder_frames_total 2345.0" in body


def test_status_document_groups_by_string_and_marks_stale_and_unresolved(
    face: tuple[LiveServer, LiveData],
) -> None:
    server, _ = face
    status, headers, body = get(server, "/api/status")
    assert status == 200 and headers["Content-Type"] == "application/json"
    document = json.loads(body)
    assert document["now"] == (T0 + timedelta(seconds=100)).isoformat()
    assert document["stale_after_seconds"] == 600
    groups = [
        (group["name"], group["gateway"], [o["node_id"] for o in group["optimizers"]])
        for group in document["strings"]
    ]
    assert groups == [("A", None, [2, 3]), (None, GATEWAY, [4, 5, 6])]
    string_a = document["strings"][0]
    assert string_a["power"] == 438.8 and string_a["best_power"] == 292.5
    first, second = string_a["optimizers"]
    assert first["name"] == "east 1" and first["relative_power"] == 1.0 and first["identity"] == "resolved"
    assert second["relative_power"] == 0.5 and second["age_seconds"] == 5.0
    by_node = {o["node_id"]: o for group in document["strings"] for o in group["optimizers"]}
    assert by_node[4]["stale"] is True and by_node[4]["relative_power"] is None
    assert by_node[5]["identity"] == "held" and by_node[5]["barcode"] is None
    assert by_node[6]["identity"] == "unresolved"
    assert document["totals"] == {
        "optimizers": 5,
        "reporting": 4,
        "stale": 1,
        "held": 1,
        "unresolved": 1,
        "power": 1023.8,
    }
    recorder = document["recorder"]
    assert recorder["version"] == "9.9.9" and recorder["source_state"] == "connected"
    assert recorder["last_data_age_seconds"] == 0.0
    assert recorder["influxdb"] == {
        "url": "http://localhost:8086",
        "bucket": "tigo",
        "reachable": True,
        "points_written": 390,
        "write_errors": 2,
        "last_error": None,
    }
    assert recorder["outbox"] == {"ready": 8, "held": 5, "parked": 1}
    assert recorder["latency_ms"] == {"p50": 40, "p99": 1200}


def test_the_page_is_self_contained_and_locked_down(face: tuple[LiveServer, LiveData]) -> None:
    server, _ = face
    status, headers, body = get(server, "/")
    page = body.decode()
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert "/api/status" in page and "<script>" in page
    # Nothing loaded from elsewhere: no external scripts, styles, fonts or images.
    assert "http://" not in page and "https://" not in page and "<script src" not in page
    policy = headers["Content-Security-Policy"]
    assert (
        "default-src 'none'" in policy and "script-src 'sha256-" in policy and "connect-src 'self'" in policy
    )
    assert headers["Cache-Control"] == "no-store" and headers["X-Content-Type-Options"] == "nosniff"


def test_read_only_unknown_paths_and_head(face: tuple[LiveServer, LiveData]) -> None:
    server, _ = face
    assert get(server, "/nothing-here")[0] == 404
    assert get(server, "/api/status?x=1")[0] == 200
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics", method="HEAD")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and response.read() == b""
        assert int(response.headers["Content-Length"]) > 1000
    for method in ("POST", "PUT", "DELETE"):
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}/", data=b"x", method=method)
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=10)
        assert error.value.code == 405 and error.value.headers["Allow"] == "GET, HEAD"


def test_health_and_labels_are_read_at_most_so_often() -> None:
    clock = FakeMonotonic()
    calls = {"health": 0, "labels": 0}

    def health() -> dict[str, Any]:
        calls["health"] += 1
        return HEALTH

    def labels() -> dict[bytes, Labels]:
        calls["labels"] += 1
        return {}

    data = LiveData(array(clock), health=health, labels=labels, monotonic=clock)
    for _ in range(10):
        data.snapshot()
    assert calls == {"health": 1, "labels": 1}
    clock.now += 1.0
    data.snapshot()
    assert calls == {"health": 2, "labels": 1}
    clock.now += 30.0
    data.snapshot()
    assert calls == {"health": 3, "labels": 2}


def test_a_failing_health_read_keeps_the_last_values(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeMonotonic()
    answers: list[Any] = [HEALTH, RuntimeError("database is locked")]

    def health() -> dict[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)

    data = LiveData(array(clock), health=health, labels=dict, monotonic=clock)
    assert data.snapshot().health["frames"] == 2345
    clock.now += 2
    with caplog.at_level(logging.WARNING):
        assert data.snapshot().health["frames"] == 2345
    assert "could not read the health (database is locked)" in caplog.text


def test_no_secret_on_any_endpoint() -> None:
    load_settings({"influx_token": "admin:hunter2-secret"}, environ={})  # registers the secret
    clock = FakeMonotonic()
    health = {
        **HEALTH,
        "influx_url": "http://admin:hunter2-secret@db.example:8086/?token=querysecret",
        "last_write_error": "401 from http://db.example:8086 with token admin:hunter2-secret",
        "influx_reachable": False,
    }
    data = LiveData(array(clock), health=lambda: health, labels=dict, monotonic=clock)
    server = start_live_face(HttpAddress("127.0.0.1", 0), data, "1")
    assert server is not None
    try:
        bodies = [get(server, path)[2].decode() for path in ("/", "/metrics", "/api/status")]
    finally:
        server.stop()
    for body in bodies:
        assert "hunter2" not in body and "querysecret" not in body and "admin" not in body
    document = json.loads(bodies[2])
    assert document["recorder"]["influxdb"]["url"] == "http://db.example:8086/"
    assert document["recorder"]["influxdb"]["last_error"] == "401 from http://db.example:8086 with token ***"
    assert document["recorder"]["influxdb"]["reachable"] is False


def test_a_port_in_use_is_one_clear_line_and_no_server(caplog: pytest.LogCaptureFixture) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    clock = FakeMonotonic()
    data = LiveData(array(clock), health=dict, labels=dict, monotonic=clock)
    try:
        with caplog.at_level(logging.INFO):
            assert start_live_face(HttpAddress("127.0.0.1", port), data, "1") is None
    finally:
        taken.close()
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and "\n" not in record.getMessage()
    assert (
        f"127.0.0.1:{port}: the port is already in use; recording continues without them"
        in record.getMessage()
    )


def test_an_address_this_machine_does_not_have(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeMonotonic()
    data = LiveData(array(clock), health=dict, labels=dict, monotonic=clock)
    with caplog.at_level(logging.ERROR):
        assert start_live_face(HttpAddress("192.0.2.1", 0), data, "1") is None  # TEST-NET-1
    assert "this machine has no such address" in caplog.text


def test_every_interface_is_said_to_be_reachable_from_the_network(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeMonotonic()
    data = LiveData(array(clock), health=dict, labels=dict, monotonic=clock)
    with caplog.at_level(logging.INFO):
        server = start_live_face(HttpAddress("", 0), data, "1")  # ":0", as a user's ":9595"
    assert server is not None
    try:
        assert get(server, "/metrics")[0] == 200  # over loopback
    finally:
        server.stop()
    assert "reachable from the network" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        server = start_live_face(HttpAddress("::1", 0), data, "1")
    assert server is not None
    server.stop()
    assert "status page on http://[::1]:" in caplog.text and "reachable from the network" not in caplog.text


def test_an_empty_view_before_the_first_reading() -> None:
    data = LiveData(LatestReadings(timedelta(minutes=10)), health=lambda: HEALTH, labels=dict)
    server = start_live_face(HttpAddress("127.0.0.1", 0), data, "1")
    assert server is not None
    try:
        document = json.loads(get(server, "/api/status")[2])
        metrics = samples(get(server, "/metrics")[2].decode())
    finally:
        server.stop()
    assert document["now"] is None and document["strings"] == []
    assert document["totals"] == {
        "optimizers": 0,
        "reporting": 0,
        "stale": 0,
        "held": 0,
        "unresolved": 0,
        "power": 0,
    }
    assert not any(name.startswith("tigo_optimizer") for name, _ in metrics)
    assert metrics[("tigo_recorder_frames_total", ())] == 2345


def test_the_page_marks_stale_and_unresolved_tiles_in_a_real_browser(
    face: tuple[LiveServer, LiveData],
) -> None:
    server, _ = face
    dom = dump_dom(f"http://127.0.0.1:{server.port}/")
    parser = TileParser()
    parser.feed(dom)
    tiles = {tile["bc"].strip(): tile for tile in parser.tiles}
    stale = barcode_from_address(address(4)) or ""
    assert set(tiles) == {barcode_from_address(address(n)) for n in (2, 3)} | {stale, "node 5", "node 6"}
    assert "stale" in tiles[stale]["cls"].split() and "stale" in tiles[stale]["badge"]
    assert "unres" in tiles["node 5"]["cls"].split() and tiles["node 5"]["badge"] == "no barcode"
    assert "unres" in tiles["node 6"]["cls"].split() and tiles["node 6"]["badge"] == "unresolved"
    assert [h.strip() for h in parser.headings] == ["String A", f"Gateway {GATEWAY} · no string label"]
    assert tiles[barcode_from_address(address(2)) or ""]["pw"].strip() == "293W"  # whole watts above 10 W
    assert "reachable" in dom and "8 ready" in dom and "1 unresolved" in dom


def test_idle_connections_beyond_the_limit_are_closed_and_the_face_recovers(
    face: tuple[LiveServer, LiveData],
) -> None:
    server, _ = face
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(MAX_CLIENTS)]
    try:
        time.sleep(0.5)  # the server has handed each of them to a thread, waiting for a request
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        with extra:
            assert extra.recv(100) == b""  # closed without an answer
    finally:
        for connection in idle:
            connection.close()
    time.sleep(0.5)
    assert get(server, "/api/status")[0] == 200
