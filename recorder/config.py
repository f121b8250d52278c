"""Settings for every command: flags > environment > TOML file > defaults.

Environment names: every setting has a `RECORDER_<NAME>` variable (e.g. `RECORDER_SOURCE`,
`RECORDER_BATCH_SIZE`); the InfluxDB connection also accepts the names people already use with
other tools: `INFLUX_URL`/`INFLUXDB_V2_URL`, `INFLUX_TOKEN`/`INFLUXDB_V2_TOKEN`,
`INFLUX_ORG`/`INFLUXDB_V2_ORG`, `INFLUX_BUCKET`/`INFLUXDB_V2_BUCKET`.

Which TOML file: `--config`, else `RECORDER_CONFIG`, else `/etc/recorder/recorder.toml` when it
exists (what the service installer writes, so that `recorder status` typed by a person reads the
same database as the service), else the user's own `$XDG_CONFIG_HOME/recorder/recorder.toml`
(`~/.config/recorder/recorder.toml`) when it exists. `locate_config_file` is that rule, the only
copy of it. It uses the same names in lower case; the InfluxDB ones may also sit in an `[influx]`
table:

    source = "/dev/ttyUSB0"
    archive_days = 60
    site = "farm-north"          # a `site` tag on every point (many sites, one database)
    [influx]
    url = "http://localhost:8086"
    token = "recorder:secret"
    bucket = "tigo/autogen"
    api = "auto"                 # or v1 (InfluxDB 1.x /write), v2 (/api/v2/write)

`http` (the live face's HOST:PORT) is the one setting an empty value turns off, so an empty
`RECORDER_HTTP=` counts rather than being skipped like other empty variables.

Every command that touches the state database resolves `db` here too (`run`, `backfill`,
`status`, `nodes ...`, `db ...`, `observe`), and `Settings.database` / `Settings.config_file` say
which path was chosen and how, for `recorder status`, `run`'s first log line and error messages.
Without `db` anywhere, root uses `/var/lib/recorder/recorder.db` and anyone else
`$XDG_DATA_HOME/recorder/recorder.db` (`~/.local/share/recorder/recorder.db`).

`mqtt` (`mqtt[s]://[user:pass@]HOST[:PORT]`, see `recorder.live.broker`) turns the MQTT publisher
on; `mqtt_topic`, `mqtt_discovery_prefix` and `mqtt_interval` shape it.

The token and the MQTT password are held in `Secret`s, whose text form is `***`, and `redact`
removes them from any message before it is logged or shown; a bad MQTT URL is quoted without
its password.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recorder.durations import parse_duration
from recorder.errors import ConfigError, RecorderError
from recorder.live.address import DEFAULT_ADDRESS, HttpAddress, parse_http_address

if TYPE_CHECKING:
    from recorder.live.broker import MqttBroker

SYSTEM_CONFIG_FILE = Path("/etc/recorder/recorder.toml")
SYSTEM_DATABASE = Path("/var/lib/recorder/recorder.db")


@dataclass(frozen=True)
class Choice:
    """A path and how it was chosen, e.g. `/var/lib/recorder/recorder.db` (`db` in /etc/...)."""

    path: Path | None
    how: str

    def __str__(self) -> str:
        return f"{self.path if self.path is not None else 'none'} ({self.how})"


def user_config_file(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(_home(environ) / ".config")
    return Path(base) / "recorder" / "recorder.toml"


def user_database(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_DATA_HOME") or str(_home(environ) / ".local" / "share")
    return Path(base) / "recorder" / "recorder.db"


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ["HOME"]) if environ.get("HOME") else Path.home()


def locate_config_file(flag: Path | None, environ: Mapping[str, str]) -> Choice:
    """The one rule for which configuration file a command reads (see the module docstring)."""
    if flag is not None:
        return Choice(flag.expanduser(), "--config")
    if environ.get("RECORDER_CONFIG"):
        return Choice(Path(environ["RECORDER_CONFIG"]).expanduser(), "RECORDER_CONFIG")
    if SYSTEM_CONFIG_FILE.exists():
        return Choice(SYSTEM_CONFIG_FILE, "the system configuration file")
    user_file = user_config_file(environ)
    if user_file.exists():
        return Choice(user_file, "your configuration file")
    return Choice(None, f"neither {SYSTEM_CONFIG_FILE} nor {user_file} exists")


def default_database(environ: Mapping[str, str]) -> Choice:
    """Where the state database lives when nothing names it."""
    if os.geteuid() == 0:
        return Choice(SYSTEM_DATABASE, "the default for root")
    return Choice(user_database(environ), "the default for your user")


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
class Provenance:
    """Where the settings came from: the configuration file, and each setting's origin."""

    config_file: Choice = Choice(None, "none given")
    origins: Mapping[str, str] = field(default_factory=dict)  # setting -> "--db", "RECORDER_DB", ...
    default_database: Choice = Choice(SYSTEM_DATABASE, "the default")


@dataclass(frozen=True)
class Settings:
    source: str | None = None
    db: Path | None = None
    influx_url: str = "http://localhost:8086"
    influx_token: Secret = field(default_factory=lambda: Secret(""))
    influx_org: str = "-"
    influx_bucket: str = "tigo"
    influx_api: str = "auto"
    site: str | None = None
    batch_size: int = 5000
    flush_interval: float = 1.0
    commit_interval: float = 60.0
    identity_hold: timedelta = timedelta(hours=36)
    on_unresolved: str = "write"
    archive: Path | None = None
    archive_days: int = 30
    no_report_warning: timedelta = timedelta(minutes=30)
    watchdog_seconds: float = 90.0
    log_level: str = "INFO"
    timezone: str | None = None  # the site's IANA zone for daily energy; None: the machine's
    energy_max_gap: timedelta = timedelta(minutes=10)
    http: HttpAddress | None = DEFAULT_ADDRESS  # None: no live face
    stale_after: timedelta = timedelta(minutes=10)  # live views leave out older values
    mqtt: MqttBroker | None = None  # None: no MQTT publisher
    mqtt_topic: str = "tigo"
    mqtt_discovery_prefix: str = "homeassistant"
    mqtt_interval: float = 10.0  # seconds between publications
    # Not a setting: where the others came from (never read from a file or the environment).
    provenance: Provenance = field(default_factory=Provenance, compare=False, repr=False)

    @property
    def database(self) -> Choice:
        """The state database and how it was chosen."""
        if self.db is None:
            return self.provenance.default_database
        return Choice(self.db, self.provenance.origins.get("db", "given"))

    @property
    def database_path(self) -> Path:
        path = self.database.path
        assert path is not None
        return path

    @property
    def config_file(self) -> Choice:
        return self.provenance.config_file

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
# settings whose empty value means "off", so an empty environment variable counts
_EMPTY_MEANS_OFF = {"http", "mqtt"}


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
        if name in ("flush_interval", "commit_interval", "watchdog_seconds"):
            seconds = float(value)
            if seconds <= 0:
                raise ValueError("must be positive")
            return seconds
        if name in ("identity_hold", "no_report_warning", "stale_after"):
            duration = value if isinstance(value, timedelta) else parse_duration(str(value))
            if name == "stale_after" and duration <= timedelta(0):
                raise ValueError("must be positive")
            return duration
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
        if name == "http":
            return value if isinstance(value, HttpAddress) else parse_http_address(str(value))
        if name == "mqtt":
            from recorder.live.broker import MqttBroker, parse_mqtt_url  # it needs Secret from here

            return value if isinstance(value, MqttBroker) else parse_mqtt_url(str(value))
        if name in ("mqtt_topic", "mqtt_discovery_prefix"):
            return _topic_prefix(str(value))
        if name == "mqtt_interval":
            try:
                seconds = float(value)  # seconds, or a duration such as 30s or 1m
            except ValueError:
                seconds = parse_duration(str(value)).total_seconds()
            if not 0 < seconds < float("inf"):
                raise ValueError("must be a positive number of seconds, or a duration such as 30s")
            return seconds
        if name == "on_unresolved":
            text = str(value).lower()
            if text not in ("write", "drop"):
                raise ValueError("must be write or drop")
            return text
        if name == "influx_api":
            text = str(value).lower()
            if text not in ("auto", "v1", "v2"):
                raise ValueError("must be auto, v1 (InfluxDB 1.x /write) or v2 (/api/v2/write)")
            return text
        if name == "site":
            text = str(value).strip()
            if not text or any(ord(c) < 32 for c in text):
                raise ValueError("must be a non-empty name without control characters")
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
        shown = value
        if name == "mqtt":  # quote the URL, never its password
            from recorder.live.broker import redact_url

            shown = redact_url(str(value))
        raise ConfigError(f"{origin}: {shown!r} is not a valid {name} ({message})") from None


def _topic_prefix(text: str) -> str:
    """An MQTT topic prefix: levels without wildcards, no leading or trailing `/`."""
    text = text.strip()
    if not text or text.startswith("/") or text.endswith("/") or "//" in text:
        raise ValueError("expected topic levels such as tigo or home/tigo, without a leading or trailing /")
    if any(character in "+#" or ord(character) < 32 for character in text):
        raise ValueError("an MQTT topic prefix cannot hold +, # or control characters")
    return text


def setting_names() -> list[str]:
    """Every setting a flag, an environment variable or the file can give."""
    return [f.name for f in fields(Settings) if f.name != "provenance"]


def environment_names(name: str) -> tuple[str, ...]:
    """The environment variables of a setting, the one that wins first."""
    return (f"RECORDER_{name.upper()}", *_EXTRA_ENVIRONMENT.get(name, ()))


def load_settings(
    flags: dict[str, Any], config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Merge the four layers. `flags` holds only options the user actually gave."""
    environ = dict(os.environ if environ is None else environ)
    names = setting_names()
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}

    located = locate_config_file(config_file, environ)
    path = located.path
    if path is not None:
        for name, value in _read_file(path, located.how).items():
            if name not in names:
                raise ConfigError(f"{path}: unknown setting {name!r} (known: {', '.join(sorted(names))})")
            values[name] = _convert(name, value, f"{path}: {name}")
            origins[name] = f"`{name}` in {path}"

    for name in names:
        for variable in environment_names(name):
            if environ.get(variable) or (name in _EMPTY_MEANS_OFF and variable in environ):
                values[name] = _convert(name, environ[variable], f"environment {variable}")
                origins[name] = variable
                break

    for name, value in flags.items():
        if value is not None:
            flag = f"--{name.replace('_', '-')}"
            values[name] = _convert(name, value, flag)
            origins[name] = flag

    provenance = Provenance(located, origins, default_database(environ))
    settings = replace(Settings(), provenance=provenance, **values)
    _remember(settings.influx_token)
    if settings.mqtt is not None and settings.mqtt.password is not None:
        _remember(settings.mqtt.password)
    return settings


def _read_file(path: Path, how: str = "--config") -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} ({how}) does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"configuration file {path} is not valid TOML: {error}") from None
    except PermissionError:
        from recorder.access import describe_access, join_group_hint

        raise ConfigError(
            f"cannot read configuration file {path} ({how}): permission denied; {describe_access(path)}. "
            f"{join_group_hint(path)}, or name another file with --config"
        ) from None
    except OSError as error:
        raise ConfigError(f"cannot read configuration file {path} ({how}): {error.strerror}") from None
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if key == "influx" and isinstance(value, dict):
            for inner, inner_value in value.items():
                flat[f"influx_{inner}"] = inner_value
        else:
            flat[key] = value
    return flat
