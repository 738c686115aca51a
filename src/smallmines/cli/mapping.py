"""``smallmines map`` and ``smallmines export``: whole-scene maps and ONNX export."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from smallmines.cli._common import OVERWRITE_HELP, api_errors, console, out, setup_logging

MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".onnx")
GDAL_CACHE_MB = 512
"""GDAL block cache for ``map`` (GDAL's own default is 5% of RAM), so memory stays predictable."""

def map_command(
    inputs: Annotated[list[Path] | None, typer.Argument(
        help="CHECKPOINT (model.pt, .ckpt or .onnx), then the stacked scene: one GeoTIFF/VRT or several tiles. "
             "With --onnx the checkpoint may be left out.", exists=True, dir_okay=False, show_default=False)] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("map"),
    before: Annotated[list[Path] | None, typer.Option(
        "--before", help="Earlier scene for a bi-temporal change model (stacked GeoTIFF/VRT; repeat for tiles).",
        exists=True, dir_okay=False)] = None,
    after: Annotated[list[Path] | None, typer.Option(
        "--after", help="Later scene, on the same grid as --before.", exists=True, dir_okay=False)] = None,
    model: Annotated[Path | None, typer.Option(
        "--model", help="The model file (instead of the first argument).", exists=True, dir_okay=False)] = None,
    year_a: Annotated[int | None, typer.Option(help="Year of --before (default: fetch.json or file name).")] = None,
    year_b: Annotated[int | None, typer.Option(help="Year of --after (default: fetch.json or file name).")] = None,
    s2: Annotated[list[Path] | None, typer.Option(
        "--s2", help="Sentinel-2 raster (repeat for 10 m and 20 m files or tiles).", exists=True,
        dir_okay=False)] = None,
    s1: Annotated[list[Path] | None, typer.Option(
        "--s1", help="Sentinel-1 VV/VH raster in dB (repeatable).", exists=True, dir_okay=False)] = None,
    dem: Annotated[list[Path] | None, typer.Option(
        "--dem", help="Elevation raster in metres (repeatable).", exists=True, dir_okay=False)] = None,
    aoi: Annotated[Path | None, typer.Option(help="Vector file of the area to map.", exists=True,
                                             dir_okay=False)] = None,
    onnx: Annotated[Path | None, typer.Option(help="Run this exported model with ONNX Runtime.", exists=True,
                                              dir_okay=False)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 on GPU), fp32, bf16 or fp16.")] = "auto",
    window: Annotated[int, typer.Option(help="Window side in pixels (multiple of 32).")] = 1024,
    overlap: Annotated[int, typer.Option(help="Overlap of neighbouring windows (multiple of 32).")] = 128,
    margin: Annotated[int | None, typer.Option(help="Zero-weight pixels at shared edges (default: overlap/4).")] = None,
    block: Annotated[int, typer.Option(help="Side of a unit of work (resume, Dask task), pixels.")] = 2048,
    batch_size: Annotated[int | None, typer.Option(
        help="Windows per forward pass (default: 1 on CPU, 8 on GPU).")] = None,
    readers: Annotated[int | None, typer.Option(help="Reader threads (default: 2 on CPU, 8 on GPU).")] = None,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads of the backend.")] = None,
    cluster: Annotated[str | None, typer.Option(help="Dask scheduler address (tcp://host:8786).")] = None,
    workers: Annotated[int | None, typer.Option(help="Start a local Dask cluster of N worker processes.")] = None,
    scale: Annotated[str | None, typer.Option(
        help="Multiply bands on read: 10000 (all S2 bands, for a 0-1 export) or s2=10000,dem=0.3048.")] = None,
    band_order: Annotated[str | None, typer.Option(
        help="Names of the stacked file's bands in order, e.g. blue,green,red,rededge4,swir1,swir2.")] = None,
    force: Annotated[bool, typer.Option(help="Map even if the scene does not look like the training data.")] = False,
    threshold: Annotated[float | None, typer.Option(help="Decision threshold (default: the model's).")] = None,
    min_area: Annotated[float, typer.Option(help="Drop mines smaller than this, hectares.")] = 0.1,
    simplify: Annotated[float, typer.Option(help="Polygon simplification tolerance, CRS units.")] = 0.0,
    year: Annotated[int | None, typer.Option(
        help="Acquisition year for the summary (default: the scene's fetch.json, else a year in its file name).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume/--restart", help="Reuse finished blocks of an interrupted run.")
                      ] = True,
    keep_work: Annotated[bool, typer.Option(help="Keep the per-block results in OUT/.work.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP + " An interrupted run is resumed "
                                            "without it.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Map mining over whole scenes: probability.tif, mines.tif, mines.gpkg and summary.json.

    With a bi-temporal change model, --before A --after B maps change directly: change.tif, change.gpkg,
    areas.csv and summary.json, as `smallmines change` writes them.

    On CPU, export the model once (smallmines export) and map with --onnx: ONNX Runtime mapped 1.3-1.4x
    faster than PyTorch end to end on 2 CPU cores (see BENCHMARKS.md). GDAL's block cache is capped at
    512 MB unless GDAL_CACHEMAX is set.
    """
    os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))
    setup_logging(verbose)
    if before or after:
        with api_errors():
            checkpoint = _change_model(inputs or [], model, onnx, before, after)
            from smallmines.analysis.change import map_change

            with _km2_progress() as progress:
                result = map_change(
                    checkpoint, before, after, out_dir, year_a=year_a, year_b=year_b, min_area_ha=min_area,
                    aoi=aoi, window=window, overlap=overlap, margin=margin, block=block, batch_size=batch_size,
                    device=device, precision=precision, onnx=onnx, cluster=cluster, workers=workers, readers=readers,
                    threads=threads, scale=scale, band_order=band_order, force=force, resume=resume,
                    keep_work=keep_work, overwrite=overwrite, progress=progress)
        from smallmines.cli.change import _growth_line, _print_areas

        _print_areas(result.table)
        out.print(_growth_line(result.summary))
        out.print(f"change written to {result.out_dir}: {result.change_tif.name}, {result.polygons.name}, "
                  f"{result.areas_csv.name}, {result.summary_json.name}")
        return
    with api_errors():
        checkpoint, scenes = _split_inputs(([model] if model else []) + list(inputs or []), onnx)
        from smallmines.mapping.mapper import map_scene

        with _km2_progress() as progress:
            result = map_scene(
                checkpoint, out_dir, stacked=scenes or None, s2=s2 or None, s1=s1 or None, dem=dem or None, aoi=aoi,
                window=window, overlap=overlap, margin=margin, block=block, batch_size=batch_size, device=device,
                precision=precision, onnx=onnx, cluster=cluster, workers=workers, readers=readers, threads=threads,
                scale=scale, band_order=band_order, force=force, threshold=threshold, min_area_ha=min_area,
                simplify=simplify, year=year, resume=resume, keep_work=keep_work, overwrite=overwrite,
                progress=progress)
    areas, timing = result.summary["areas"], result.summary["timing"]
    table = Table(title=f"map written to {result.out_dir}", show_header=False)
    table.add_row("scene", f"{areas['scene_km2']:,.1f} km2 ({100 * areas['valid_fraction']:.1f}% valid)")
    table.add_row("mining", f"{areas['mined_ha']:,.1f} ha in {areas['polygons']:,} polygons")
    table.add_row("time", f"{timing['total_s']:,.1f} s ({timing['km2_per_s']:,.2f} km2/s overall)")
    for name in ("probability", "mines", "polygons", "summary_path"):
        table.add_row(name.replace("_path", ""), str(getattr(result, name)))
    out.print(table)


def _change_model(inputs: list[Path], model: Path | None, onnx: Path | None, before: list[Path] | None,
                  after: list[Path] | None) -> Path | None:
    """The model file of ``map --before A --after B``: ``--model``, or the one positional argument."""
    from smallmines.errors import ConfigError

    if not before or not after:
        raise ConfigError("a change model maps two scenes: give both --before SCENE_A and --after SCENE_B")
    candidates = ([model] if model else []) + list(inputs)
    if len(candidates) > 1 or (candidates and candidates[0].suffix.lower() not in MODEL_SUFFIXES):
        raise ConfigError(f"with --before/--after, give only the model ({', '.join(map(str, candidates))} given); "
                          "the scenes go in --before and --after")
    if not candidates and onnx is None:
        raise ConfigError("no model given: pass --model MODEL (model.pt, .ckpt or .onnx)")
    return candidates[0] if candidates else None


def _split_inputs(inputs: list[Path], onnx: Path | None) -> tuple[Path | None, list[Path]]:
    from smallmines.errors import ConfigError

    if inputs and inputs[0].suffix.lower() in MODEL_SUFFIXES:
        return inputs[0], inputs[1:]
    if onnx is not None:
        return None, inputs
    raise ConfigError("the first argument must be the model file (model.pt, .ckpt or .onnx), or pass --onnx; "
                      f"got {inputs[0] if inputs else 'nothing'}")


@contextmanager
def _km2_progress() -> Iterator[Callable[[float, float], None]]:
    """Show a rich bar in km2 with the rate in km2/s; yield the ``progress(done_km2, total_km2)`` callback."""
    columns = (TextColumn("mapping"), BarColumn(), TextColumn("{task.completed:,.1f}/{task.total:,.1f} km2"),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task("map", total=None, rate="")
        first: list[float] = []

        def update(done: float, total: float) -> None:
            now = time.perf_counter()
            if not first:  # blocks reused from an interrupted run do not count towards the rate
                first.extend((now, done))
            elapsed = now - first[0]
            rate = f"{(done - first[1]) / elapsed:,.2f} km2/s" if elapsed > 0 else ""
            bar.update(task, completed=done, total=total, rate=rate)

        yield update


def export_command(
    checkpoint: Annotated[Path, typer.Argument(help="model.pt or Lightning .ckpt.", exists=True, dir_okay=False)],
    output: Annotated[Path, typer.Argument(help="The .onnx file to write.")],
    opset: Annotated[int, typer.Option(help="ONNX opset version.")] = 18,
    check: Annotated[bool, typer.Option(help="Compare ONNX Runtime with PyTorch on a random input.")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Export a checkpoint to ONNX with its model card (channels, statistics, threshold) in the metadata."""
    setup_logging(verbose)
    with api_errors():
        from smallmines.folders import refuse_overwrite
        from smallmines.models.export import export_onnx

        refuse_overwrite([output], overwrite)
        result = export_onnx(checkpoint, output, opset=opset, check=check)
    diff = "" if result.max_abs_diff is None else f"; max probability difference from PyTorch {result.max_abs_diff:.2e}"
    out.print(f"wrote {result.path} ({result.card.model}, {len(result.card.channels)} channels{diff})")


def register(app: typer.Typer) -> None:
    """Add ``map`` and ``export`` to the main app."""
    app.command("map")(map_command)
    app.command("export")(export_command)
