"""``smallmines report``: one self-contained HTML report of a run, maps, change and dataset."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from smallmines.cli._common import OVERWRITE_HELP, api_errors, out, progress_bar, setup_logging


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to the main app."""

    @app.command("report")
    def report(
        run_dir: Annotated[Path, typer.Argument(help="A training run, map or change folder, a dataset, or a folder "
                                                     "holding maps/ and change/.", exists=True, file_okay=False)],
        output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path("report.html"),
        data: Annotated[Path | None, typer.Option("--data", help="The dataset (default: data.root of config.yaml).",
                                                  exists=True)] = None,
        figures: Annotated[Path | None, typer.Option("--figures", help="Also save every figure here as PNG and PDF.",
                                                     file_okay=False)] = None,
        title: Annotated[str | None, typer.Option(help="Report title.")] = None,
        max_overlay_px: Annotated[int, typer.Option(help="Largest side of a raster layer on the web map, pixels.",
                                                    min=64)] = 1600,
        samples: Annotated[int, typer.Option(help="Sample predictions to draw.", min=0)] = 4,
        context: Annotated[Path | None, typer.Option(help="Polygons (districts, forest reserves) drawn on the maps "
                                                          "over the country outlines; the zonal table uses them "
                                                          "when the change folder has none.", exists=True,
                                                     dir_okay=False)] = None,
        context_field: Annotated[str | None, typer.Option(help="Attribute naming the context polygons "
                                                               "(default: name).")] = None,
        maps: Annotated[list[Path] | None, typer.Option("--maps", help="A map folder (or its mines.tif) to show "
                                                        "besides those under RUN_DIR (repeatable).")] = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    ) -> None:
        """Write one HTML file (opens offline) with the dataset, training, metrics, maps and change.

        The map carries Natural Earth country outlines (embedded, no tile server) and --context polygons.
        """
        setup_logging(verbose)
        logging.getLogger("pyogrio").setLevel(logging.DEBUG if verbose else logging.WARNING)
        from smallmines.folders import refuse_overwrite
        from smallmines.report.build import build_report

        with api_errors():
            refuse_overwrite([output], overwrite)
        with api_errors(), progress_bar("reading the dataset") as update:
            path = build_report(run_dir, output, data=data, figures_dir=figures, title=title,
                                max_overlay_px=max_overlay_px, samples=samples, progress=update,
                                context=context, context_field=context_field, maps=maps)
        size = path.stat().st_size / 1e6
        out.print(f"report written to [bold]{path}[/] ({size:.1f} MB)" + (f"; figures in {figures}" if figures else ""))
