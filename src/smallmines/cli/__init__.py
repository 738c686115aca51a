"""The ``smallmines`` command line: a thin layer over the Python API.

Each group lives in its own module and registers its commands here. Command bodies resolve options,
call one API function and print the result; every :class:`~smallmines.errors.SmallminesError`
becomes a one-line message and exit code 1 (see :mod:`smallmines.cli._common`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from smallmines.cli import build, change, data, demo, fetch, mapping, monitor, report, train
from smallmines.cli._common import LIGHTNING_COMMANDS, out, set_verbosity, setup_logging

app = typer.Typer(
    name="smallmines",
    help="Map artisanal and small-scale gold mining from Sentinel-1/2 and DEM imagery (SmallMinesDS).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data.app, name="data")
for _module in (fetch, build, train, mapping, change, report, monitor, demo):
    _module.register(app)


def _version(value: bool) -> None:
    if value:
        from smallmines import __version__

        out.print(f"smallmines {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug messages, also from libraries.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Map artisanal and small-scale gold mining from Sentinel-1/2 and DEM imagery (SmallMinesDS)."""
    set_verbosity(1 if verbose else -1 if quiet else 0)
    setup_logging(lightning=ctx.invoked_subcommand in LIGHTNING_COMMANDS)


def main() -> None:
    """Console-script entry point."""
    app()
