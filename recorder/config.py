"""Settings for `recorder run` and `recorder backfill`: flags > environment > TOML file > defaults.

Environment names: every setting has a `RECORDER_<NAME>` variable (e.g. `RECORDER_SOURCE`,
`RECORDER_BATCH_SIZE`); the InfluxDB connection also accepts the names people already use with
other tools: `INFLUX_URL`/`INFLUXDB_V2_URL`, `INFLUX_TOKEN`/`INFLUXDB_V2_TOKEN`,
`INFLUX_ORG`/`INFLUXDB_V2_ORG`, `INFLUX_BUCKET`/`INFLUXDB_V2_BUCKET`.

The TOML file (`--config`, `RECORDER_CONFIG`, else `/etc/recorder/recorder.toml` if present)
uses the same names in lower case; the InfluxDB ones may also sit in an `[influx]` table:

    source = "/dev/ttyUSB0"
    archive_days = 60
    [influx]
    url = "http://localhost:8086"
    token = "recorder:secret"
    bucket = "tigo/autogen"

The token is held in a `Secret`, whose text form is `***`, and `redact` removes it from any
message before it is logged or shown.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from recorder.errors import ConfigError, RecorderError
from recorder.sim.config import parse_duration
from recorder.storage.db import default_database_path

DEFAULT_CONFIG_FILE = Path("/etc/recorder/recorder.toml")


class Secret:
    """A value that never shows itself in logs, reprs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_SECRETS: set[str] = set()


def redact(text: str) -> str:
    """`text` with every known secret (and its password part) replaced by `***`."""
    for secret in sorted(_SECRETS, key=len, reverse=True):  # whole token before its password part
        text = text.replace(secret, "***")
    return text


def _remember(secret: Secret) -> None:
    value = secret.reveal()
    if value:
        _SECRETS.add(value)
        if ":" in value:  # InfluxDB 1.8 style user:password; the password alone is secret too
            password = value.split(":", 1)[1]
            if len(password) >= 4:
                _SECRETS.add(password)


@dataclass(frozen=True)
class Settings:
    source: str | None = None
    db: Path | None = None
    influx_url: str = "http://localhost:8086"
    influx_token: Secret = field(default_factory=lambda: Secret(""))
    influx_org: str = "-"
    influx_bucket: str = "tigo"
    batch_size: int = 5000
    flush_interval: float = 1.0
    identity_hold: timedelta = timedelta(hours=36)
    on_unresolved: str = "write"
    archive: Path | None = None
    archive_days: int = 30
    no_report_warning: timedelta = timedelta(minutes=30)
    watchdog_seconds: float = 90.0
    log_level: str = "INFO"
    timezone: str | None = None  # the site's IANA zone for daily energy; None: the machine's
    energy_max_gap: timedelta = timedelta(minutes=10)

    @property
    def database_path(self) -> Path:
        return self.db if self.db is not None else default_database_path()

    @property
    def archive_path(self) -> Path:
        return self.archive if self.archive is not None else self.database_path.parent / "archive"


# setting -> environment variables, first match wins (after RECORDER_<NAME>)
_EXTRA_ENVIRONMENT = {
    "influx_url": ("INFLUX_URL", "INFLUXDB_V2_URL"),
    "influx_token": ("INFLUX_TOKEN", "INFLUXDB_V2_TOKEN"),
    "influx_org": ("INFLUX_ORG", "INFLUXDB_V2_ORG"),
    "influx_bucket": ("INFLUX_BUCKET", "INFLUXDB_V2_BUCKET"),
}


def _convert(name: str, value: Any, origin: str) -> Any:
    """Turn a raw value from a flag, the environment or the file into the setting's type."""
    try:
        if name in ("db", "archive"):
            return Path(str(value)).expanduser()
        if name == "influx_token":
            return value if isinstance(value, Secret) else Secret(str(value))
        if name in ("batch_size", "archive_days"):
            number = int(value)
            low = 1 if name == "batch_size" else 0
            if number < low:
                raise ValueError(f"must be at least {low}")
            return number
        if name in ("flush_interval", "watchdog_seconds"):
            seconds = float(value)
            if seconds <= 0:
                raise ValueError("must be positive")
            return seconds
        if name in ("identity_hold", "no_report_warning"):
            return value if isinstance(value, timedelta) else parse_duration(str(value))
        if name == "energy_max_gap":
            gap = value if isinstance(value, timedelta) else parse_duration(str(value))
            if gap <= timedelta(0):
                raise ValueError("must be positive")
            return gap
        if name == "timezone":
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(str(value))
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError("expected an IANA time zone name such as Europe/Berlin") from None
            return str(value)
        if name == "on_unresolved":
            text = str(value).lower()
            if text not in ("write", "drop"):
                raise ValueError("must be write or drop")
            return text
        if name == "log_level":
            text = str(value).upper()
            if text not in ("DEBUG", "INFO", "WARNING", "ERROR"):
                raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
            return text
        return str(value)
    except (ValueError, TypeError, RecorderError) as error:
        message = str(error)
        if "is not a duration" in message:
            message = "expected a duration such as 90m, 36h or 7d"
        raise ConfigError(f"{origin}: {value!r} is not a valid {name} ({message})") from None


def load_settings(
    flags: dict[str, Any], config_file: Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Merge the four layers. `flags` holds only options the user actually gave."""
    environ = dict(os.environ if environ is None else environ)
    names = [f.name for f in fields(Settings)]
    values: dict[str, Any] = {}

    path = config_file or (Path(environ["RECORDER_CONFIG"]) if environ.get("RECORDER_CONFIG") else None)
    if path is None and DEFAULT_CONFIG_FILE.exists():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        for name, value in _read_file(path).items():
            if name not in names:
                raise ConfigError(f"{path}: unknown setting {name!r} (known: {', '.join(sorted(names))})")
            values[name] = _convert(name, value, f"{path}: {name}")

    for name in names:
        for variable in (f"RECORDER_{name.upper()}", *_EXTRA_ENVIRONMENT.get(name, ())):
            if environ.get(variable):
                values[name] = _convert(name, environ[variable], f"environment {variable}")
                break

    for name, value in flags.items():
        if value is not None:
            values[name] = _convert(name, value, f"--{name.replace('_', '-')}")

    settings = replace(Settings(), **values)
    _remember(settings.influx_token)
    return settings


def _read_file(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"configuration file {path} is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"cannot read configuration file {path}: {error.strerror}") from None
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if key == "influx" and isinstance(value, dict):
            for inner, inner_value in value.items():
                flat[f"influx_{inner}"] = inner_value
        else:
            flat[key] = value
    return flat
