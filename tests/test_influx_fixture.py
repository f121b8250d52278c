"""The InfluxDB test fixture itself: influxdb-client writes through the v2 front, InfluxQL reads back.

Fixtures come from the `tests.influx` plugin (registered in tests/conftest.py, or `-p tests.influx`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import urllib3
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS, WriteApi
from influxdb_client.rest import ApiException

import tests.influx
from tests.influx import InfluxDatabase, InfluxUnavailable, find_programs

pytestmark = pytest.mark.influx

T0_MS = 1_700_000_000_123  # 2023-11-14T22:13:20.123Z


@pytest.fixture
def client(influx_database: InfluxDatabase) -> Iterator[InfluxDBClient]:
    with InfluxDBClient(url=influx_database.url, token=influx_database.token, org=influx_database.org) as c:
        yield c


@pytest.fixture
def writer(client: InfluxDBClient) -> WriteApi:
    return client.write_api(write_options=SYNCHRONOUS)


def test_ms_and_ns_writes_read_back_with_their_values_and_times(
    influx_database: InfluxDatabase, writer: WriteApi
) -> None:
    db = influx_database
    writer.write(
        db.bucket,
        record=[
            f"power,barcode=4-A1 watts=101.5,slot=7i {T0_MS}",
            # A Point's integer time is in the Point's own precision (default ns), not write()'s.
            Point("power")
            .tag("barcode", "4-B2")
            .field("watts", 88.25)
            .field("slot", 7)
            .time(T0_MS, WritePrecision.MS),
        ],
        write_precision=WritePrecision.MS,
    )
    # 1 s later, in nanoseconds: if the front mapped ns wrongly, this would not land at T0 + 1 s.
    writer.write(
        db.bucket,
        record=f"power,barcode=4-A1 watts=102.0,slot=8i {(T0_MS + 1000) * 1_000_000}",
        write_precision=WritePrecision.NS,
    )
    writer.write(
        db.bucket,
        record=Point("power")
        .tag("barcode", "4-B2")
        .field("watts", 90.0)
        .field("slot", 8)
        .time(datetime.fromtimestamp((T0_MS + 1000) / 1000, UTC), WritePrecision.NS),
    )

    rows = db.server.query('SELECT "barcode", "watts", "slot" FROM "power" ORDER BY time', db.name)
    assert sorted((r["time"], r["barcode"], r["watts"], r["slot"]) for r in rows) == [
        (T0_MS, "4-A1", 101.5, 7),
        (T0_MS, "4-B2", 88.25, 7),
        (T0_MS + 1000, "4-A1", 102.0, 8),
        (T0_MS + 1000, "4-B2", 90.0, 8),
    ]

    series = db.server.query_series('SELECT LAST("watts") FROM "power" GROUP BY "barcode"', db.name)
    assert {s["tags"]["barcode"]: s["rows"][0]["last"] for s in series} == {"4-A1": 102.0, "4-B2": 90.0}
    assert db.server.count("power", db.name) == 4
    assert db.server.count("power", db.name, field="watts") == 4
    assert db.server.count("absent", db.name) == 0


def test_count_includes_points_lacking_some_fields(influx_database: InfluxDatabase, writer: WriteApi) -> None:
    db = influx_database
    writer.write(
        db.bucket, record=["m a=1 1000", "m b=2 2000", "m a=3,b=4 3000"], write_precision=WritePrecision.MS
    )
    assert db.server.count("m", db.name) == 3
    assert db.server.count("m", db.name, field="a") == 2


def test_a_batch_over_a_megabyte_and_a_database_slash_retention_bucket(
    influx_database: InfluxDatabase, writer: WriteApi
) -> None:
    db = influx_database
    lines = [f"power,barcode=4-{i:06d} watts={i % 400}.5,volts=35.25 {T0_MS + i}" for i in range(25_000)]
    assert sum(len(line) + 1 for line in lines) > 1_100_000
    writer.write(db.bucket, record=lines, write_precision=WritePrecision.MS)
    # InfluxDB 1.8+ takes bucket "database/retention-policy"; the front maps it the same way.
    writer.write(f"{db.name}/autogen", record=f"extra v=1 {T0_MS}", write_precision=WritePrecision.MS)
    assert db.server.count("power", db.name, field="volts") == 25_000
    assert db.server.query('SELECT "v" FROM "autogen"."extra"', db.name) == [{"time": T0_MS, "v": 1}]


def test_writes_fail_while_influxd_or_the_front_is_down_and_data_survives(
    influx_database: InfluxDatabase, writer: WriteApi
) -> None:
    db = influx_database
    server = db.server
    writer.write(db.bucket, record=f"m v=1 {T0_MS}", write_precision=WritePrecision.MS)

    server.stop_influxd()
    try:
        with pytest.raises(ApiException) as failure:
            writer.write(db.bucket, record=f"m v=2 {T0_MS + 1}", write_precision=WritePrecision.MS)
        assert failure.value.status == 502  # nginx: Bad Gateway
    finally:
        server.start_influxd()
    writer.write(db.bucket, record=f"m v=3 {T0_MS + 2}", write_precision=WritePrecision.MS)
    assert [r["v"] for r in server.query('SELECT "v" FROM "m"', db.name)] == [1, 3]

    server.stop_front()
    try:
        with pytest.raises(urllib3.exceptions.HTTPError):  # connection refused
            writer.write(db.bucket, record=f"m v=4 {T0_MS + 3}", write_precision=WritePrecision.MS)
    finally:
        server.start_front()
    writer.write(db.bucket, record=f"m v=5 {T0_MS + 4}", write_precision=WritePrecision.MS)
    assert [r["v"] for r in server.query('SELECT "v" FROM "m"', db.name)] == [1, 3, 5]


def test_databases_are_isolated(influx_database: InfluxDatabase, writer: WriteApi) -> None:
    db = influx_database
    other = f"{db.name}_other"
    db.server.create_database(other)
    try:
        writer.write(db.bucket, record=f"m v=1 {T0_MS}", write_precision=WritePrecision.MS)
        writer.write(
            other, record=[f"m v=2 {T0_MS}", f"m v=3 {T0_MS + 1}"], write_precision=WritePrecision.MS
        )
        assert db.server.query('SELECT "v" FROM "m"', db.name) == [{"time": T0_MS, "v": 1}]
        assert db.server.count("m", other) == 2
    finally:
        db.server.drop_database(other)


def test_missing_programs_name_the_packages_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tests.influx, "_SEARCH_PATH", "/nonexistent")
    with pytest.raises(InfluxUnavailable, match="apt-get install influxdb nginx-light"):
        find_programs()
