from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from recorder.config import Secret, load_settings, redact
from recorder.errors import ConfigError


def test_defaults() -> None:
    settings = load_settings({}, environ={})
    assert settings.influx_url == "http://localhost:8086" and settings.batch_size == 5000
    assert settings.flush_interval == 1.0 and settings.identity_hold == timedelta(hours=36)
    assert settings.on_unresolved == "write" and settings.archive_days == 30


def test_flags_beat_environment_beat_file_beat_defaults(tmp_path: Path) -> None:
    config = tmp_path / "recorder.toml"
    config.write_text(
        'source = "/dev/ttyUSB1"\nbatch_size = 100\narchive_days = 7\nidentity_hold = "12h"\n'
        '[influx]\nurl = "http://file:8086"\nbucket = "from-file"\norg = "file-org"\n'
    )
    environ = {
        "INFLUXDB_V2_URL": "http://env:8086",
        "RECORDER_BATCH_SIZE": "200",
        "INFLUX_BUCKET": "from-env",
    }
    settings = load_settings({"influx_bucket": "from-flag", "source": None}, config, environ)
    assert settings.influx_bucket == "from-flag"  # flag
    assert settings.influx_url == "http://env:8086" and settings.batch_size == 200  # environment
    assert (
        settings.source == "/dev/ttyUSB1" and settings.archive_days == 7 and settings.influx_org == "file-org"
    )
    assert settings.identity_hold == timedelta(hours=12)


def test_recorder_prefixed_environment_wins_over_the_generic_names() -> None:
    settings = load_settings({}, environ={"RECORDER_INFLUX_URL": "http://a", "INFLUX_URL": "http://b"})
    assert settings.influx_url == "http://a"


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("flush_interval = 0.5\n")
    assert load_settings({}, environ={"RECORDER_CONFIG": str(config)}).flush_interval == 0.5


@pytest.mark.parametrize(
    ("flags", "environ", "message"),
    [
        ({"batch_size": "0"}, {}, "--batch-size: '0' is not a valid batch_size"),
        ({"on_unresolved": "keep"}, {}, "must be write or drop"),
        ({}, {"RECORDER_IDENTITY_HOLD": "a while"}, "environment RECORDER_IDENTITY_HOLD"),
        ({"flush_interval": "-1"}, {}, "must be positive"),
        ({}, {"RECORDER_COMMIT_INTERVAL": "0"}, "environment RECORDER_COMMIT_INTERVAL.*must be positive"),
    ],
)
def test_bad_values_name_where_they_came_from(
    flags: dict[str, str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(flags, environ=environ)


def test_the_commit_interval_comes_from_each_layer(tmp_path: Path) -> None:
    assert load_settings({}, environ={}).commit_interval == 60.0
    config = tmp_path / "recorder.toml"
    config.write_text("commit_interval = 30\n")
    assert load_settings({}, config, {}).commit_interval == 30.0
    assert load_settings({}, config, {"RECORDER_COMMIT_INTERVAL": "20"}).commit_interval == 20.0
    assert (
        load_settings({"commit_interval": 10}, config, {"RECORDER_COMMIT_INTERVAL": "20"}).commit_interval
        == 10
    )


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({}, tmp_path / "missing.toml", {})
    broken = tmp_path / "broken.toml"
    broken.write_text("source = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings({}, broken, {})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('colour = "blue"\n')
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_settings({}, unknown, {})


def test_the_token_never_shows() -> None:
    settings = load_settings({"influx_token": "admin:s3cr3t-pass"}, environ={})
    assert "s3cr3t" not in repr(settings) and "s3cr3t" not in str(settings.influx_token)
    assert settings.influx_token.reveal() == "admin:s3cr3t-pass"
    assert redact("401 for admin:s3cr3t-pass and s3cr3t-pass") == "401 for *** and ***"
    assert Secret("x") == Secret("x")


def test_energy_settings(tmp_path: Path) -> None:
    config = tmp_path / "recorder.toml"
    config.write_text('timezone = "Europe/Berlin"\nenergy_max_gap = "15m"\n')
    settings = load_settings({}, config, {})
    assert settings.timezone == "Europe/Berlin" and settings.energy_max_gap == timedelta(minutes=15)
    assert load_settings({}, environ={}).timezone is None  # the machine's zone
    assert load_settings({}, environ={}).energy_max_gap == timedelta(minutes=10)
    with pytest.raises(
        ConfigError, match=r"--timezone: 'Mars/Olympus' is not a valid timezone \(expected an IANA"
    ):
        load_settings({"timezone": "Mars/Olympus"}, environ={})
    with pytest.raises(ConfigError, match=r"energy-max-gap.*must be positive"):
        load_settings({"energy_max_gap": "0m"}, environ={})
