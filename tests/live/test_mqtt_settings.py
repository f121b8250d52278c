"""`--mqtt`, `--mqtt-topic`, `--mqtt-discovery-prefix`, `--mqtt-interval` as a user meets them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recorder.config import load_settings, redact
from recorder.errors import ConfigError
from recorder.live.broker import MqttBroker, parse_mqtt_url, redact_url
from tests.conftest import ROOT, run_recorder

SIM = "sim:?nodes=3&duration=2m&start=2025-06-21T12:00:00%2B00:00"


def test_defaults_mqtt_is_off() -> None:
    settings = load_settings({}, environ={})
    assert settings.mqtt is None
    assert (settings.mqtt_topic, settings.mqtt_discovery_prefix, settings.mqtt_interval) == (
        "tigo",
        "homeassistant",
        10.0,
    )


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "username", "password"),
    [
        ("mqtt://localhost", "localhost", 1883, False, None, None),
        ("mqtt://broker.lan:1884", "broker.lan", 1884, False, None, None),
        ("mqtts://broker.example.org", "broker.example.org", 8883, True, None, None),
        ("MQTT://[::1]:1883/", "::1", 1883, False, None, None),
        ("mqtt://ha@192.168.1.5", "192.168.1.5", 1883, False, "ha", None),
        ("mqtt://ha:s3cret@192.168.1.5:1883", "192.168.1.5", 1883, False, "ha", "s3cret"),
        ("mqtts://ha:p%40ss%3Aw%2Frd@broker:8884", "broker", 8884, True, "ha", "p@ss:w/rd"),
    ],
)
def test_broker_urls(
    url: str, host: str, port: int, tls: bool, username: str | None, password: str | None
) -> None:
    broker = parse_mqtt_url(url)
    assert broker is not None
    assert (broker.host, broker.port, broker.tls, broker.username) == (host, port, tls, username)
    assert (broker.password.reveal() if broker.password else None) == password
    assert password is None or password not in str(broker) + repr(broker)


def test_flags_environment_and_file_and_the_password_is_a_secret(tmp_path: Path) -> None:
    config = tmp_path / "recorder.toml"
    config.write_text(
        'mqtt = "mqtt://file:from-file-pw@filehost"\nmqtt_topic = "home/tigo"\n'
        'mqtt_discovery_prefix = "ha"\nmqtt_interval = "30s"\n'
    )
    from_file = load_settings({}, config, {})
    assert from_file.mqtt == MqttBroker(
        "filehost", 1883, False, "file", from_file.mqtt.password if from_file.mqtt else None
    )
    assert (from_file.mqtt_topic, from_file.mqtt_discovery_prefix, from_file.mqtt_interval) == (
        "home/tigo",
        "ha",
        30.0,
    )
    environ = {"RECORDER_MQTT": "mqtt://env:env-Password-1@envhost:1999", "RECORDER_MQTT_INTERVAL": "2.5"}
    from_environment = load_settings({}, config, environ)
    assert from_environment.mqtt is not None and from_environment.mqtt.host == "envhost"
    assert from_environment.mqtt_interval == 2.5
    assert load_settings({}, config, {"RECORDER_MQTT": ""}).mqtt is None  # set but empty: off
    flagged = load_settings({"mqtt": "mqtt://flaghost", "mqtt_topic": "solar"}, config, environ)
    assert flagged.mqtt == MqttBroker("flaghost", 1883) and flagged.mqtt_topic == "solar"
    # The password is known to `redact`, so no message that happens to hold it shows it.
    assert redact("connect failed: env-Password-1 rejected") == "connect failed: *** rejected"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"mqtt": "localhost:1883"}, "--mqtt: 'localhost:1883' is not a valid mqtt (expected mqtt[s]://"),
        (
            {"mqtt": "http://u:hunter22@host"},
            "--mqtt: 'http://u:***@host' is not a valid mqtt (the scheme must be",
        ),
        (
            {"mqtt": "mqtt://u:hunter22@host:port"},
            "'mqtt://u:***@host:port' is not a valid mqtt (the port must be",
        ),
        ({"mqtt": "mqtt://host:0"}, "the port must be a number from 1 to 65535"),
        ({"mqtt": "mqtt://:hunter22@host"}, "a password needs a user name"),
        ({"mqtt": "mqtt://host/tigo"}, "a broker URL has no path or query"),
        ({"mqtt": "mqtt://"}, "no host name"),
        (
            {"mqtt_topic": "tigo/#"},
            "--mqtt-topic: 'tigo/#' is not a valid mqtt_topic (an MQTT topic prefix cannot",
        ),
        ({"mqtt_topic": "/tigo"}, "without a leading or trailing /"),
        ({"mqtt_discovery_prefix": "home+assistant"}, "--mqtt-discovery-prefix: 'home+assistant'"),
        ({"mqtt_interval": "0"}, "--mqtt-interval: '0' is not a valid mqtt_interval (must be a positive"),
        ({"mqtt_interval": "often"}, "expected a duration such as 90m"),
    ],
)
def test_bad_values_name_what_was_expected_and_never_the_password(
    flags: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(flags, environ={})
    assert message in str(error.value)
    assert "hunter22" not in str(error.value)


def test_redact_url_hides_the_password_up_to_the_last_at() -> None:
    assert redact_url("mqtt://user:p@ss@host:1883") == "mqtt://user:***@host:1883"
    assert redact_url("mqtt://host:1883") == "mqtt://host:1883"


def test_a_bad_mqtt_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    completed = run_recorder(
        "run",
        "--db",
        str(tmp_path / "s.db"),
        "--source",
        SIM,
        check=False,
        env={"RECORDER_MQTT": "mqtt://recorder:hunter22@broker:http"},
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "recorder: error: environment RECORDER_MQTT: 'mqtt://recorder:***@broker:http' is not a valid mqtt "
        "(the port must be a number from 1 to 65535; expected mqtt[s]://[user:pass@]HOST[:PORT], such as "
        "mqtt://localhost or mqtts://user:pass@broker:8883)"
    ]
    assert not (tmp_path / "s.db").exists()  # refused before anything was created


def test_a_dry_run_publishes_nothing(tmp_path: Path) -> None:
    completed = run_recorder(
        "run",
        "--dry-run",
        "--db",
        str(tmp_path / "s.db"),
        "--source",
        SIM,
        "--mqtt",
        "mqtt://127.0.0.1:9",
    )
    assert "dry run: not publishing to MQTT" in completed.stderr
    assert "MQTT: publishing" not in completed.stderr


def test_paho_is_imported_only_when_mqtt_is_on(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from recorder.cli.app import main\n"
        f"sys.argv = ['recorder', 'run', '--dry-run', '--db', {str(tmp_path / 's.db')!r}, '--source', {SIM!r}]\n"
        "try:\n    main()\nexcept SystemExit as end:\n    assert not end.code, end.code\n"
        "loaded = sorted(name for name in sys.modules if name.startswith(('paho', 'recorder.live.mqtt')))\n"
        "assert not loaded, loaded\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
