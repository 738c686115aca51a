"""``smallmines build``: a SmallMinesDS-format dataset from scene rasters and mine polygons."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from smallmines.cli._common import OVERWRITE_HELP, api_errors, out, progress_bar, setup_logging

ExistingFile = {"exists": True, "dir_okay": False}


def build_command(
    labels: Annotated[Path, typer.Option("--labels", help="Mine polygons (GeoPackage, Shapefile, GeoJSON; any CRS).",
                                         **ExistingFile)],
    country: Annotated[str, typer.Option("--country", help="Country code in the file names (GH, CIV, PER...).")],
    year: Annotated[int, typer.Option("--year", help="Acquisition year of the imagery.")],
    scene: Annotated[list[Path] | None, typer.Option(
        "--scene", help="Stacked scene raster (13 bands in published order or named by band descriptions); "
                        "repeat for tiles.", **ExistingFile)] = None,
    s2: Annotated[list[Path] | None, typer.Option(
        "--s2", help="Sentinel-2 raster (repeat for 10 m and 20 m files or tiles).", **ExistingFile)] = None,
    s1: Annotated[list[Path] | None, typer.Option("--s1", help="Sentinel-1 VV/VH raster in dB (repeatable).",
                                                  **ExistingFile)] = None,
    dem: Annotated[list[Path] | None, typer.Option("--dem", help="Elevation raster in metres (repeatable).",
                                                   **ExistingFile)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Dataset folder (a second year goes into the same "
                                                                "folder, on the same tile grid).")] = Path("dataset"),
    like: Annotated[Path | None, typer.Option(help="Reuse the tile grid and ids of this built dataset.",
                                              exists=True, file_okay=False)] = None,
    layer: Annotated[str | None, typer.Option(help="Layer of --labels holding the mine polygons.")] = None,
    class_field: Annotated[str | None, typer.Option(help="Attribute of --labels whose --unknown-value marks "
                                                         "unknown areas (mask 255).")] = None,
    unknown_value: Annotated[list[str] | None, typer.Option(help="Value of --class-field meaning unknown "
                                                                 "(repeatable; default: unknown).")] = None,
    unknown: Annotated[str | None, typer.Option(help="Unknown areas (mask 255): a layer of --labels or another "
                                                     "vector file.")] = None,
    tile_size: Annotated[int | None, typer.Option(help="Tile side in pixels (default 128).", min=1)] = None,
    stride: Annotated[int | None, typer.Option(help="Pixels between tiles (default: the tile side).", min=1)] = None,
    bands: Annotated[str, typer.Option(help="Bands to write (default all 13, as SmallMinesDS).")] = "all",
    band_order: Annotated[str | None, typer.Option(help="Names of the stacked file's bands in order.")] = None,
    scale: Annotated[str | None, typer.Option(help="Multiply bands on read: 10000 or s2=10000,dem=0.3048.")] = None,
    max_nodata: Annotated[float, typer.Option(help="Skip tiles with more nodata (or unknown) than this fraction.")
                          ] = 0.5,
    keep_empty: Annotated[float, typer.Option(help="Fraction of mining-free tiles kept (seeded).")] = 1.0,
    min_share: Annotated[float, typer.Option(help="Skip tiles with a mining share above 0 but below this %.")
                         ] = 0.0,
    test_fraction: Annotated[float, typer.Option(help="Share of new sites in the test split.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the negative sampling and the split.")] = 0,
    cluster: Annotated[str | None, typer.Option(help="Dask scheduler address (tcp://host:8786).")] = None,
    workers: Annotated[int | None, typer.Option(help="Start a local Dask cluster of N worker processes.",
                                                min=1)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP + " Another year is added "
                                            "without it.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Build a SmallMinesDS-format dataset (patches, masks, splits, footprints, card) for one year."""
    setup_logging(verbose)
    with api_errors():
        from smallmines.data.build.build import build_dataset
        from smallmines.data.build.labels import UNKNOWN_VALUES

        with progress_bar("building tiles") as update:
            result = build_dataset(
                output, labels, country, year, stacked=scene or None, s2=s2 or None, s1=s1 or None,
                dem=dem or None, layer=layer, class_field=class_field,
                unknown_values=tuple(unknown_value or UNKNOWN_VALUES), unknown=unknown, like=like, tile=tile_size,
                stride=stride, bands=bands, band_order=band_order, scale=scale, max_nodata=max_nodata,
                keep_empty=keep_empty, min_share=min_share, test_fraction=test_fraction, seed=seed,
                cluster=cluster, workers=workers, progress=update, overwrite=overwrite)
    grid = result.grid
    table = Table(title=escape(f"{result.year}: {len(result.patches)} patches in {result.out}"), show_header=False)
    splits = {name: sum(1 for s in result.split.values() if s == name) for name in ("train", "test")}
    table.add_row("tiles", f"{grid.rows} x {grid.columns} of {grid.tile} px (stride {grid.stride}); "
                           f"skipped {', '.join(f'{k} {v}' for k, v in result.skipped.items() if v) or 'none'}")
    table.add_row("split", f"train {splits['train']}, test {splits['test']}")
    table.add_row("mining", f"{result.mining_share:.2f} % of valid pixels (mean over patches)")
    for report in result.labels:
        fixed = len(report["repaired"])
        dropped = len(report["empty"]) + len(report["not_polygon"]) + len(report["outside"])
        table.add_row("labels", escape(f"{report['source']}: {report['mining']} mining, {report['unknown']} unknown, "
                                       f"{fixed} repaired, {dropped} skipped"))
    if result.unpaired:
        table.add_row("unpaired", f"{len(result.unpaired)} patches without the same tile in another year, e.g. "
                                  f"{result.unpaired[0]} (rebuild the other year to pair them)")
    table.add_row("footprints", str(result.footprints))
    table.add_row("card", str(result.card))
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``build`` to the main app."""
    app.command("build")(build_command)
