"""The resumable work folder and the output rasters of a map.

Finished blocks live in ``.work/blocks`` beside a manifest whose fingerprint (model, scene, settings)
decides whether an interrupted run may reuse them. Block cores are stitched, tile by tile, into
temporary GeoTIFFs, then copied into Cloud-Optimised GeoTIFFs under a temporary name and renamed
into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from smallmines.bands import MASK_NODATA
from smallmines.data.scene import Grid
from smallmines.data.windows import BlockId, assemble
from smallmines.legend import CHANGE_COLOURS, CHANGE_NODATA, MINING_COLOUR, ChangeClass, hex_to_rgba
from smallmines.mapping.engine import Job
from smallmines.mapping.vector import label_tile, pixel_areas_m2

logger = logging.getLogger(__name__)


PROB_NODATA = -1.0
WORK_DIR = ".work"
OUTPUTS = {"probability": "probability.tif", "mines": "mines.tif", "polygons": "mines.gpkg", "summary": "summary.json"}
COG_OPTIONS = {"compress": "DEFLATE", "blocksize": 512, "bigtiff": "IF_SAFER", "num_threads": "ALL_CPUS"}
TEMP_TIFF = {"driver": "GTiff", "tiled": True, "blockxsize": 512, "blockysize": 512, "bigtiff": "IF_SAFER"}

# ----------------------------------------------------------------------------------------------
# Work folder (resume)
# ----------------------------------------------------------------------------------------------


class WorkFolder:
    """Finished blocks on disk beside a manifest; a block file exists only once complete."""

    def __init__(self, root: Path, fingerprint: dict[str, Any]) -> None:
        self.root = root
        self.blocks = root / "blocks"
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))

    def open(self, resume: bool) -> set[BlockId]:
        """Create or reuse the folder; returns the blocks already done (none if inputs changed)."""
        manifest = self.root / "manifest.json"
        old = None
        if manifest.is_file():
            try:
                old = json.loads(manifest.read_text()).get("fingerprint")
            except (OSError, json.JSONDecodeError):
                old = None
        if self.blocks.is_dir() and (not resume or old != self.fingerprint):
            if resume:
                logger.warning("%s holds blocks of another run (model, inputs or settings differ); starting over",
                               self.root)
            shutil.rmtree(self.blocks)
        self.blocks.mkdir(parents=True, exist_ok=True)
        _write_json(manifest, {"fingerprint": self.fingerprint, "created": _now()})
        done = set()
        for path in self.blocks.glob("*.npy"):
            i, _, j = path.stem.partition("_")
            done.add((int(i), int(j)))
        return done

    def path(self, block: BlockId) -> Path:
        """File of a block's accumulator."""
        return self.blocks / f"{block[0]}_{block[1]}.npy"

    def save(self, block: BlockId, acc: np.ndarray) -> None:
        """Store a finished block atomically."""
        final = self.path(block)
        tmp = final.with_name(f".{final.name}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, acc)
        os.replace(tmp, final)

    def load(self, block: BlockId) -> np.ndarray:
        """Open a block's accumulator, memory-mapped."""
        return np.load(self.path(block), mmap_mode="r")


def _file_id(path: str) -> list[Any]:
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(job: Job) -> dict[str, Any]:
    plan = job.plan
    return {
        "model": _sha256(job.model.path), "engine": job.model.engine, "precision": job.model.precision,
        "inputs": [_file_id(s.path) for scene in job.scenes for s in scene.sources],
        "scene": [scene.describe() for scene in job.scenes] if job.scene_b is not None else job.scene.describe(),
        "origin": list(job.origin), "channels": list(job.channels), "mean": list(job.mean), "std": list(job.std),
        "plan": [plan.height, plan.width, plan.size, plan.overlap, plan.margin, plan.per_block, plan.align],
        "aoi": hashlib.sha256(job.aoi).hexdigest() if job.aoi else None,
    }


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _temp_raster(path: Path, grid: Grid, dtype: str, nodata: float) -> Any:
    return rasterio.open(path, "w", **TEMP_TIFF, width=grid.width, height=grid.height, count=1, dtype=dtype,
                         crs=rasterio.crs.CRS.from_wkt(grid.crs), transform=grid.transform, nodata=nodata)


MINES_COLOURS = {0: hex_to_rgba(CHANGE_COLOURS[ChangeClass.NO_MINING]), 1: hex_to_rgba(MINING_COLOUR),
                 MASK_NODATA: (0, 0, 0, 0)}
"""Colour table of ``mines.tif``: mining in the scheme's gold, no mining light grey, so QGIS shows it at
once (TIFF palettes hold no alpha: nodata, 255, is transparent through the nodata value)."""


def _to_cog(src: Path, dst: Path, resampling: str, predictor: int, description: str,
            colormap: dict[int, tuple[int, int, int, int]] | None = None, tags: dict[str, str] | None = None) -> None:
    """Copy a tiled GeoTIFF into a compressed Cloud-Optimised GeoTIFF, atomically."""
    from rasterio.shutil import copy

    with rasterio.open(src, "r+") as ds:
        ds.set_band_description(1, description)
        if colormap:
            ds.write_colormap(1, colormap)
        if tags:
            ds.update_tags(**tags)
    tmp = dst.with_name(f".{dst.stem}.tmp{dst.suffix}")
    copy(src, tmp, driver="COG", overview_resampling=resampling, predictor=predictor, **COG_OPTIONS)
    os.replace(tmp, dst)


@dataclass
class _Areas:
    scene_m2: float = 0.0
    valid_m2: float = 0.0
    mined_raw_m2: float = 0.0
    mined_m2: float = 0.0
    pixels: int = 0
    valid_pixels: int = 0


def _stitch(job: Job, work: WorkFolder, grid: Grid, threshold: float, prob_path: Path, raw_path: Path) -> _Areas:
    """Assemble block cores into the probability raster and the thresholded raw mask."""
    plan, areas = job.plan, _Areas()
    with _temp_raster(prob_path, grid, "float32", PROB_NODATA) as prob_dst, \
            _temp_raster(raw_path, grid, "uint8", 0) as raw_dst:
        for block in plan.blocks():
            rows, cols = plan.core(block)
            probability = assemble(plan, block, {b: work.load(b) for b in plan.contributors(block)})
            valid = np.isfinite(probability)
            inside = job.inside(rows, cols)
            pixel = pixel_areas_m2(grid.transform, grid.crs, rows.start, rows.size)[:, None]
            mined = valid & (probability >= threshold)
            areas.scene_m2 += float((pixel * (inside if inside is not None else np.ones(cols.size))).sum())
            areas.valid_m2 += float((pixel * valid).sum())
            areas.mined_raw_m2 += float((pixel * mined).sum())
            areas.pixels += int(inside.sum()) if inside is not None else rows.size * cols.size
            areas.valid_pixels += int(valid.sum())
            window = Window(cols.start, rows.start, cols.size, rows.size)
            prob_dst.write(np.where(valid, np.clip(probability, 0, 1), np.float32(PROB_NODATA)), 1, window=window)
            raw_dst.write(mined.astype(np.uint8), 1, window=window)
    return areas


def _finalise_mask(job: Job, grid: Grid, prob_path: Path, polygons: Sequence[Any], mines_path: Path,
                   areas: _Areas) -> np.ndarray:
    """Write the mine mask of the kept polygons; returns each polygon's mean probability."""
    import shapely

    plan = job.plan
    tree = shapely.STRtree(polygons)
    sums = np.zeros(len(polygons) + 1)
    counts = np.zeros(len(polygons) + 1)
    with rasterio.open(prob_path) as prob_src, _temp_raster(mines_path, grid, "uint8", MASK_NODATA) as dst:
        for block in plan.blocks():
            rows, cols = plan.core(block)
            window = Window(cols.start, rows.start, cols.size, rows.size)
            probability = prob_src.read(1, window=window)
            labels = label_tile(polygons, tree, grid.sub(rows, cols).transform, (rows.size, cols.size))
            sums += np.bincount(labels.ravel(), weights=probability.ravel(), minlength=len(sums))
            counts += np.bincount(labels.ravel(), minlength=len(counts))
            mines = np.where(probability == PROB_NODATA, np.uint8(MASK_NODATA), (labels > 0).astype(np.uint8))
            pixel = pixel_areas_m2(grid.transform, grid.crs, rows.start, rows.size)[:, None]
            areas.mined_m2 += float((pixel * (mines == 1)).sum())
            dst.write(mines, 1, window=window)
    return (sums / np.maximum(counts, 1))[1:]




def _stitch_change(job: Job, work: WorkFolder, grid: Grid, path: Path) -> dict[int, int]:
    """Assemble blended class probabilities into the change raster (most probable class, 255 nodata).

    Returns:
        Pixel count of every class code (nodata left out).

    """
    plan, counts = job.plan, np.zeros(256, np.int64)
    with _temp_raster(path, grid, "uint8", CHANGE_NODATA) as dst:
        for block in plan.blocks():
            rows, cols = plan.core(block)
            probability = assemble(plan, block, {b: work.load(b) for b in plan.contributors(block)})
            valid = np.isfinite(probability).all(axis=0)
            inside = job.inside(rows, cols)
            if inside is not None:
                valid &= inside
            classes = np.where(valid, np.nan_to_num(probability).argmax(axis=0), CHANGE_NODATA).astype(np.uint8)
            counts += np.bincount(classes.ravel(), minlength=256)
            dst.write(classes, 1, window=Window(cols.start, rows.start, cols.size, rows.size))
    return {code: int(n) for code, n in enumerate(counts) if n and code != CHANGE_NODATA}
