"""``smallmines change``: compare two mine maps, or the two years of a dataset tile by tile."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from smallmines.cli._common import api_errors, console, out, progress_bar, setup_logging


def _growth_line(summary: dict[str, Any]) -> str:
    rate = summary.get("annual_growth_rate_pct")
    pct = summary.get("net_growth_pct")
    return (f"mining {summary['year_a']}: [bold]{summary['mining_a_ha']:,.1f} ha[/]  ->  {summary['year_b']}: "
            f"[bold]{summary['mining_b_ha']:,.1f} ha[/]   net [bold]{summary['net_growth_ha']:+,.1f} ha[/]"
            + (f" ({pct:+.1f} %)" if pct is not None else "")
            + (f", [bold]{rate:+.1f} %[/] per year" if rate is not None else ", annual rate undefined (no mining "
               "in the first year)"))


def _print_areas(table: Any) -> None:
    import pandas as pd
    from rich.table import Table

    from smallmines.legend import ChangeClass
    from smallmines.report.figures import CHANGE_COLOURS

    view = Table(show_edge=False, header_style="bold")
    view.add_column("class")
    view.add_column("area (ha)", justify="right")
    view.add_column("% of valid", justify="right")
    for _, row in table.iterrows():
        code = row["code"]
        swatch = "  " if pd.isna(code) else f"[{CHANGE_COLOURS[ChangeClass(int(code))]}]\u25a0[/] "
        view.add_row(swatch + str(row["class"]), f"{row['area_ha']:,.1f}", f"{row['pct_valid']:.2f}")
    out.print(view)


def register(app: typer.Typer) -> None:
    """Add the ``change`` command to the main app."""

    @app.command("change")
    def change(
        map_a: Annotated[Path | None, typer.Argument(help="First-year map: a `smallmines map` folder, its mines.tif "
                                                          "or any 0/1 raster.")] = None,
        map_b: Annotated[Path | None, typer.Argument(help="Second-year map (any grid or CRS; aligned to MAP_A).")] = None,
        output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")] = Path("change"),
        dataset: Annotated[Path | None, typer.Option("--dataset", help="Compare the two years of a SmallMinesDS "
                                                     "(zip, folder or .smpack) tile by tile instead of two maps.",
                                                     exists=True)] = None,
        year_a: Annotated[int | None, typer.Option(help="First year (default: the map's summary.json or name, "
                                                        "else 2016; for --dataset the earliest year).")] = None,
        year_b: Annotated[int | None, typer.Option(help="Second year (default likewise, else 2022).")] = None,
        zones: Annotated[Path | None, typer.Option(help="Polygons for per-zone statistics (GeoPackage, GeoJSON, "
                                                   "shapefile).", exists=True, dir_okay=False)] = None,
        zone_field: Annotated[str | None, typer.Option(help="Attribute that names each zone (default: name).")] = None,
        min_area: Annotated[float, typer.Option(help="Smallest change polygon kept in change.gpkg, in hectares.",
                                                min=0.0)] = 0.0,
        figures: Annotated[bool, typer.Option(help="Also write PNG/PDF figures under OUTPUT/figures.")] = True,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    ) -> None:
        """Map where mining appeared, persisted and ceased between two years, with areas and growth.

        Two maps give change.tif (0 no mining, 1 new, 2 persistent, 3 ceased), change.gpkg, areas.csv
        and summary.json (and zones.csv/zones.gpkg with --zones). --dataset gives tiles.csv,
        tiles.gpkg, areas.csv and summary.json for the labelled masks.
        """
        setup_logging(verbose)
        logging.getLogger("pyogrio").setLevel(logging.DEBUG if verbose else logging.WARNING)
        with api_errors():
            if dataset is not None:
                if map_a is not None or map_b is not None:
                    raise typer.BadParameter("give either two maps or --dataset, not both")
                from smallmines.analysis.tiles import dataset_change

                with progress_bar("reading tile pairs") as update:
                    result = dataset_change(dataset, output, year_a, year_b, figures=figures, progress=update)
                s = result.summary
                out.print(f"[bold]{s['tiles_paired']:,}[/] tiles in both {s['year_a']} and {s['year_b']}"
                          + (f" ({s['tiles_unpaired']:,} in one year only, left out)" if s["tiles_unpaired"] else ""))
                counts = ", ".join(f"{k} {v}" for k, v in s["tiles_by_status"].items() if v)
                out.print(f"tiles: {counts}")
                out.print(_growth_line(s))
                out.print(f"written to {result.out_dir}")
                return
            if map_a is None or map_b is None:
                raise typer.BadParameter("give two maps (MAP_A MAP_B) or --dataset PATH")
            from smallmines.analysis.change import compare_maps

            result = compare_maps(map_a, map_b, output, year_a, year_b, zones=zones, zone_field=zone_field,
                                  min_area_ha=min_area, figures=figures)
            _print_areas(result.table)
            out.print(_growth_line(result.summary))
            if result.zones is not None:
                partial = result.summary["zones"]["partial"] + result.summary["zones"]["outside"]
                out.print(f"{len(result.zones)} zones written to {result.zones_csv}"
                          + (f"; [yellow]{len(partial)} only partly covered or outside[/]: {', '.join(partial[:6])}"
                             if partial else ""))
            console.print(f"written to {result.out_dir}")
