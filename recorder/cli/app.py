"""The `recorder` command: typer app and the one place errors become exit codes.

Start-up time matters (a person types `recorder status` on a Raspberry Pi): the command modules
imported here carry only their signatures; each command imports what it needs when it runs.
Help is plain text (`rich_markup_mode=None`): rich's formatting would cost more than the rest of
start-up together. `benchmarks/startup.py` measures it.
"""

from __future__ import annotations

import sys

import typer

from recorder import __version__
from recorder.cli import backfill, db, diagnostics, nodes, report, run, simulate
from recorder.cli.framework import Command, Group
from recorder.errors import RecorderError
from recorder.logs import configure_logging

app = typer.Typer(
    name="recorder",
    help="Passively record a Tigo TAP bus: optimizer power reports, by barcode, into InfluxDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"recorder {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    log_level: str = typer.Option(
        "INFO",
        "--log-level",
        envvar="RECORDER_LOG_LEVEL",
        help="DEBUG, INFO, WARNING or ERROR.",
        metavar="LEVEL",
    ),
) -> None:
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise RecorderError(f"--log-level: {log_level!r} is not one of DEBUG, INFO, WARNING, ERROR")
    configure_logging(log_level)


app.command("peek", cls=Command)(diagnostics.peek)
app.command("observe", cls=Command)(diagnostics.observe)
app.command("list-serial-ports", cls=Command)(diagnostics.list_serial_ports)
app.command("run", cls=Command)(run.run)
app.command("status", cls=Command)(run.status)
app.command("backfill", cls=Command)(backfill.backfill)
app.command("simulate", cls=Command)(simulate.simulate)
app.command("report", cls=Command)(report.report)
app.add_typer(nodes.app, name="nodes")
app.add_typer(db.app, name="db")


def main() -> None:
    """Entry point: run the app; any user error becomes one line on stderr and a non-zero exit."""
    try:
        result = app(prog_name="recorder", standalone_mode=False)
    except RecorderError as error:
        print(f"recorder: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except typer.TyperException as error:
        # Usage errors from the command-line parser (typer vendors click's exceptions).
        context = getattr(error, "ctx", None)
        if type(error).__name__ == "NoArgsIsHelpError" and context is not None:
            print(context.get_help())
            sys.exit(0)
        hint = f" (see `{context.command_path} --help`)" if context is not None else ""
        print(f"recorder: error: {error.format_message()}{hint}", file=sys.stderr)
        sys.exit(error.exit_code if error.exit_code else 2)
    except typer.Abort:
        print("recorder: aborted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(0)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
