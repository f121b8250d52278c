"""The one writer, both write APIs, against real servers: influxd 1.6 (no front) and VictoriaMetrics.

What users have: Debian's InfluxDB 1.6.7 answers only the 1.x `/write`; VictoriaMetrics (like
InfluxDB 2.x/3.x) serves `/api/v2/write`. `--influx-api auto` must pick the right one from
`/ping`, and every refusal must come back classified the same way whichever API carried it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from recorder.config import load_settings
from recorder.errors import ConfigError
from recorder.sinks.influx import BadData, InfluxWriter, RetryLater, check_url, choose_api, send_batch
from tests.influx import ADMIN, InfluxDatabase, LocalInfluxDB, LocalVictoriaMetrics, free_ports

pytestmark = pytest.mark.influx

T0 = 1_750_500_000_000


def writer(url: str, **settings: str) -> InfluxWriter:
    return InfluxWriter(load_settings({"influx_url": url, **settings}, environ={}))


def test_auto_picks_the_native_1x_api_on_influxd_and_points_land(
    influx_database: InfluxDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    db = influx_database
    out = writer(db.url, influx_bucket=f"{db.name}/autogen", influx_token=db.token)
    with caplog.at_level(logging.INFO, logger="recorder.sinks.influx"):
        out.write([f"m,site=a v=1.5,n=2i {T0}", f"m,site=a v=2.5,n=3i {T0 + 1}"])
    assert out.api == "v1" and out.server_version is not None and out.server_version.startswith("1.6")
    assert "writing through the 1.x /write API" in caplog.text
    out.write([f"m,site=a v=1.5,n=2i {T0}"])  # the same point again: still one
    out.close()
    assert db.server.query('SELECT "site", "v", "n" FROM "m"', db.name) == [
        {"time": T0, "site": "a", "v": 1.5, "n": 2},
        {"time": T0 + 1, "site": "a", "v": 2.5, "n": 3},
    ]


def test_forcing_v2_on_influxd_16_says_the_database_is_not_there(influx_database: InfluxDatabase) -> None:
    # 1.6 has no /api/v2/write: 404, a configuration problem a person must fix (--influx-api).
    out = writer(influx_database.url, influx_bucket=influx_database.name, influx_api="v2")
    with pytest.raises(RetryLater) as failure:
        out.write([f"m v=1 {T0}"])
    assert failure.value.configuration and "404" in str(failure.value)
    out.close()


def test_auto_picks_v2_on_victoria_metrics_and_v1_can_be_forced(
    victoria_metrics: LocalVictoriaMetrics,
) -> None:
    auto = writer(victoria_metrics.url, influx_bucket="tigo")
    auto.write([f"writer_probe,api=auto v=1.25 {T0}"])
    assert auto.api == "v2" and auto.server_version is None
    forced = writer(victoria_metrics.url, influx_bucket="tigo", influx_api="v1")
    forced.write([f"writer_probe,api=forced v=2.5 {T0}"])
    assert forced.api == "v1"
    auto.close()
    forced.close()
    points = {p["api"]: (p["time"], p["v"]) for p in victoria_metrics.points("writer_probe")}
    assert points == {"auto": (T0, 1.25), "forced": (T0, 2.5)}


def test_credentials_are_checked_and_refusals_name_the_setting(influxdb_with_auth: LocalInfluxDB) -> None:
    server = influxdb_with_auth
    server.create_database("creds")
    server.create_database("elsewhere")
    server.create_user("site7", "site7-pass", write_to="elsewhere")
    good = writer(server.url, influx_bucket="creds", influx_token=f"{ADMIN[0]}:{ADMIN[1]}")
    good.write([])  # the probe
    good.write([f"m v=1 {T0}"])
    good.close()
    assert server.count("m", "creds") == 1
    cases = {
        f"{ADMIN[0]}:wrong-password": ("401", "--influx-token"),
        "": ("401", "--influx-token"),
        "site7:site7-pass": ("403", "--influx-token"),  # a user who may write elsewhere only
    }
    for token, (status, setting) in cases.items():
        out = writer(server.url, influx_bucket="creds", influx_token=token)
        for lines in ([], [f"m v=2 {T0 + 1}"]):
            with pytest.raises(RetryLater) as failure:
                out.write(lines)
            message = str(failure.value)
            assert failure.value.configuration and status in message and setting in message, message
            assert "wrong-password" not in message and "site7-pass" not in message
        out.close()
    missing = writer(server.url, influx_bucket="absent", influx_token=f"{ADMIN[0]}:{ADMIN[1]}")
    with pytest.raises(RetryLater, match=r'404: database not found: "absent"\): check --influx-bucket'):
        missing.write([])
    missing.close()
    assert server.count("m", "creds") == 1


def test_bad_lines_are_bad_data_and_send_batch_parks_only_them(influx_database: InfluxDatabase) -> None:
    db = influx_database
    out = writer(db.url, influx_bucket=db.name)
    out.write([f"m v=1.0 {T0}"])
    with pytest.raises(BadData, match="field type conflict"):
        out.write([f'm v="text" {T0 + 1}'])
    parked: list[tuple[int, str]] = []
    items = [(i, f"m v={i}.5 {T0 + 10 + i}") for i in range(7)]
    items[4] = (4, f"m v=4i {T0 + 14}")  # an integer into a float field
    result = send_batch(out, items, lambda row, line, _error: parked.append((row, line)))
    out.close()
    assert (
        sorted(result.written) == [0, 1, 2, 3, 5, 6] and result.parked == 1 and [p[0] for p in parked] == [4]
    )
    assert db.server.count("m", db.name) == 7


def test_an_unreachable_server_is_retried_and_detection_waits_for_it(influx_database: InfluxDatabase) -> None:
    server = influx_database.server
    out = writer(server.url, influx_bucket=influx_database.name)
    server.stop_influxd()
    try:
        with pytest.raises(RetryLater) as failure:
            out.write([f"m v=1 {T0}"])
        assert not failure.value.configuration and "cannot reach InfluxDB" in str(failure.value)
        assert out.api is None  # not decided yet: asked again next time
    finally:
        server.start_influxd()
    out.write([f"m v=1 {T0}"])
    assert out.api == "v1"
    out.close()
    assert server.count("m", influx_database.name) == 1
    (port,) = free_ports(1)
    nobody = writer(f"http://127.0.0.1:{port}", influx_api="v2")
    with pytest.raises(RetryLater, match="cannot reach InfluxDB"):
        nobody.write([f"m v=1 {T0}"])
    nobody.close()


def test_gzip_bodies_are_accepted_by_influxd(influx_database: InfluxDatabase) -> None:
    db = influx_database
    out = InfluxWriter(load_settings({"influx_url": db.url, "influx_bucket": db.name}, environ={}), gzip=True)
    out.write([f"m,n={i} v={i}.0 {T0 + i}" for i in range(2000)])  # well over the 1 kB threshold
    out.close()
    assert db.server.count("m", db.name) == 2000


@pytest.mark.parametrize(
    "url",
    [
        "localhost:8086",
        "influx.example.org",
        "ftp://host:21",
        "http://",
        "http://host:port",
        "http://h/?db=x",
    ],
)
def test_unusable_urls_are_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(ConfigError, match="--influx-url"):
        check_url(url)
    with pytest.raises(ConfigError, match="--influx-url"):
        writer(url)


def test_usable_urls_and_the_version_rule() -> None:
    assert check_url("https://influx.example.org/") == "https://influx.example.org"
    assert check_url("http://[::1]:8086/prefix") == "http://[::1]:8086/prefix"
    assert [choose_api(v) for v in ("1.6.7~rc0", "1.8.10", "v2.7.11", "2.7.1", "3.1.0", None, "")] == [
        "v1",
        "v1",
        "v2",
        "v2",
        "v2",
        "v2",
        "v2",
    ]


def test_the_api_and_site_settings_come_from_flags_environment_and_file(tmp_path: Path) -> None:
    config = tmp_path / "recorder.toml"
    config.write_text('site = "farm-north"\n[influx]\napi = "v2"\n')
    from_file = load_settings({}, config, environ={})
    assert (from_file.influx_api, from_file.site) == ("v2", "farm-north")
    assert load_settings({"influx_api": "v1"}, config, environ={"RECORDER_SITE": "x"}).influx_api == "v1"
    assert load_settings({}, config, environ={"RECORDER_SITE": "south"}).site == "south"
    assert load_settings({}, environ={}).influx_api == "auto" and load_settings({}, environ={}).site is None
    assert load_settings({}, environ={"RECORDER_INFLUX_API": "V1"}).influx_api == "v1"
    with pytest.raises(ConfigError, match="influx_api"):
        load_settings({"influx_api": "v3"}, environ={})
    assert load_settings({"site": "  north  "}, environ={}).site == "north"
    with pytest.raises(ConfigError, match="site"):
        load_settings({}, environ={"RECORDER_SITE": " "})
