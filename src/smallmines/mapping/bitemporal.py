"""Bi-temporal mapping: a change model maps two scenes of one grid into the change raster.

:func:`map_change_raster` runs the engine of :func:`~smallmines.mapping.mapper.map_scene` (windows,
blending, batching, blocks, resume, Dask) on a *pair* of scenes: every window is read from the
earlier and the later scene at the same pixels, the channels of both dates are stacked
(``a:X...``, ``b:X...``, as in training) and the model's four class probabilities (no mining, new,
persistent, ceased; :class:`smallmines.legend.ChangeClass`) are blended plane by plane; the most
probable class of each pixel is written to ``change.tif`` (COG, uint8, 255 nodata, the change colour
table of :mod:`smallmines.legend`). Both scenes are checked against the model's training statistics.

Polygons, area tables and ``summary.json`` come from the analysis stage
(:func:`smallmines.analysis.change.map_change`, what ``smallmines map --before --after`` calls), so a
folder mapped this way reads like one of ``smallmines change``.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smallmines.bands import required_bands
from smallmines.data.pairs import split_date_channels
from smallmines.data.scene import Scene, open_scene, parse_scale
from smallmines.data.stats import BandStats
from smallmines.data.windows import make_plan
from smallmines.errors import ConfigError
from smallmines.folders import RUN_TAG, folder_lock
from smallmines.legend import ChangeClass, change_categories, change_colormap, change_tags, write_category_names
from smallmines.mapping.engine import Job
from smallmines.mapping.guards import compare_to_training, enforce, sample_scene
from smallmines.mapping.mapper import (
    DEFAULT_BLOCK,
    DEFAULT_OVERLAP,
    DEFAULT_WINDOW,
    Progress,
    _check_counts,
    _infer,
    _load_model,
    _region,
    _scene_year,
)
from smallmines.mapping.work import WORK_DIR, WorkFolder, _fingerprint, _now, _stitch_change, _to_cog
from smallmines.models.registry import ModelCard

logger = logging.getLogger(__name__)

CHANGE_TIF = "change.tif"


@dataclass
class ChangeRasterResult:
    """The change raster of two scenes and how it was made.

    Attributes:
        out_dir: the output folder.
        change_tif: ``change.tif``.
        year_a: the earlier scene's year (None when unknown).
        year_b: the later scene's year (None when unknown).
        pixels: pixel count of every change class code.
        run_id: the id tagged in ``change.tif`` (``SMALLMINES_RUN_ID``).
        summary: model, backend, scenes, band checks, parameters and timing.
    """

    out_dir: Path
    change_tif: Path
    year_a: int | None
    year_b: int | None
    pixels: dict[int, int]
    run_id: str
    summary: dict[str, Any] = field(default_factory=dict)


def is_change_card(card: ModelCard) -> bool:
    """Whether a model card is a bi-temporal change model's (``a:X``/``b:X`` channels)."""
    return split_date_channels(card.channels) is not None


def date_stats(card: ModelCard) -> BandStats:
    """A change model's statistics of one date (``a:X`` renamed ``X``), to check each scene against."""
    base = split_date_channels(card.channels) or card.channels
    stats = card.stats.subset(card.channels)
    half = len(base)
    return BandStats(tuple(base), stats.mean[:half], stats.std[:half], stats.count, stats.source)


def check_same_grid(before: Scene, after: Scene, path_a: Any, path_b: Any) -> None:
    """Refuse two scenes whose pixels do not coincide (CRS, transform and size must match).

    Raises:
        ConfigError: naming both files, what differs and how to fix it.
    """
    a, b = before.grid, after.grid
    differ = []
    if a.crs != b.crs:
        differ.append(f"CRS {a.to_dict()['crs']} vs {b.to_dict()['crs']}")
    if (a.width, a.height) != (b.width, b.height):
        differ.append(f"size {a.width} x {a.height} vs {b.width} x {b.height} pixels")
    if not a.transform.almost_equals(b.transform, precision=1e-6 * max(a.res, 1e-9)):
        differ.append(f"origin/pixel size {tuple(a.transform)[:6]} vs {tuple(b.transform)[:6]}")
    if differ:
        left, bottom, right, top = a.bounds()
        raise ConfigError(
            f"--before {path_a} and --after {path_b} are not on one grid ({'; '.join(differ)}); a change model "
            f"compares the two dates pixel by pixel. Warp the later scene onto the earlier one's grid, e.g. "
            f"gdalwarp -t_srs {a.to_dict()['crs']} -tr {a.res:g} {a.res:g} -te {left:g} {bottom:g} {right:g} {top:g} "
            f"{path_b} after_aligned.tif, or fetch both years with the same --bbox")


def map_change_raster(
    checkpoint: str | Path | None,
    before: str | Path | Sequence[str | Path],
    after: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    aoi: str | Path | None = None,
    *,
    window: int = DEFAULT_WINDOW,
    overlap: int = DEFAULT_OVERLAP,
    margin: int | None = None,
    block: int = DEFAULT_BLOCK,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    onnx: str | Path | None = None,
    cluster: Any = None,
    workers: int | None = None,
    readers: int | None = None,
    threads: int | None = None,
    scale: str | float | dict[str, float] | None = None,
    band_order: str | Sequence[str] | None = None,
    force: bool = False,
    year_a: int | None = None,
    year_b: int | None = None,
    resume: bool = True,
    keep_work: bool = False,
    lock: bool = True,
    require_years: bool = False,
    progress: Progress | None = None,
    on_start: Callable[[], None] | None = None,
) -> ChangeRasterResult:
    """Map change between two scenes with a bi-temporal change model; write ``change.tif``.

    Args:
        checkpoint: a change model's ``model.pt`` / ``.ckpt`` (or ``.onnx``).
        before: the earlier scene (one stacked 13-band raster or VRT, or a list of tiles).
        after: the later scene, on the same grid (CRS, transform and size).
        out_dir: output folder.
        aoi: vector file; only its area is mapped.
        year_a: the earlier year (default: the scene's ``fetch.json``, else a year in its file name).
        year_b: the later year, likewise.
        lock: hold the folder lock (False when the caller holds it).
        require_years: refuse, before any inference, scenes whose years are unknown.
        window: window side in pixels (as for :func:`~smallmines.mapping.mapper.map_scene`).
        overlap: pixels shared by neighbouring windows.
        margin: zero-weight pixels at shared window edges.
        block: approximate side of a unit of work in pixels.
        batch_size: windows per forward pass.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        onnx: exported model to run with ONNX Runtime.
        cluster: Dask scheduler address or client.
        workers: local Dask worker processes.
        readers: reader threads.
        threads: intra-op threads of the backend.
        scale: per-band factors applied on read, to both scenes.
        band_order: names of the stacked files' bands in order, for both scenes.
        force: map even when the guards find a scene unlike the training data.
        resume: reuse finished blocks of an interrupted run with identical settings.
        keep_work: keep ``.work`` after success.
        progress: ``progress(done_km2, total_km2)``.
        on_start: called once every check has passed, just before the first output is touched.

    Raises:
        ConfigError: a single-date model, scenes on different grids, bad options.
        SceneMismatchError: a scene unlike the training data (``force`` maps anyway).
        BandError: a scene lacks a band the model needs.

    """
    start = time.perf_counter()
    out = Path(out_dir)
    _check_counts(workers, block, batch_size, readers, threads)
    ref, card = _load_model(checkpoint, onnx, device, precision, cluster, workers, threads)
    if not is_change_card(card):
        raise ConfigError(f"{ref.path} is a single-date model ({card.model}); --before/--after need a bi-temporal "
                          "change model (e.g. trained with preset change-tiny): map each scene with `smallmines map "
                          "MODEL SCENE -o DIR`, then compare the maps with `smallmines change A B`")
    factors = parse_scale(scale)
    scene_a = open_scene(before, band_order=band_order).with_scale(factors)
    scene_b = open_scene(after, band_order=band_order).with_scale(factors)
    check_same_grid(scene_a, scene_b, _name(before), _name(after))
    year_a = year_a if year_a is not None else _scene_year(scene_a.sources[0].path)
    year_b = year_b if year_b is not None else _scene_year(scene_b.sources[0].path)
    if require_years and (year_a is None or year_b is None):
        which = f"--before {_name(before)}" if year_a is None else f"--after {_name(after)}"
        raise ConfigError(f"the year of {which} is unknown (no fetch.json beside it, no year in its file name); "
                          "pass --year-a and --year-b")
    if year_a is not None and year_b is not None and year_b <= year_a:
        raise ConfigError(f"the later scene's year ({year_b}) must be after the earlier one's ({year_a}); swap "
                          "--before and --after, or pass --year-a and --year-b")
    stats = date_stats(card)
    bands = required_bands(stats.channels)
    checks = {}
    for scene in (scene_a, scene_b):
        scene.require(bands)
    geometry, rows, cols = _region(scene_a.grid, aoi)
    grid = scene_a.grid.sub(rows, cols)
    for key, scene in (("before", scene_a), ("after", scene_b)):
        with scene.open() as reader:
            checks[key] = compare_to_training(sample_scene(reader, bands, rows, cols), bands, stats,
                                              scene.file_bands)
        enforce(checks[key], force)
    checked = time.perf_counter()

    full = card.stats.subset(card.channels)
    job = Job(scene_a, make_plan(rows.size, cols.size, window, overlap, margin, block), (rows.start, cols.start),
              bands, card.channels, full.mean, full.std, ref, batch_size, readers,
              geometry.wkb if geometry is not None else None, scene_b=scene_b, classes=len(ChangeClass))
    guard = folder_lock(out, "another smallmines map run") if lock else contextlib.nullcontext(out)
    with guard:
        if on_start is not None:
            on_start()
        run_id = uuid.uuid4().hex
        work = WorkFolder(out / WORK_DIR, _fingerprint(job))
        reused = work.open(resume)
        todo = [b for b in job.plan.blocks() if b not in reused]
        computed = _infer(job, todo, work, grid, cluster, workers, progress)
        inferred = time.perf_counter()
        tmp = out / WORK_DIR / CHANGE_TIF
        pixels = _stitch_change(job, work, grid, tmp)
        if not pixels:
            files = ", ".join(s.path for scene in job.scenes for s in scene.sources)
            raise ConfigError(f"{files}: no pixel of the mapped region has valid data in every band of both "
                              f"scenes ({', '.join(bands)}); check that the two scenes overlap and hold data")
        years = f"{year_a or '?'}-{year_b or '?'}"
        _to_cog(tmp, out / CHANGE_TIF, "nearest", 2, f"mining change {years}", change_colormap(),
                {RUN_TAG: run_id, **change_tags(year_a, year_b)})
        write_category_names(out / CHANGE_TIF, change_categories())
        if not keep_work:
            import shutil

            shutil.rmtree(work.root, ignore_errors=True)
        done = time.perf_counter()
        summary = {
            "created": _now(), "run_id": run_id,
            "model": {"file": ref.path, "architecture": card.model, "channels": list(card.channels)},
            "backend": {"engine": ref.engine, "device": ref.device, "precision": ref.precision,
                        "cluster": str(cluster) if cluster else None, "workers": workers},
            "scenes": {"before": scene_a.describe(), "after": scene_b.describe(), "output_grid": grid.to_dict()},
            "parameters": {"window": job.plan.size, "overlap": job.plan.overlap, "margin": job.plan.margin,
                           "block_windows": job.plan.per_block, "aoi": str(aoi) if aoi else None},
            "band_check": {k: c.to_dict() for k, c in checks.items()},
            "timing": {"total_s": done - start, "check_s": checked - start, "inference_s": inferred - checked,
                       "blocks": len(job.plan.blocks()), "blocks_computed": computed, "blocks_reused": len(reused)},
        }
        logger.info("mapped change %s over %d x %d pixels in %.1f s", years, grid.width, grid.height, done - start)
        return ChangeRasterResult(out, out / CHANGE_TIF, year_a, year_b, pixels, run_id, summary)


def _name(paths: str | Path | Sequence[str | Path]) -> str:
    if isinstance(paths, (str, Path)):
        return str(paths)
    return ", ".join(str(p) for p in paths)
