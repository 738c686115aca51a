"""``smallmines monitor``: fetch -> map -> change -> report for an area over several years."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from smallmines.cli._common import api_errors, console, out, setup_logging


def register(app: typer.Typer) -> None:
    """Add the ``monitor`` command to the main app."""

    @app.command("monitor")
    def monitor(
        aoi: Annotated[str | None, typer.Argument(help="Area: a vector file or a bbox W,S,E,N in degrees (after "
                                                       "-- when W is negative).", show_default=False)] = None,
        years: Annotated[list[str], typer.Option(help="Two or more years: --years 2016,2019,2022 (or --years "
                                                      "repeated). Change between the first and the last; three or "
                                                      "more also give the history per year.",
                                                 show_default=False)] = ...,
        model: Annotated[Path, typer.Option(help="Model file: model.pt, .ckpt or .onnx.", exists=True,
                                            dir_okay=False, show_default=False)] = ...,
        output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")] = Path("monitor"),
        bbox: Annotated[str | None, typer.Option(help="The area as a bbox W,S,E,N in degrees instead of AOI.")] = None,
        stac: Annotated[str, typer.Option(help="planetary-computer, earth-search, a STAC API URL, or a local "
                                               "catalog.json / ItemCollection JSON.")] = "planetary-computer",
        s1_stac: Annotated[str | None, typer.Option(help="Take Sentinel-1 RTC from this catalogue instead: "
                                                         "--stac earth-search --s1-stac planetary-computer.")] = None,
        months: Annotated[str, typer.Option(help="Months of each year's window: 1, 1-3, 12-2.")] = "1",
        context: Annotated[Path | None, typer.Option(help="Polygons (districts, forest reserves) for zonal "
                                                          "tables and the report map.", exists=True,
                                                     dir_okay=False)] = None,
        context_field: Annotated[str | None, typer.Option(help="Attribute naming the context polygons.")] = None,
        confirm: Annotated[int, typer.Option(help="With three or more years: consecutive maps mining must be seen "
                                                  "in to count (2 drops one-year flickers; 1 keeps the maps as "
                                                  "they are).", min=1)] = 2,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    ) -> None:
        """Fetch each year's scene, map mining, measure the change and write one report.

        Writes OUTPUT/scenes/YEAR, OUTPUT/maps/YEAR, OUTPUT/change and OUTPUT/report.html; a rerun
        reuses the fetched scenes.
        """
        setup_logging(verbose)
        if (aoi is None) == (bbox is None):
            raise typer.BadParameter("give the area as AOI (a vector file or bbox) or as --bbox W,S,E,N, once")
        with api_errors():
            from smallmines.monitor import run_monitor

            result = run_monitor(aoi or bbox, years, model, output, stac=stac, months=months, context=context,
                                 context_field=context_field, confirm=confirm, s1_stac=s1_stac,
                                 step=lambda text: console.print(f"[bold cyan]>>[/] {escape(text)}"))
        table = Table(title=f"monitor written to {escape(str(result.out))}", show_edge=False, header_style="bold")
        history = result.history.table.set_index("year") if result.history is not None else None
        columns = ["year", "mined ha", "S2 items", "clear pixels"]
        if history is not None:
            columns[1:2] = ["mapped ha", "mined ha", "new ha"]
        for column in columns:
            table.add_column(column, justify="right")
        for year, mapped in result.maps.items():
            record = result.scenes[year].record
            row = [str(year), f"{mapped.mined_area_ha:,.1f}", str(len(record["items"]["s2"])),
                   f"{100 * record['sentinel2']['clear_pixel_share']:.1f} %"]
            if history is not None:
                new = history.loc[year, "new_ha"]
                row[2:2] = [f"{history.loc[year, 'mined_ha']:,.1f}", "" if new != new else f"{new:,.1f}"]
            table.add_row(*row)
        out.print(table)
        if history is not None:
            out.print(f"mapped: each map as it is; mined: seen in {result.history.confirm} consecutive maps "
                      "(--confirm), on the pixels valid in every map; new: mined for the first time")
        s = result.change.summary
        first_seen = ""
        if history is not None:
            first_seen = (f"; ever mined {result.history.summary['ever_mined_ha']:,.1f} ha "
                          f"(first_year.tif / last_year.tif: year each pixel was first and last seen mined)")
        out.print(f"net growth {s['year_a']}-{s['year_b']}: [bold]{s['net_growth_ha']:+,.1f} ha[/]{first_seen}; "
                  f"report: {escape(str(result.report))}")
