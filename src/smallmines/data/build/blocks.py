"""Cutting tiles block by block: read, rasterise, select and encode, here or on Dask workers.

A *block* is a band of whole tile rows. :func:`run_block` reads its tiles through a
:class:`~smallmines.data.scene.SceneReader`, rasterises the labels near it, applies the selection
rules and returns each kept tile as encoded GeoTIFF bytes, so the caller (the only writer) stores
them and memory stays bounded by one block per worker. The same function runs in the calling
process (sequential) or as a Dask task (``workers=`` / ``cluster=``, as ``smallmines map``); the
job (:class:`TileJob`) and the polygons near a block are plain picklable data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.io import MemoryFile

from smallmines.bands import IMAGE_NODATA, MASK_NODATA
from smallmines.cluster import dask_client
from smallmines.data.build.labels import Labels, rasterize_tile
from smallmines.data.build.tiles import TileGrid
from smallmines.data.io import mining_share
from smallmines.data.scene import Scene

logger = logging.getLogger(__name__)

BLOCK_TILES = 64
"""About this many tiles per block (whole tile rows)."""


@dataclass(frozen=True)
class TileJob:
    """What every block needs: the scene, the tile grid, the bands and the selection rules.

    Attributes:
        scene: the scene, read onto ``grid.grid``.
        grid: the tile grid.
        bands: bands to write.
        max_nodata: skip tiles whose nodata (or unknown) fraction is above this.
        keep_empty: fraction of mining-free tiles kept (seeded draw per tile number).
        min_share: skip tiles whose mining percentage is above 0 but below this.
        seed: seed of the draw.
        partners: tile numbers another year holds (kept whatever the sampling).

    """

    scene: Scene
    grid: TileGrid
    bands: tuple[str, ...]
    max_nodata: float
    keep_empty: float
    min_share: float
    seed: int
    partners: frozenset[int]


@dataclass(frozen=True)
class TileOutcome:
    """One tile: kept (with its encoded files) or skipped (with the reason)."""

    number: int
    reason: str | None
    share: float
    missing: float
    image: bytes | None = None
    mask: bytes | None = None


def keep_empty_draw(seed: int, number: int, fraction: float) -> bool:
    """Draw whether a mining-free tile is kept: depends on the tile number only, so years agree."""
    if fraction >= 1:
        return True
    return bool(np.random.default_rng([seed, number]).random() < fraction)


def encode_tif(array: np.ndarray, transform: Any, crs: str, nodata: float, descriptions: Sequence[str]) -> bytes:
    """Encode ``array`` ``(bands, h, w)`` as a plain GeoTIFF (like the published patches)."""
    count, height, width = array.shape
    with MemoryFile() as memory:
        with memory.open(driver="GTiff", width=width, height=height, count=count, crs=crs, dtype=array.dtype.name,
                         transform=transform, nodata=nodata) as dst:
            dst.write(array)
            dst.descriptions = tuple(descriptions)
        return memory.read()


def blocks(grid: TileGrid, tiles: int | None = None) -> list[list[int]]:
    """Tile numbers grouped in bands of whole tile rows, about ``tiles`` (:data:`BLOCK_TILES`) per band."""
    rows = max(1, (tiles or BLOCK_TILES) // max(grid.columns, 1))
    out = []
    for first in range(0, grid.rows, rows):
        last = min(grid.rows, first + rows)
        out.append([r * grid.columns + c + 1 for r in range(first, last) for c in range(grid.columns)])
    return out


def block_bounds(grid: TileGrid, numbers: Sequence[int]) -> tuple[float, float, float, float]:
    """``(left, bottom, right, top)`` covering the tiles of a block."""
    boxes = [grid.bounds(grid.cell(n)) for n in numbers]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _select(job: TileJob, number: int, share: float, missing: float) -> str | None:
    if missing >= 1 or missing > job.max_nodata:
        return "nodata"
    if number in job.partners:  # another year holds this tile: keep it, so years pair up
        return None
    if share == 0 and not keep_empty_draw(job.seed, number, job.keep_empty):
        return "empty_not_drawn"
    if 0 < share < job.min_share:
        return "below_min_share"
    return None


def run_block(job: TileJob, numbers: Sequence[int], mining: Sequence[Any], unknown: Sequence[Any]
              ) -> list[TileOutcome]:
    """Cut, label, select and encode the tiles ``numbers`` (the Dask task).

    Args:
        job: the shared job.
        numbers: tile numbers of the block.
        mining: mining polygons near the block (grid CRS).
        unknown: unknown-area polygons near the block.

    """
    labels = Labels(list(mining), list(unknown), [])
    grid = job.grid
    outcomes = []
    with job.scene.open() as reader:
        for number in numbers:
            cell = grid.cell(number)
            image = reader.read(job.bands, cell.rows, cell.cols)
            transform = grid.transform(cell)
            mask = rasterize_tile(labels, transform, (grid.tile, grid.tile), grid.bounds(cell))
            mask[np.isnan(image).any(axis=0)] = MASK_NODATA
            missing = float((mask == MASK_NODATA).mean())
            share = mining_share(mask)
            reason = _select(job, number, share, missing)
            if reason is not None:
                outcomes.append(TileOutcome(number, reason, share, missing))
                continue
            stored = np.where(np.isnan(image), np.float32(IMAGE_NODATA), image).astype(np.float32)
            outcomes.append(TileOutcome(
                number, None, share, missing,
                encode_tif(stored, transform, grid.crs, IMAGE_NODATA, job.bands),
                encode_tif(mask[None].astype(np.uint8), transform, grid.crs, MASK_NODATA, ("mining",))))
    return outcomes


def run_blocks(job: TileJob, labels: Labels, cluster: Any = None, workers: int | None = None,
               ) -> Iterator[list[TileOutcome]]:
    """Yield the outcomes of every block, in grid order here, or as they finish on a Dask cluster.

    Args:
        job: the job.
        labels: all polygons; each block gets those near it.
        cluster: Dask scheduler address or ``distributed.Client``.
        workers: start a local Dask cluster of this many worker processes.

    """
    groups = blocks(job.grid)
    near = [labels.near(block_bounds(job.grid, numbers)) for numbers in groups]
    if not (cluster or workers):
        for numbers, (mining, unknown) in zip(groups, near, strict=True):
            yield run_block(job, numbers, mining, unknown)
        return
    from distributed import as_completed

    with dask_client(cluster, workers) as client:
        logger.info("building %d blocks on %s", len(groups), client)
        shared = client.scatter(job, broadcast=True)
        futures = [client.submit(run_block, shared, numbers, mining, unknown, pure=False)
                   for numbers, (mining, unknown) in zip(groups, near, strict=True)]
        for future in as_completed(futures):
            yield future.result()
            future.release()

