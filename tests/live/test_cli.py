"""`recorder run --http / --stale-after` as a user meets them: settings, errors, a taken port."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import pytest

from recorder.config import load_settings
from recorder.errors import ConfigError
from recorder.live.address import HttpAddress
from tests.conftest import run_recorder

SIM = "sim:?nodes=3&duration=2m&start=2025-06-21T12:00:00%2B00:00"


def test_http_defaults_to_loopback_and_an_empty_value_turns_it_off(tmp_path: Path) -> None:
    assert load_settings({}, environ={}).http == HttpAddress("127.0.0.1", 9595)
    assert load_settings({}, environ={}).stale_after == timedelta(minutes=10)
    assert load_settings({"http": ""}, environ={}).http is None
    assert load_settings({}, environ={"RECORDER_HTTP": ""}).http is None  # set but empty: off
    config = tmp_path / "recorder.toml"
    config.write_text('http = ""\nstale_after = "15m"\n')
    settings = load_settings({}, config, {})
    assert settings.http is None and settings.stale_after == timedelta(minutes=15)
    assert load_settings({"http": "[::1]:9100"}, config, {"RECORDER_HTTP": "0.0.0.0:1"}).http == HttpAddress(
        "::1", 9100
    )
    assert load_settings({}, environ={"RECORDER_HTTP": ":9595"}).http == HttpAddress("", 9595)
    assert load_settings({"http": "localhost:80"}, environ={}).http == HttpAddress("localhost", 80)


@pytest.mark.parametrize(
    ("flags", "environ", "message"),
    [
        ({"http": "9595"}, {}, "--http: '9595' is not a valid http (expected HOST:PORT"),
        ({"http": "localhost:http"}, {}, "the port must be a number from 0 to 65535"),
        ({"http": "localhost:65536"}, {}, "the port must be a number from 0 to 65535"),
        ({"http": "::1:9595"}, {}, "expected HOST:PORT such as 127.0.0.1:9595, [::1]:9595"),
        ({"http": "http://host:80"}, {}, "not a valid http"),
        ({}, {"RECORDER_HTTP": "nowhere"}, "environment RECORDER_HTTP: 'nowhere'"),
        ({"stale_after": "0s"}, {}, "--stale-after: '0s' is not a valid stale_after (must be positive)"),
        ({"stale_after": "soon"}, {}, "expected a duration such as 90m"),
    ],
)
def test_bad_values_name_what_was_expected(
    flags: dict[str, str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(flags, environ=environ)
    assert message in str(error.value)


def test_a_bad_http_flag_is_one_line_and_exit_2(tmp_path: Path) -> None:
    completed = run_recorder(
        "run",
        "--dry-run",
        "--db",
        str(tmp_path / "s.db"),
        "--source",
        SIM,
        "--http",
        "everywhere",
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "recorder: error: --http: 'everywhere' is not a valid http (expected HOST:PORT such as 127.0.0.1:9595, "
        "[::1]:9595 or 0.0.0.0:9595, or empty to turn it off)"
    ]


def test_a_taken_port_costs_the_page_not_the_recording(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        completed = run_recorder(
            "run",
            "--dry-run",
            "--db",
            str(tmp_path / "s.db"),
            "--archive-days",
            "0",
            "--source",
            SIM,
            "--http",
            f"127.0.0.1:{port}",
            check=False,
        )
    finally:
        taken.close()
    assert completed.returncode == 0, completed.stderr
    errors = [line for line in completed.stderr.splitlines() if "status page" in line]
    assert len(errors) == 1 and "the port is already in use; recording continues without them" in errors[0]
    assert "Traceback" not in completed.stderr
    assert completed.stdout.count("tigo_optimizer,") > 10  # it recorded (dry run: line protocol)


def test_without_http_the_metrics_library_is_never_imported(tmp_path: Path) -> None:
    completed = run_recorder(
        "run",
        "--dry-run",
        "--db",
        str(tmp_path / "s.db"),
        "--archive-days",
        "0",
        "--source",
        SIM,
        env={"RECORDER_HTTP": "", "PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert "recorder.run.loop" in completed.stderr  # the import profile is there...
    assert "prometheus_client" not in completed.stderr and "recorder.live.server" not in completed.stderr
    assert "status page" not in completed.stderr
