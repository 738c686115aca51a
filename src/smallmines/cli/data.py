"""``smallmines data``: synthesise, check, split, compute statistics, pack and preview datasets.

Every command resolves its options, calls one API function and prints a summary on stdout; a
:class:`~smallmines.errors.SmallminesError` becomes a one-line message on stderr and exit code 1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from smallmines.cli._common import OVERWRITE_HELP, api_errors, console, out, progress_bar

app = typer.Typer(help="Datasets: synthesise, check, split, compute statistics, pack and preview.",
                  no_args_is_help=True)

DatasetArg = Annotated[Path, typer.Argument(help="SmallMinesDS.zip, the folder holding SmallMinesDS/, or a .smpack "
                                                 "pack.", exists=True)]
SplitsDirOpt = Annotated[Path | None, typer.Option("--splits-dir", help="Folder holding train_test_splits_{YEAR}.csv "
                                                   "when not beside the data.", file_okay=False)]
SeedOpt = Annotated[int, typer.Option(help="Seed for every random choice.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)]
MAX_PROBLEMS = 40
"""Problems printed by ``check``; the JSON report holds all of them."""


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _counts_table(title: str, counts: dict[int, dict[str, int]], total: bool = True) -> Table:
    """Rows per year; columns per count (a column that is zero in every year is left out)."""
    columns = [c for c in dict.fromkeys(c for row in counts.values() for c in row)
               if any(row.get(c, 0) for row in counts.values())]
    table = Table(title=escape(title))
    table.add_column("year")
    for column in columns:
        table.add_column(column, justify="right")
    if total:
        table.add_column("total", justify="right")
    for year, row in counts.items():
        cells = [str(row.get(c, 0)) for c in columns] + ([str(sum(row.values()))] if total else [])
        table.add_row(str(year), *cells)
    return table


@app.command()
def synth(
    output: Annotated[Path, typer.Argument(help="Folder to write the dataset into.")],
    tiles: Annotated[int, typer.Option(help="Tiles per year (patches = tiles x years).", min=1)] = 256,
    seed: SeedOpt = 0,
    zip_: Annotated[bool, typer.Option("--zip", help="Write SmallMinesDS.zip (the published form).")] = False,
    scene_size: Annotated[int, typer.Option(help="Also write a PX x PX scene per year into OUTPUT/scenes "
                                                 "(0 = no scene).", min=0)] = 0,
    country: Annotated[bool, typer.Option("--country/--no-country",
                                          help="File names with the GH_ country code, or without.")] = True,
    workers: Annotated[int, typer.Option(help="Processes rendering patches (same files for any number).",
                                         min=1)] = 1,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write a synthetic dataset in the published SmallMinesDS layout (with split files)."""
    from smallmines.data.layout import discover
    from smallmines.data.synth.patches import synthesize_dataset
    from smallmines.data.synth.scenes import synthesize_scene
    from smallmines.folders import refuse_overwrite

    with api_errors():
        if scene_size:
            refuse_overwrite([output / "scenes"], overwrite)
        with progress_bar("synthesising patches") as update:
            path = synthesize_dataset(output, tiles=tiles, seed=seed, country="GH" if country else None, zip=zip_,
                                      progress=update, workers=workers, overwrite=overwrite)
        scenes = {}
        if scene_size:
            with progress_bar("synthesising scenes") as update:
                scenes = synthesize_scene(output / "scenes", size=scene_size, seed=seed, progress=update)
        layout = discover(path)
    table = Table(title=escape(f"synthetic SmallMinesDS at {path}"))
    table.add_column("year")
    table.add_column("patches", justify="right")
    table.add_column("split file")
    for year in layout.years:
        n = sum(p.year == year for p in layout.patches)
        table.add_row(str(year), str(n), "yes" if year in layout.split_files else "beside it")
    out.print(table)
    for year, files in scenes.items():
        out.print(f"scene {year}: " + ", ".join(f"{k}={v}" for k, v in files.items()), soft_wrap=True,
                  highlight=False)


@app.command()
def check(
    path: Annotated[Path, typer.Argument(help="SmallMinesDS.zip, the folder holding SmallMinesDS/, or a .smpack "
                                              "pack.")],
    splits: Annotated[Path | None, typer.Option("--splits", "--splits-dir",
                                                help="Folder holding train_test_splits_{YEAR}.csv when not beside "
                                                     "the data.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the full report as JSON.")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Check every file; list each problem with its file. Exit code 1 when an error was found."""
    from smallmines.data.check import ERROR, check_dataset
    from smallmines.folders import refuse_overwrite

    with api_errors():
        refuse_overwrite([json_path] if json_path else [], overwrite)
    with api_errors(), progress_bar("checking patches") as update:
        report = check_dataset(path, splits_dir=splits, progress=update)
    if json_path is not None:
        _write_json(json_path, report.to_dict())
    if report.counts:
        out.print(_counts_table(f"{report.root} ({report.kind}): {report.usable} of {report.patches} patches "
                                "usable", report.counts, total=False))
        shares = ", ".join(f"{y}: {s:.2f} %" for y, s in report.shares.items())
        out.print(f"mining share of valid pixels: {shares}", highlight=False)
        ranges = Table(title="band values (valid pixels)")
        for column in ("band", "min", "max", "mean"):
            ranges.add_column(column, justify="left" if column == "band" else "right")
        for band, r in report.band_ranges.items():
            cells = ["-" if r[k] is None else f"{r[k]:.4g}" for k in ("min", "max", "mean")]
            ranges.add_row(band, *cells)
        out.print(ranges)
    for problem in report.problems[:MAX_PROBLEMS]:
        colour = "red" if problem.level == ERROR else "yellow"
        out.print(f"[{colour}]{problem.level}[/]: {escape(problem.path)}: {escape(problem.message)}",
                  soft_wrap=True, highlight=False)
    if len(report.problems) > MAX_PROBLEMS:
        more = len(report.problems) - MAX_PROBLEMS
        out.print(f"... and {more} more problems" + (f" (all in {json_path})" if json_path else " (see --json)"))
    n_err, n_warn = len(report.errors), len(report.warnings)
    if report.ok:
        out.print(f"[green]OK[/]: {escape(report.root)} is usable ({n_warn} warnings)", highlight=False, soft_wrap=True)
        return
    out.print(f"[red]NOT USABLE[/]: {escape(report.root)}: {n_err} errors, {n_warn} warnings", highlight=False,
              soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def stats(
    path: DatasetArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Statistics JSON to write.")],
    bands: Annotated[str, typer.Option(help="Band selection, e.g. all, official6, 's2,s1,ndvi'.")] = "all",
    split: Annotated[str, typer.Option(help="Split to compute on; keep train (statistics of other splits "
                                            "leak them into training).")] = "train",
    splits: Annotated[str, typer.Option(help="Split method (official, random, year, spatial) or a split CSV.")]
    = "official",
    seed: SeedOpt = 0,
    val_fraction: Annotated[float, typer.Option(help="Share of train carved out as validation.")] = 0.1,
    splits_dir: SplitsDirOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Per-channel mean and standard deviation of the training split, saved as JSON with channel names."""
    from smallmines.data.dataset import SmallMinesDS

    if split != "train":
        console.print(f"[yellow]warning:[/] statistics from the {split!r} split; normalisation should use train only")
    from smallmines.folders import refuse_overwrite

    with api_errors():
        refuse_overwrite([output], overwrite)
        dataset = SmallMinesDS(path, split=split, bands=bands, splits=splits, seed=seed, val_fraction=val_fraction,
                               splits_dir=splits_dir)
        with progress_bar(f"statistics of {len(dataset)} {split} patches") as update:
            result = dataset.compute_stats(progress=update)
        result.save(output)
    table = Table(title=escape(f"{output}: {len(dataset)} {split} patches"))
    for column in ("channel", "mean", "std"):
        table.add_column(column, justify="left" if column == "channel" else "right")
    for name, mean, std in zip(result.channels, result.mean, result.std, strict=True):
        table.add_row(name, f"{mean:.4g}", f"{std:.4g}")
    out.print(table)


@app.command("split")
def split_(
    path: DatasetArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Split CSV to write.")],
    method: Annotated[str, typer.Option(help="official, random, year, country or spatial.")] = "official",
    seed: SeedOpt = 0,
    val_fraction: Annotated[float, typer.Option(help="Share of patches (of train, for official and year) "
                                                     "that becomes validation.")] = 0.1,
    test_fraction: Annotated[float | None, typer.Option(help="Share of sites or blocks in test (random, "
                                                             "spatial).")] = None,
    block_size: Annotated[float | None, typer.Option(help="Block side in metres (spatial).")] = None,
    train_years: Annotated[str | None, typer.Option(help="Comma-separated training years (year).")] = None,
    test_years: Annotated[str | None, typer.Option(help="Comma-separated test years (year).")] = None,
    train_countries: Annotated[str | None, typer.Option(help="Comma-separated training country codes (country; "
                                                             "default: all but the test ones).")] = None,
    test_countries: Annotated[str | None, typer.Option(help="Comma-separated test country codes (country).")
                              ] = None,
    splits_dir: SplitsDirOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write a reproducible split CSV (official format plus val) and print its counts per year."""
    from smallmines.data.dataset import export_split

    def years(text: str | None) -> tuple[int, ...] | None:
        return None if text is None else tuple(int(y) for y in text.split(",") if y.strip())

    from smallmines.folders import refuse_overwrite

    with api_errors():
        refuse_overwrite([output], overwrite)
        try:
            options = {"test_fraction": test_fraction, "block_size": block_size,
                       "train_years": years(train_years), "test_years": years(test_years),
                       "train_countries": None if train_countries is None else train_countries.split(","),
                       "test_countries": None if test_countries is None else test_countries.split(",")}
        except ValueError as exc:
            raise typer.BadParameter(f"years must be comma-separated integers ({exc})") from None
        _, summary = export_split(path, output, method, seed=seed, val_fraction=val_fraction,
                                  splits_dir=splits_dir, **options)
    out.print(_counts_table(f"{output}: {method} split, seed {seed}", summary))


@app.command()
def pack(
    path: DatasetArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Pack file to write (.smpack).")],
    splits_dir: SplitsDirOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Pack every usable patch into one memory-mapped file; unreadable patches are skipped and listed."""
    from smallmines.data.layout import discover
    from smallmines.data.pack import PackedSource, pack_dataset
    from smallmines.folders import refuse_overwrite

    with api_errors():
        refuse_overwrite([output], overwrite)
        layout = discover(path)
        with progress_bar("packing patches", total=len(layout.patches)) as update:
            result = pack_dataset(layout, output, progress=update, splits_dir=splits_dir, overwrite=overwrite)
        packed = PackedSource(result)
    header = packed.header
    size_mb = result.stat().st_size / 2**20
    out.print(f"{result}: {len(packed)} patches, {size_mb:.1f} MiB, official split "
              f"{'stored' if header.official else 'not stored (no split files)'}", highlight=False, soft_wrap=True)
    for image, reason in header.skipped.items():
        out.print(f"[yellow]skipped[/]: {escape(image)}: {escape(reason)}", highlight=False, soft_wrap=True)


@app.command()
def preview(
    path: DatasetArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")],
    n: Annotated[int, typer.Option("--n", help="Patches (rows) to show.", min=1, max=64)] = 6,
    split: Annotated[str | None, typer.Option(help="Only patches of this split (train, val, test).")] = None,
    splits: Annotated[str, typer.Option(help="Split method or CSV, used with --split.")] = "official",
    seed: SeedOpt = 0,
    splits_dir: SplitsDirOpt = None,
    dpi: Annotated[int, typer.Option(help="PNG resolution.", min=30, max=600)] = 110,
    overwrite: OverwriteOpt = False,
) -> None:
    """Draw a grid of patches: S2 true colour, S1 VV, DEM and mask, with patch id and mining share."""
    from smallmines.data.preview import preview_grid
    from smallmines.folders import refuse_overwrite

    with api_errors():
        refuse_overwrite([output], overwrite)
        figure = preview_grid(path, n, split=split, splits=splits, seed=seed, splits_dir=splits_dir)
        output.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(output, dpi=dpi)
    out.print(f"wrote {output}", highlight=False, soft_wrap=True)


@app.command()
def merge(
    datasets: Annotated[list[Path], typer.Argument(help="Datasets to merge: SmallMinesDS.zip, folders holding "
                                                        "SmallMinesDS/, built datasets.", exists=True)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder of the merged dataset.")],
    country: Annotated[str | None, typer.Option(help="Country code for file names without one "
                                                     "(IMG_0001_2016.tif).")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Merge datasets into one (files copied, tile ids kept unique, split files merged per year)."""
    from smallmines.data.build.merge import merge_datasets

    with api_errors(), progress_bar("merging patches") as update:
        result = merge_datasets(datasets, output, country=country, progress=update, overwrite=overwrite)
    table = Table(title=escape(f"merged into {result.out}"))
    for column in ("source", "patches", "renumbered"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for source, ids in result.patches.items():
        table.add_row(escape(source), str(len(ids)), str(len(result.renamed.get(source, {}))))
    out.print(table)
    out.print("patches per country and year: " + ", ".join(f"{cc} {year}: {n}" for (cc, year), n in
                                                           sorted(result.counts.items())), highlight=False)
    if result.unassigned:
        out.print(f"[yellow]{len(result.unassigned)} patches have no split[/] (their source has no split file "
                  "naming them), e.g. " + escape(result.unassigned[0]), highlight=False)
