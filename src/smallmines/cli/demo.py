"""``smallmines demo``: the whole story on the synthetic twin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from smallmines.cli._common import api_errors, console, out, setup_logging


def demo(
    folder: Annotated[Path, typer.Argument(help="Folder for everything the demo writes.")] = Path("demo"),
    tiles: Annotated[int, typer.Option(help="Synthetic patches per year.")] = 128,
    scene_size: Annotated[int, typer.Option(help="Pixels per side of the synthetic scenes.")] = 1024,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
) -> None:
    """Synthesise SmallMinesDS, train, evaluate, map two years, measure change and write a report."""
    from smallmines.demo import run_demo

    setup_logging()
    with api_errors():
        result = run_demo(folder, tiles=tiles, scene_size=scene_size, seed=seed,
                          step=lambda text: console.print(f"[bold cyan]>>[/] {text}"))
    table = Table(title="smallmines demo", show_header=False)
    for key, value in result.headline.items():
        table.add_row(key, json.dumps(value) if not isinstance(value, str) else value)
    table.add_row("preview", str(result.preview))
    table.add_row("report", str(result.report))
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the main app."""
    app.command()(demo)
