"""Whole-scene mapping: from a model file and a scene to georeferenced mine maps and polygons.

:func:`map_scene` is the one entry point (``smallmines map`` calls it). The steps:

1. **Scene** (:mod:`smallmines.data.scene`): open the stacked or per-sensor rasters, align them on the
   10 m grid, optionally restrict to an area of interest; fail early, naming any band the model
   needs and the scene lacks.
2. **Guards** (:mod:`smallmines.mapping.guards`): sample the scene and compare each band with the
   training statistics the model carries; refuse a scene off by orders of magnitude or with bands in
   another order (``--scale``, ``--band-order`` fix it, ``--force`` overrides), warn when it is far
   from the training data.
3. **Inference** (:mod:`smallmines.mapping.engine`; :mod:`smallmines.data.windows` for the
   arithmetic, :mod:`smallmines.mapping.predictors` for the backends): overlapping windows aligned
   to the network's stride, the last one shifted inward at the scene edge, smooth blending weights,
   batched, with reader threads preparing the next windows (read, spectral indices, normalisation
   with the *training* statistics) while the model runs. Work is grouped into blocks; each finished
   block's weighted sums go to ``.work/blocks`` beside a manifest, so an interrupted run resumes
   where it stopped and Dask workers can compute blocks anywhere. Backends: PyTorch on CPU or
   CUDA (bf16 autocast on GPU, channels-last), or ONNX Runtime.
4. **Assembly** (:mod:`smallmines.mapping.work`, :mod:`smallmines.mapping.vector`): block cores are
   stitched from their contributors' sums, tile by tile, into ``probability.tif`` and ``mines.tif``
   (Cloud-Optimised GeoTIFFs in the scene CRS), polygons traced into ``mines.gpkg`` (``id``,
   ``area_ha``, ``mean_prob``), and ``summary.json`` written. Polygons smaller than ``min_area_ha``
   are dropped from both the GeoPackage and ``mines.tif``, so the two always agree. Every output is
   written under a temporary name and renamed into place.

Peak memory depends on the window, batch and block sizes, never on the scene size.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smallmines.bands import required_bands
from smallmines.data.pairs import split_date_channels
from smallmines.data.scene import Grid, aoi_region, load_aoi, open_scene, parse_scale
from smallmines.data.windows import BlockId, Span, make_plan
from smallmines.errors import ConfigError, DataFormatError
from smallmines.folders import RUN_TAG, folder_lock, free_space_check, refuse_overwrite
from smallmines.legend import MINES_CATEGORIES, write_category_names
from smallmines.mapping.engine import Job, _run_distributed, run_blocks
from smallmines.mapping.guards import SceneCheck, compare_to_training, enforce, sample_scene
from smallmines.mapping.predictors import ModelRef, load_predictor, read_card
from smallmines.mapping.vector import pixel_areas_m2, polygonize, write_polygons
from smallmines.mapping.work import (
    MINES_COLOURS,
    OUTPUTS,
    WORK_DIR,
    WorkFolder,
    _finalise_mask,
    _fingerprint,
    _now,
    _stitch,
    _to_cog,
    _write_json,
)
from smallmines.models.registry import ModelCard, check_threshold, load_model

logger = logging.getLogger(__name__)


DEFAULT_WINDOW = 1024
DEFAULT_OVERLAP = 128
DEFAULT_BLOCK = 2048
DEFAULT_MIN_AREA_HA = 0.1
Progress = Callable[[float, float], None]
"""``progress(done_km2, total_km2)``, called as windows finish."""

# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


@dataclass
class MapResult:
    """Paths of a finished map and its summary (also in ``summary.json``)."""

    out_dir: Path
    probability: Path
    mines: Path
    polygons: Path
    summary_path: Path
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def mined_area_ha(self) -> float:
        """Total mapped mining area (after the minimum-area filter), hectares."""
        return float(self.summary["areas"]["mined_ha"])

    @property
    def check(self) -> dict[str, Any]:
        """The band comparison with the training statistics."""
        return dict(self.summary["band_check"])


def _model_ref(checkpoint: str | Path | None, onnx: str | Path | None, device: str, precision: str,
               threads: int | None) -> ModelRef:
    if checkpoint is not None and Path(checkpoint).suffix.lower() == ".onnx":
        checkpoint, onnx = (None, checkpoint) if onnx is None else (checkpoint, onnx)
    if checkpoint is None and onnx is None:
        raise ConfigError("no model given: pass a checkpoint (model.pt, .ckpt) or --onnx model.onnx")
    return ModelRef(str(checkpoint) if checkpoint else None, str(onnx) if onnx else None, device, precision, threads)


def _check_cards(ref: ModelRef, card: ModelCard) -> None:
    if ref.onnx and ref.checkpoint:
        other = load_model(ref.checkpoint)[1]
        if other.channels != card.channels:
            raise ConfigError(f"{ref.onnx} expects channels {list(card.channels)} but {ref.checkpoint} "
                              f"{list(other.channels)}; export the checkpoint again")


def map_scene(
    checkpoint: str | Path | None,
    out_dir: str | Path,
    stacked: str | Path | Sequence[str | Path] | None = None,
    s2: str | Path | Sequence[str | Path] | None = None,
    s1: str | Path | Sequence[str | Path] | None = None,
    dem: str | Path | Sequence[str | Path] | None = None,
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
    threshold: float | None = None,
    min_area_ha: float = DEFAULT_MIN_AREA_HA,
    simplify: float = 0.0,
    year: int | None = None,
    resume: bool = True,
    keep_work: bool = False,
    overwrite: bool = True,
    progress: Progress | None = None,
) -> MapResult:
    """Map mining over a whole scene; write ``probability.tif``, ``mines.tif``, ``mines.gpkg``, ``summary.json``.

    Args:
        checkpoint: ``model.pt`` / Lightning ``.ckpt`` (or an ``.onnx`` file); may be None with ``onnx``.
        out_dir: output folder (see docs/run-layout.md).
        stacked: one stacked 13-band raster (GeoTIFF or VRT) or a list of tiles.
        s2: Sentinel-2 raster(s) at 10 and/or 20 m (instead of ``stacked``).
        s1: Sentinel-1 raster(s), VV and VH in dB.
        dem: elevation raster(s) in metres.
        aoi: vector file; only its area is mapped and the outputs cover its bounding box.
        window: window side in pixels (multiple of 32).
        overlap: pixels shared by neighbouring windows (multiple of 32, at most window/2).
        margin: zero-weight pixels at shared window edges (default overlap/4).
        block: approximate side of a unit of work (resume, Dask task) in pixels.
        batch_size: windows per forward pass (default 1 on CPU, 8 on GPU).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (bf16 on GPU, fp32 on CPU), ``fp32``, ``bf16`` or ``fp16``.
        onnx: exported model to run with ONNX Runtime instead of PyTorch.
        cluster: Dask scheduler address or ``distributed.Client``.
        workers: start a local Dask cluster of this many worker processes.
        readers: reader threads (default 2 on CPU, 8 on GPU).
        threads: intra-op threads of the backend (default: the library's; per worker: cores/workers).
        scale: per-band factors applied on read, e.g. ``10000`` for a 0-1 Sentinel-2 export.
        band_order: names of the stacked file's bands in order.
        force: map even when the guards find the scene unlike the training data.
        threshold: decision threshold (default: the model card's).
        min_area_ha: mines smaller than this are dropped from ``mines.gpkg`` and ``mines.tif``.
        simplify: polygon simplification tolerance in CRS units (0: pixel outlines).
        year: acquisition year, recorded in the summary for change analysis (default: the year of the
            scene's ``fetch.json`` provenance record, else a year in the first input's file name).
        resume: reuse finished blocks of an interrupted run with identical settings.
        keep_work: keep ``.work`` (per-block results) after success.
        overwrite: replace a finished map in ``out_dir`` (the CLI's ``--overwrite``; the command line
            refuses by default). An interrupted run (no ``summary.json``) is resumed either way.
        progress: ``progress(done_km2, total_km2)``.

    Raises:
        SmallminesError: a bad option (ConfigError), a missing band (BandError), a scene unlike the
            training data (SceneMismatchError), an unreadable file.

    """
    start = time.perf_counter()
    out = Path(out_dir)
    refuse_overwrite([out / OUTPUTS["summary"]], overwrite)
    _check_counts(workers, block, batch_size, readers, threads)
    if threshold is not None:
        threshold = check_threshold(threshold)
    if min_area_ha < 0 or simplify < 0:
        raise ConfigError(f"min_area_ha={min_area_ha:g}, simplify={simplify:g}: neither may be negative")
    ref, card = _load_model(checkpoint, onnx, device, precision, cluster, workers, threads)
    if split_date_channels(card.channels) is not None:
        raise ConfigError(f"{ref.path} is a bi-temporal change model ({card.model}): it maps two scenes, not one; "
                          "run `smallmines map --before SCENE_A --after SCENE_B --model MODEL -o DIR`")
    scene = open_scene(stacked, s2, s1, dem, band_order).with_scale(parse_scale(scale))
    bands = required_bands(card.channels)
    scene.require(bands)
    geometry, rows, cols = _region(scene.grid, aoi)
    grid = scene.grid.sub(rows, cols)

    with scene.open() as reader:
        check = compare_to_training(sample_scene(reader, bands, rows, cols), bands, card.stats, scene.file_bands)
    enforce(check, force)
    checked = time.perf_counter()

    if overlap == 0:
        logger.warning("overlap=0: windows are stitched edge to edge, so seams may show where they meet")
    stats = card.stats.subset(card.channels)
    job = Job(scene, make_plan(rows.size, cols.size, window, overlap, margin, block), (rows.start, cols.start),
              bands, card.channels, stats.mean, stats.std, ref, batch_size, readers,
              geometry.wkb if geometry is not None else None)
    # the work folder holds float32 probabilities of every pixel, then the rasters are written: check the room first
    free_space_check(out, grid.width * grid.height * 5, f"a map of {grid.width} x {grid.height} pixels")
    with folder_lock(out, "another smallmines map run"):  # two runs never write one folder
        refuse_overwrite([out / OUTPUTS["summary"]], overwrite)  # again: another run may have finished meanwhile
        run_id = uuid.uuid4().hex
        (out / OUTPUTS["summary"]).unlink(missing_ok=True)  # written last: its presence marks a complete map
        work = WorkFolder(out / WORK_DIR, _fingerprint(job))
        reused = work.open(resume)
        todo = [b for b in job.plan.blocks() if b not in reused]
        computed = _infer(job, todo, work, grid, cluster, workers, progress)
        inferred = time.perf_counter()

        threshold = card.threshold if threshold is None else threshold
        summary = _write_outputs(job, work, grid, out, threshold, min_area_ha, simplify, run_id)
        if not keep_work:
            shutil.rmtree(work.root, ignore_errors=True)
        done = time.perf_counter()
        summary.update(_describe(job, card, ref, check, cluster, workers, threshold, min_area_ha, simplify, aoi,
                                 band_order))
        km2 = summary["areas"]["scene_km2"]
        summary["timing"] = {
            "total_s": done - start, "check_s": checked - start, "inference_s": inferred - checked,
            "outputs_s": done - inferred, "blocks": len(job.plan.blocks()), "blocks_computed": computed,
            "blocks_reused": len(reused), "km2_per_s": km2 / max(done - start, 1e-9),
            "inference_km2_per_s": km2 / max(inferred - checked, 1e-9) if computed else None,
            "inference_mpx_per_s": grid.width * grid.height / 1e6 / max(inferred - checked, 1e-9) if computed else None,
        }
        summary["year"] = year if year is not None else _scene_year(job.scene.sources[0].path)
        summary["run_id"] = run_id
        summary_path = out / OUTPUTS["summary"]
        _write_json(summary_path, summary)
        logger.info("mapped %.1f km2 in %.1f s: %.2f ha of mining in %d polygons", km2, done - start,
                    summary["areas"]["mined_ha"], summary["areas"]["polygons"])
        return MapResult(out, out / OUTPUTS["probability"], out / OUTPUTS["mines"], out / OUTPUTS["polygons"],
                         summary_path, summary)


def _scene_year(path: str) -> int | None:
    """The year of a scene: its ``fetch.json`` (``smallmines fetch``), else a year in its file name."""
    provenance = Path(path).parent / "fetch.json"
    if provenance.is_file():
        try:
            return int(json.loads(provenance.read_text(encoding="utf-8"))["year"])
        except (ValueError, KeyError, TypeError):
            logger.debug("%s: no year read", provenance)
    match = re.search(r"(?<!\d)((?:19|20)\d\d)(?!\d)", Path(path).stem)
    return int(match[1]) if match else None


def _infer(job: Job, todo: Sequence[BlockId], work: WorkFolder, grid: Grid, cluster: Any, workers: int | None,
           progress: Progress | None) -> int:
    """Compute the blocks not yet done; returns how many were computed."""
    plan = job.plan
    total_km2 = float(pixel_areas_m2(grid.transform, grid.crs, 0, grid.height).sum()) * grid.width / 1e6
    per_window = total_km2 / plan.n_windows
    done = [plan.n_windows - sum(len(plan.windows(b)) for b in todo)]

    def tick(windows: int = 1) -> None:
        done[0] += windows
        if progress is not None:
            progress(min(done[0] * per_window, total_km2), total_km2)

    tick(0)
    if not todo:
        return 0
    logger.info("%d of %d blocks to compute (%d windows of %dx%d, %s on %s)", len(todo), len(plan.blocks()),
                sum(len(plan.windows(b)) for b in todo), *plan.input_shape, job.model.engine, job.model.device)
    if job.model.engine == "torch" and job.model.device == "cpu":
        logger.info("on CPU, ONNX Runtime mapped 1.3-1.4x faster end to end on 2 cores: "
                    "`smallmines export MODEL model.onnx`, then --onnx")
    if cluster or workers:
        def on_remote(block: BlockId, acc: np.ndarray) -> None:
            work.save(block, acc)
            tick(len(plan.windows(block)))

        _run_distributed(job, todo, on_remote, cluster, workers)
    else:
        run_blocks(job, todo, work.save, tick)
    return len(todo)


def _check_counts(workers: int | None, block: int, batch_size: int | None, readers: int | None,
                  threads: int | None) -> None:
    """Refuse counts below 1 (``None`` keeps the default)."""
    if workers is not None and workers < 1:
        raise ConfigError(f"workers={workers}: need at least 1")
    for option, value in (("--block", block), ("--batch-size", batch_size), ("--readers", readers),
                          ("--threads", threads)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} {value}: need at least 1 (or leave it out for the default)")


def _load_model(checkpoint: str | Path | None, onnx: str | Path | None, device: str, precision: str, cluster: Any,
                workers: int | None, threads: int | None) -> tuple[ModelRef, ModelCard]:
    """The model's reference and card, loaded here so a bad device or model fails before any work.

    With Dask the workers load the model; only its card is read here. Local worker processes share
    the cores (``threads`` defaults to cores / workers).
    """
    if workers and not cluster and threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
    distributed = bool(cluster or workers)
    ref = _model_ref(checkpoint, onnx, device, precision, threads)
    if not distributed:
        ref = ref.resolved()
    card = read_card(ref) if distributed else load_predictor(ref)[1]
    _check_cards(ref, card)
    return ref, card


def _region(grid: Grid, aoi: str | Path | None) -> tuple[Any, Span, Span]:
    """The area of interest's geometry (None without one) and the rows and columns of ``grid`` to map."""
    geometry = load_aoi(aoi, grid.crs) if aoi else None
    if geometry is None:
        return None, Span(0, grid.height), Span(0, grid.width)
    return (geometry, *aoi_region(grid, geometry))


def _write_outputs(job: Job, work: WorkFolder, grid: Grid, out: Path, threshold: float, min_area_ha: float,
                   simplify: float, run_id: str) -> dict[str, Any]:
    prob_tmp, raw_tmp, mines_tmp = (out / WORK_DIR / name for name in ("probability.tif", "raw.tif", "mines.tif"))
    areas = _stitch(job, work, grid, threshold, prob_tmp, raw_tmp)
    if areas.valid_pixels == 0:  # "0 ha of mining" would be a wrong answer, not an empty one
        files = ", ".join(s.path for s in job.scene.sources)
        raise DataFormatError(files, f"no pixel of the mapped region has valid data in every band the model reads "
                              f"({', '.join(job.bands)}): the scene is all nodata there, or its sensors do not "
                              "overlap (S1 or the DEM beside S2?); check the inputs' extents")
    logger.info("tracing polygons")
    kept, area, dropped = polygonize(raw_tmp, min_area_ha)
    mean_prob = _finalise_mask(job, grid, prob_tmp, kept, mines_tmp, areas)
    write_polygons(out / OUTPUTS["polygons"], kept, {"id": np.arange(1, len(kept) + 1, dtype=np.int64),
                                                    "area_ha": area, "mean_prob": mean_prob}, grid.crs, simplify)
    del kept
    tags = {RUN_TAG: run_id}
    _to_cog(prob_tmp, out / OUTPUTS["probability"], "average", 3, "mining probability", tags=tags)
    _to_cog(mines_tmp, out / OUTPUTS["mines"], "nearest", 2, "mining (1), not mining (0)", MINES_COLOURS,
            {**tags, "classes": ", ".join(f"{i}={name}" for i, name in enumerate(MINES_CATEGORIES)) + ", 255=nodata"})
    write_category_names(out / OUTPUTS["mines"], MINES_CATEGORIES)
    scene_km2 = areas.scene_m2 / 1e6
    return {"areas": {
        "scene_km2": scene_km2, "valid_km2": areas.valid_m2 / 1e6,
        "valid_fraction": areas.valid_pixels / max(areas.pixels, 1),
        "mined_ha": areas.mined_m2 / 1e4, "mined_km2": areas.mined_m2 / 1e6,
        "mined_fraction_of_valid": areas.mined_m2 / max(areas.valid_m2, 1e-9),
        "mined_ha_before_min_area": areas.mined_raw_m2 / 1e4, "polygons": len(area),
        "polygons_dropped": dropped,
    }}


def _absolute(path: Any) -> Any:
    """A local path made absolute (summary.json must not depend on the working directory); others as they are."""
    if not isinstance(path, (str, Path)) or not str(path) or "://" in str(path) or str(path).startswith("/vsi"):
        return path
    return str(Path(path).resolve())


def _describe(job: Job, card: ModelCard, ref: ModelRef, check: SceneCheck, cluster: Any, workers: int | None,
              threshold: float, min_area_ha: float, simplify: float, aoi: Any, band_order: Any) -> dict[str, Any]:
    import smallmines

    plan = job.plan
    scene = job.scene.describe()
    for source in scene["sources"]:
        source["path"] = _absolute(source["path"])
    return {
        "smallmines": smallmines.__version__, "created": _now(),
        "model": {"file": _absolute(ref.path), "checkpoint": _absolute(ref.checkpoint),
                  "onnx": _absolute(ref.onnx), "architecture": card.model,
                  "channels": list(card.channels), "threshold": card.threshold},
        "backend": {"engine": ref.engine, "device": ref.device, "precision": ref.precision,
                    "cluster": str(cluster) if cluster else None, "workers": workers,
                    "batch_size": job.batch_size or "auto", "readers": job.readers or "auto"},
        "scene": {**scene, "output_grid": job.scene.grid.sub(*job.scene_spans(
            Span(0, plan.height), Span(0, plan.width))).to_dict()},
        "parameters": {"window": plan.size, "overlap": plan.overlap, "margin": plan.margin,
                       "block_windows": plan.per_block, "threshold": threshold, "min_area_ha": min_area_ha,
                       "simplify": simplify, "aoi": _absolute(aoi) if aoi else None,
                       "band_order": band_order if band_order is None or isinstance(band_order, str)
                       else ",".join(band_order)},
        "band_check": check.to_dict(),
        "outputs": dict(OUTPUTS),
    }
