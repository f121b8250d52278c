"""Options and helpers shared by the CLI commands.

Every command module imports only this, typer and light modules at import time; what a command
needs (SQLAlchemy, the decoder, influxdb-client, the backfill machinery) is imported inside the
command's function, so `recorder --help` and the read-only commands start quickly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

try:  # typer internals, used only to skip an import; without them, typer's own path is taken
    from dataclasses import dataclass as _dataclass

    from typer._click.exceptions import BadParameter as _BadParameter
    from typer._coercion import RuntimeParam as _RuntimeParam
except ImportError:  # pragma: no cover - a typer without these internals
    _RuntimeParam = None  # type: ignore[assignment,misc]

from recorder.config import Settings, environment_names, load_settings
from recorder.errors import UsageError

if TYPE_CHECKING:
    import sqlite3

    from recorder.storage.state import StateStore


_METAVARS: dict[type, str] = {str: "TEXT", int: "INTEGER", float: "NUMBER", Path: "PATH"}


def _metavar(param: Any) -> str | None:
    """A Unix-style metavar for a parameter declared without one (flags need none)."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    descriptor = getattr(param, "type_descriptor", None)
    choices = getattr(descriptor, "choices", None)
    if choices:
        return "|".join(str(getattr(choice, "value", choice)) for choice in choices)
    if isinstance(param, TyperArgument):
        return str(param.name or "VALUE").upper()
    return _METAVARS.get(getattr(descriptor, "annotation", None), "VALUE")  # type: ignore[arg-type]


class Command(TyperCommand):
    """A typer command whose help reads like a Unix tool's.

    Typer labels every parameter with its Python type (`--name <str>`, `PATH... <list[Path]>`) and
    writes a required argument as `{PATH}...` in the usage line. Here every parameter gets a
    metavar (`TEXT`, `INTEGER`, `bytes|frames|activity`, or the one declared) and shows just that;
    flags show nothing. Register commands with `cls=Command`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            _plain_coercion(param)
            if param.metavar is None:
                param.metavar = _metavar(param)
            if isinstance(param, TyperArgument) and param.metavar is not None:
                metavar = param.metavar
                usage = metavar if param.required else f"[{metavar}]"
                if param.nargs != 1 and not metavar.endswith("..."):
                    usage += "..."
                # Instance attributes shadow the methods typer would call for help and usage.
                setattr(param, "display_type_rich", lambda ctx: None)  # noqa: B010
                setattr(param, "_usage_display_name", lambda usage=usage: usage)  # noqa: B010

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        _plain_coercion(option)
        return option


class Group(TyperGroup):
    """The root command group: its own options (--log-level) converted like `Command`'s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            _plain_coercion(param)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        _plain_coercion(option)
        return option


_PLAIN_TYPES: dict[type, str] = {
    str: "text",
    int: "integer",
    float: "number",
    Path: "path",
    bool: "boolean",
}
_BOOLEANS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}

if _RuntimeParam is not None:

    @_dataclass(frozen=True)
    class _PlainRuntimeParam(_RuntimeParam):
        """str/int/float/Path conversion without building a pydantic validator.

        Typer 0.29 converts every option's value (even its default) through pydantic, whose import
        alone takes about 0.1 s here and far more on a Raspberry Pi; for the plain types our
        commands use, `int("5")` is all it takes.
        """

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            kind = self.annotation
            if isinstance(value, kind):
                return value
            if kind is bool and str(value).strip().lower() in _BOOLEANS:
                return _BOOLEANS[str(value).strip().lower()]
            try:
                if kind is bool:
                    raise ValueError(value)
                return kind(value)
            except (TypeError, ValueError):
                raise _BadParameter(
                    f"{value!r} is not a valid {_PLAIN_TYPES[kind]}.", ctx=ctx, param=param
                ) from None


def _plain_coercion(param: Any) -> None:
    """Give a plain str/int/float/Path parameter `_PlainRuntimeParam` (see there); leave others."""
    descriptor = getattr(param, "type_descriptor", None)
    if _RuntimeParam is None or descriptor is None or not hasattr(param, "_runtime_param"):
        return
    info = descriptor.parameter_info
    constrained = any(
        getattr(info, name, None) not in (None, False)
        for name in (
            "min",
            "max",
            "parser",
            "click_type",
            "exists",
            "resolve_path",
            "allow_dash",
            "path_type",
        )
    )
    if descriptor.annotation in _PLAIN_TYPES and not constrained and descriptor.file_annotation is None:
        try:
            param._runtime_param = _PlainRuntimeParam(parameter_info=info, annotation=descriptor.annotation)
        except TypeError:  # another typer's RuntimeParam: let typer convert it its own way
            return


SourceOption = typer.Option(
    ...,
    "--source",
    "-s",
    envvar="RECORDER_SOURCE",
    help="Where to read bus bytes: /dev/ttyUSB0, tcp://HOST[:PORT] (default port 7160), "
    "capture:PATH, raw:PATH or sim:[?OPTIONS].",
    show_default=False,
    metavar="URL",
)


def setting_option(name: str, *flags: str, help: str, metavar: str = "TEXT", **extra: Any) -> Any:
    """A flag for setting `name`, whose help names its environment variables and file key.

    The flag itself reads nothing from the environment: `recorder.config.load_settings` merges
    flags, environment and file, so every command resolves a setting the same way.
    """
    variables = ", ".join(environment_names(name))
    return typer.Option(
        None,
        *flags,
        help=f"{help} [env var: {variables}; file: {name}]",
        show_default=False,
        metavar=metavar,
        **extra,
    )


def config_option() -> Any:
    return typer.Option(
        None,
        "--config",
        help="TOML configuration file. Default: RECORDER_CONFIG, else /etc/recorder/recorder.toml "
        "when it exists, else ~/.config/recorder/recorder.toml when it exists.",
        show_default=False,
        metavar="FILE",
    )


def db_option() -> Any:
    return setting_option(
        "db",
        "--db",
        help="State database (SQLite). Default: /var/lib/recorder/recorder.db as root, "
        "else ~/.local/share/recorder/recorder.db.",
        metavar="FILE",
    )


DbOption = db_option()
ConfigOption = config_option()


def settings_for(db: Path | None, config: Path | None, **flags: Any) -> Settings:
    """Settings of a command that takes --db and --config (and maybe more flags)."""
    return load_settings({"db": db, **flags}, config)


def read_only_database(settings: Settings) -> sqlite3.Connection:
    """The state database, to look at: never created, migrated or locked (see storage.readonly)."""
    from recorder.storage.readonly import open_read_only

    return open_read_only(settings.database_path, settings.database.how)


def writable_store(settings: Settings) -> StateStore:
    """The state database, to change: created (its directory too, at the default location) and
    migrated when needed."""
    from recorder.storage.state import StateStore

    return StateStore.open(
        settings.database_path, create_directory=settings.db is None, how=settings.database.how
    )


def check_output_path(path: Path, option: str) -> Path:
    """A file a command is about to write: not a directory, in a directory that exists."""
    path = path.expanduser()
    if path.is_dir():
        raise UsageError(f"{option}: {path} is a directory; give the path of a file to write")
    if not path.parent.is_dir():
        raise UsageError(f"{option}: cannot write {path}: directory {path.parent} does not exist")
    return path


def parse_datetime(text: str, what: str) -> datetime:
    """ISO-8601; a missing offset means UTC. Raises UsageError naming the option."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{what}: {text!r} is not an ISO-8601 time (e.g. 2025-06-21T09:00:00+00:00)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def utc_now() -> datetime:
    """The CLI is the boundary where wall-clock time enters (imports, labels, status)."""
    return datetime.now(UTC)


def display_time(at: datetime | None) -> str:
    return at.astimezone().strftime("%Y-%m-%d %H:%M") if at else "-"
