"""``smallmines fetch``: an area and a year -> the analysis-ready 13-band scene from STAC catalogues."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from smallmines.cli._common import OVERWRITE_HELP, api_errors, out, progress_bar, setup_logging


def _collections(pairs: list[str] | None) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for pair in pairs or []:
        sensor, _, collection = pair.partition("=")
        if sensor not in ("s2", "s1", "dem") or not collection:
            raise typer.BadParameter(f"--collection {pair!r}: expected s2=ID, s1=ID or dem=ID")
        found[sensor] = collection
    return found


def register(app: typer.Typer) -> None:
    """Add the ``fetch`` command to the main app."""

    @app.command("fetch")
    def fetch(
        aoi: Annotated[str | None, typer.Argument(help="Area: a vector file (GeoPackage, GeoJSON, shapefile...) or "
                                                       "a bbox W,S,E,N in degrees (after -- when W is negative).",
                                                  show_default=False)] = None,
        year: Annotated[int, typer.Option(help="Year of the observation window.", show_default=False)] = ...,
        bbox: Annotated[str | None, typer.Option(help="The area as a bbox W,S,E,N in degrees instead of AOI "
                                                      "(e.g. --bbox -2.05,5.60,-1.95,5.70).")] = None,
        output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")] = Path("scene"),
        stac: Annotated[str, typer.Option(help="planetary-computer, earth-search, a STAC API URL, or a local "
                                               "catalog.json / ItemCollection JSON.")] = "planetary-computer",
        months: Annotated[str, typer.Option(help="Months of the window: 1 (January, as SmallMinesDS), 1-3, or "
                                                 "12-2 (from December of the year before).")] = "1",
        statistic: Annotated[str, typer.Option(help="Sentinel-2 composite statistic: median, mean, q25, "
                                                    "q75.")] = "median",
        s1_stac: Annotated[str | None, typer.Option(help="Take Sentinel-1 RTC from this catalogue instead (same "
                                                         "forms as --stac): earth-search serves none, so "
                                                         "--stac earth-search --s1-stac planetary-computer.")] = None,
        collection: Annotated[list[str] | None, typer.Option(
            help="Override a collection id: s2=ID, s1=ID or dem=ID (repeatable).")] = None,
        chunk: Annotated[int, typer.Option(help="Dask chunk side in pixels (memory per chunk grows with its "
                                                      "square and the number of observations).", min=64)] = 512,
        overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP + " Files of the same request "
                                                "are reused without it.")] = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    ) -> None:
        """Fetch Sentinel-2 L2A, Sentinel-1 RTC and the Copernicus DEM for AOI and composite them.

        Writes OUTPUT/scene.tif (13 bands, published order, 10 m, the AOI's UTM zone), the per-sensor
        s2.tif, s2_count.tif, s1.tif, dem.tif and fetch.json (provenance). A rerun reuses unchanged files.
        """
        setup_logging(verbose)
        if (aoi is None) == (bbox is None):
            raise typer.BadParameter("give the area as AOI (a vector file or bbox) or as --bbox W,S,E,N, once")
        with api_errors():
            from smallmines.acquire.fetcher import fetch as fetch_scene

            with progress_bar("compositing") as update:
                result = fetch_scene(aoi or bbox, year, output, stac=stac, months=months, statistic=statistic,
                                     collections=_collections(collection), chunk=chunk, progress=update,
                                     s1_stac=s1_stac, overwrite=overwrite)
        record = result.record
        grid = record["grid"]
        table = Table(title=f"fetched {year} into {escape(str(result.out_dir))}", show_edge=False,
                      header_style="bold")
        for column in ("file", "contents", "items"):
            table.add_column(column)
        s2 = record["sentinel2"]
        rows = [
            ("scene.tif", "13 bands, published order", ""),
            ("s2.tif", f"S2 L2A {s2['statistic']}, reflectance x10000", str(len(record["items"]["s2"]))),
            ("s2_count.tif", f"clear observations (mean {s2['mean_clear_observations']:.1f}, "
                             f"{100 * s2['clear_pixel_share']:.1f} % of pixels clear)", ""),
            ("s1.tif", "S1 RTC VV, VH in dB (Lee, median)", str(len(record["items"]["s1"]))),
            ("dem.tif", "Copernicus DEM, m", str(len(record["items"]["dem"]))),
        ]
        for name, contents, items in rows:
            reused = " (reused)" if name.removesuffix(".tif").replace("_count", "") in result.reused else ""
            table.add_row(name + reused, contents, items)
        out.print(table)
        out.print(f"grid {grid['crs']}, {grid['width']} x {grid['height']} pixels at 10 m; "
                  f"window {record['window']['start'][:10]} to {record['window']['end'][:10]}; "
                  f"provenance in {escape(str(result.out_dir / 'fetch.json'))}")
