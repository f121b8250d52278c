"""The test servers themselves: a plain influxd (with and without authentication) read back with
InfluxQL, and VictoriaMetrics read back through its export API.

Fixtures come from the `tests.influx` plugin (registered in tests/conftest.py, or `-p tests.influx`).
"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

import tests.influx
from tests.influx import (
    ADMIN,
    InfluxDatabase,
    InfluxUnavailable,
    LocalInfluxDB,
    LocalVictoriaMetrics,
    find_programs,
)

pytestmark = pytest.mark.influx

T0_MS = 1_700_000_000_123  # 2023-11-14T22:13:20.123Z


def test_writes_read_back_with_their_values_and_times(influx_database: InfluxDatabase) -> None:
    db = influx_database
    db.server.write_v1(
        db.name,
        f"power,barcode=4-A1 watts=101.5,slot=7i {T0_MS}\npower,barcode=4-B2 watts=88.25,slot=7i {T0_MS}\n"
        f"power,barcode=4-A1 watts=102.0,slot=8i {T0_MS + 1000}\n".encode(),
    )
    rows = db.server.query('SELECT "barcode", "watts", "slot" FROM "power" ORDER BY time', db.name)
    assert sorted((r["time"], r["barcode"], r["watts"], r["slot"]) for r in rows) == [
        (T0_MS, "4-A1", 101.5, 7),
        (T0_MS, "4-B2", 88.25, 7),
        (T0_MS + 1000, "4-A1", 102.0, 8),
    ]
    series = db.server.query_series('SELECT LAST("watts") FROM "power" GROUP BY "barcode"', db.name)
    assert {s["tags"]["barcode"]: s["rows"][0]["last"] for s in series} == {"4-A1": 102.0, "4-B2": 88.25}
    assert db.server.count("power", db.name) == 3
    assert db.server.count("power", db.name, field="watts") == 3
    assert db.server.count("absent", db.name) == 0


def test_count_includes_points_lacking_some_fields(influx_database: InfluxDatabase) -> None:
    db = influx_database
    db.server.write_v1(db.name, b"m a=1 1000\nm b=2 2000\nm a=3,b=4 3000\n")
    assert db.server.count("m", db.name) == 3
    assert db.server.count("m", db.name, field="a") == 2


def test_there_is_no_v2_endpoint_and_the_server_says_it_is_1x(influx_database: InfluxDatabase) -> None:
    # What a user of Debian's InfluxDB has: the reason the recorder needs the native 1.x path.
    with urllib.request.urlopen(f"{influx_database.url}/ping", timeout=5) as response:
        assert response.status == 204
        assert response.headers["X-Influxdb-Version"].startswith("1.6")
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(
            urllib.request.Request(f"{influx_database.url}/api/v2/write?bucket=x", data=b"m v=1"), timeout=5
        )
    assert failure.value.code == 404


def test_influxd_stops_and_starts_again_on_the_same_port_with_its_data(
    influx_database: InfluxDatabase,
) -> None:
    db = influx_database
    server = db.server
    db.server.write_v1(db.name, f"m v=1 {T0_MS}".encode())
    url = server.url
    server.stop_influxd()
    try:
        assert not server.influxd_running and server.influxd_pid is None
        with pytest.raises(urllib.error.URLError):
            db.server.write_v1(db.name, f"m v=2 {T0_MS + 1}".encode())
    finally:
        server.start_influxd()
    assert server.url == url and server.influxd_pid is not None
    db.server.write_v1(db.name, f"m v=3 {T0_MS + 2}".encode())
    assert [r["v"] for r in server.query('SELECT "v" FROM "m"', db.name)] == [1, 3]


def test_databases_are_isolated(influx_database: InfluxDatabase) -> None:
    db = influx_database
    other = f"{db.name}_other"
    db.server.create_database(other)
    try:
        db.server.write_v1(db.name, f"m v=1 {T0_MS}".encode())
        db.server.write_v1(other, f"m v=2 {T0_MS}\nm v=3 {T0_MS + 1}".encode())
        assert db.server.query('SELECT "v" FROM "m"', db.name) == [{"time": T0_MS, "v": 1}]
        assert db.server.count("m", other) == 2
    finally:
        db.server.drop_database(other)


def test_an_instance_with_authentication_refuses_strangers(influxdb_with_auth: LocalInfluxDB) -> None:
    server = influxdb_with_auth
    server.create_database("guarded")
    server.write_v1("guarded", f"m v=1 {T0_MS}".encode())  # as the admin
    assert server.count("m", "guarded") == 1
    for credentials in ("", f"&u={ADMIN[0]}&p=wrong"):
        request = urllib.request.Request(
            f"{server.url}/write?db=guarded&precision=ms{credentials}", data=f"m v=2 {T0_MS + 1}".encode()
        )
        with pytest.raises(urllib.error.HTTPError) as failure:
            urllib.request.urlopen(request, timeout=5)
        assert failure.value.code == 401
    assert server.count("m", "guarded") == 1


def test_victoria_metrics_takes_v2_writes_and_exports_them_as_points(
    victoria_metrics: LocalVictoriaMetrics,
) -> None:
    with InfluxDBClient(url=victoria_metrics.url, token="any", org="-") as client:
        writer = client.write_api(write_options=SYNCHRONOUS)
        lines = [
            f"fixture_probe,barcode=4-A1,run=fixture a=1.5,b=7i {T0_MS}",
            f"fixture_probe,barcode=4-B2,run=fixture a=2.5 {T0_MS}",
            f"fixture_probe,barcode=4-A1,run=fixture a=3.5,b=8i {T0_MS + 1000}",
        ]
        writer.write("ignored", record="\n".join(lines), write_precision=WritePrecision.MS)
        # The same point again: de-duplicated, as InfluxDB keeps one point per series and time.
        writer.write("ignored", record=lines[0], write_precision=WritePrecision.MS)
    points = victoria_metrics.points("fixture_probe", 'run="fixture"')
    assert sorted(points, key=lambda p: (p["time"], p["barcode"])) == [
        {"barcode": "4-A1", "run": "fixture", "time": T0_MS, "a": 1.5, "b": 7},
        {"barcode": "4-B2", "run": "fixture", "time": T0_MS, "a": 2.5},
        {"barcode": "4-A1", "run": "fixture", "time": T0_MS + 1000, "a": 3.5, "b": 8},
    ]


def test_missing_programs_name_the_packages_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tests.influx, "_SEARCH_PATH", "/nonexistent")
    with pytest.raises(InfluxUnavailable, match="apt-get install influxdb victoria-metrics"):
        find_programs()
