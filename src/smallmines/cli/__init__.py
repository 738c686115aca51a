"""The ``smallmines`` command line: a thin layer over the Python API.

Each group lives in its own module and registers its commands here. Command bodies resolve options,
call one API function and print the result; every :class:`~smallmines.errors.SmallminesError`
becomes a one-line message and exit code 1 (see :mod:`smallmines.cli._common`).
"""

from __future__ import annotations

import typer

from smallmines.cli import build, change, data, demo, mapping, report, train

app = typer.Typer(
    name="smallmines",
    help="Map artisanal and small-scale gold mining from Sentinel-1/2 and DEM imagery (SmallMinesDS).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data.app, name="data")
for _module in (build, train, mapping, change, report, demo):
    _module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
