"""How the recorder's commands sit on typer: Unix-style help, and option values converted without
pydantic.

Register every command with `cls=Command` and every group with `cls=Group`:

* help: typer labels each parameter with its Python type (`--name <str>`, `PATH... <list[Path]>`)
  and writes a required argument as `{PATH}...` in the usage line; here every parameter has a
  metavar (`TEXT`, `INTEGER`, `bytes|frames|activity`, or the one declared) and shows just that,
  and flags show nothing;
* start-up: typer 0.29 converts every option's value (even its default) through a pydantic
  validator, whose import alone takes about 0.1 s here and far more on a Raspberry Pi. Options of
  plain types (str, int, float, Path, bool) without constraints get a converter that does what
  `int("5")` does. This uses typer internals (`RuntimeParam`, `_runtime_param`); without them,
  typer converts as usual, only slower (tests/cli/test_newcomer.py notices).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup

try:  # typer internals, used only to skip an import; without them, typer's own path is taken
    from typer._click.exceptions import BadParameter as _BadParameter
    from typer._coercion import RuntimeParam as _RuntimeParam
except ImportError:  # pragma: no cover - a typer without these internals
    _RuntimeParam = None  # type: ignore[assignment,misc]


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
    """A typer command with Unix-style help and plain option conversion (module docstring)."""

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

    @dataclass(frozen=True)
    class _PlainRuntimeParam(_RuntimeParam):
        """str/int/float/Path/bool conversion without building a pydantic validator."""

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
