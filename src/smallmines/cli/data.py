"""``smallmines data``: synthesise, check, pack, describe and preview datasets."""

from __future__ import annotations

import typer

app = typer.Typer(help="Datasets: synthesise, check, split, compute statistics, pack and preview.",
                  no_args_is_help=True)
