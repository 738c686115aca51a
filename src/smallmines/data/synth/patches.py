"""The synthetic dataset: patches cut from the world in the published layout, names and formats.

Dataset patches are 128 x 128 tiles picked on a gapped grid over the world so that, like the real
dataset, mining is over-represented: tiles without, with a little and with a lot of mining. A few
patches per year get a nodata region (a swath edge or a masked cloud) where all 13 bands are -9999
and the mask is 255. Output is a folder or a zip (deterministic: the same seed gives the same
archive), with the official split files.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from smallmines.bands import BAND_NAMES, IMAGE_NODATA, MASK_NODATA
from smallmines.data.layout import DATASET_DIR, SPLITS_DIR, image_name, mask_name, split_csv_name
from smallmines.data.splits import write_official_split
from smallmines.data.synth.world import (
    CRS,
    PATCH_SIZE,
    SURVEY_STEP,
    SURVEY_YEARS,
    TILE_PITCH,
    WORLD_TILES,
    _field,
    _Grid,
    _render_years,
    _salt,
    _survey,
    region_transform,
)
from smallmines.errors import ConfigError
from smallmines.folders import refuse_overwrite

Progress = Callable[[int, int], None]

NO_MINING_TILES = 0.25
"""Share of dataset tiles drawn where the survey finds no mining in either survey year."""
TARGET_SHARE = 5.5
"""Mining percentage of the dataset's 2016 pixels (the real dataset: 5.5 %; 7.7 % in 2022)."""
SURVEY_OPTIMISM = 1.2
"""Ratio of the survey's share to the rendered share on tiles picked for their surveyed mining."""
NODATA_PATCH_SHARE = 0.03
NODATA_COVER = (0.08, 0.6)
"""Range of the share of a patch that its nodata region covers."""
SWATH_TILT = 0.35
"""Largest angle (radians) between a swath edge and the patch's columns."""
ZIP_DATE = (2025, 1, 1, 0, 0, 0)
"""Date stamped on zip members, so the same seed gives the same archive."""
# Dataset
# ---------------------------------------------------------------------------------------------


def _select_tiles(tiles: int, seed: int) -> list[tuple[int, int]]:
    """Pick the world pixel origins of ``tiles`` tiles that over-represent mining, row-major.

    A quarter of the tiles come from places without mining; the rest are drawn with weights
    ``share ** alpha`` on their surveyed 2016 mining share, ``alpha`` chosen so that the expected
    mining share of the dataset is ``TARGET_SHARE``.
    """
    if not 1 <= tiles <= WORLD_TILES ** 2:
        raise ConfigError(f"tiles={tiles}; the synthetic world holds 1 to {WORLD_TILES ** 2} tiles")
    per_pitch, per_tile = TILE_PITCH // SURVEY_STEP, PATCH_SIZE // SURVEY_STEP
    cells = _survey(seed).reshape(len(SURVEY_YEARS), WORLD_TILES, per_pitch, WORLD_TILES, per_pitch)
    shares = cells[:, :, :per_tile, :, :per_tile].mean(axis=(2, 4)).reshape(len(SURVEY_YEARS), -1)
    barren = np.flatnonzero(shares.max(axis=0) == 0)
    mined = np.flatnonzero(shares.max(axis=0) > 0)
    rng = np.random.default_rng(_salt(seed, "tiles"))
    wanted = min(barren.size, max(round(NO_MINING_TILES * tiles), tiles - mined.size))
    chosen = rng.choice(barren, wanted, replace=False)
    rest = tiles - chosen.size
    if rest:
        target = TARGET_SHARE / 100 * SURVEY_OPTIMISM * tiles / rest
        weights = _share_weights(shares[0, mined], target)
        chosen = np.concatenate([chosen, rng.choice(mined, rest, replace=False, p=weights)])
    return [(int(i) // WORLD_TILES * TILE_PITCH, int(i) % WORLD_TILES * TILE_PITCH)
            for i in np.sort(chosen)]


def _share_weights(shares: np.ndarray, target: float) -> np.ndarray:
    """Find sampling weights ``~ (share + floor) ** alpha`` whose mean share is ``target``."""
    score = shares + 1.0 / (PATCH_SIZE // SURVEY_STEP) ** 2
    low, high = -4.0, 4.0
    for _ in range(40):  # bisection: the weighted mean share grows with alpha
        alpha = (low + high) / 2
        weights = score ** alpha
        mean = np.sum(weights * shares) / np.sum(weights)
        low, high = (alpha, high) if mean < target else (low, alpha)
    return weights / np.sum(weights)


def _nodata_tiles(seed: int, year: int, tiles: int) -> set[int]:
    """Choose the patches of ``year`` that get a nodata region (independently between years)."""
    rng = np.random.default_rng(_salt(seed, "nodata", year))
    return set(rng.choice(tiles, math.ceil(NODATA_PATCH_SHARE * tiles), replace=False).tolist())


def _nodata_region(seed: int, year: int, tile: int) -> np.ndarray:
    """Nodata pixels of a patch: a slanted swath edge or a masked cloud, covering part of it."""
    rng = np.random.default_rng(_salt(seed, "nodata-shape", year, tile))
    cover = rng.uniform(*NODATA_COVER)
    grid = _Grid(0, 0, PATCH_SIZE, PATCH_SIZE)
    if rng.random() < 0.5:
        angle = rng.uniform(-SWATH_TILT, SWATH_TILT) + math.pi * rng.integers(2)
        score = np.cos(angle) * grid.cols[None, :] + np.sin(angle) * grid.rows[:, None]
    else:
        score = _field(grid, seed, "cloud", year, tile)
    return score > np.quantile(score, 1 - cover)


def _tif_bytes(array: np.ndarray, transform: Affine, nodata: float,
               descriptions: Sequence[str]) -> bytes:
    """Encode ``array`` ``(bands, h, w)`` as a plain GeoTIFF, like the published patches."""
    count, height, width = array.shape
    with MemoryFile() as memory:
        with memory.open(driver="GTiff", width=width, height=height, count=count, crs=CRS,
                         dtype=array.dtype.name, transform=transform, nodata=nodata) as dst:
            dst.write(array)
            dst.descriptions = tuple(descriptions)
        return memory.read()


class _FolderSink:
    """Writes dataset members into a folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, member: str, data: bytes) -> None:
        path = self.root / member
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class _ZipSink:
    """Writes dataset members into an open zip archive (stored: GeoTIFFs of noise do not shrink)."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive

    def put(self, member: str, data: bytes) -> None:
        self.archive.writestr(zipfile.ZipInfo(member, ZIP_DATE), data)


def _render_tile(seed: int, years: Sequence[int], country: str | None, tile: int, origin: tuple[int, int],
                 holes: tuple[int, ...]) -> list[tuple[int, str, float, list[tuple[str, bytes]]]]:
    """Render one tile in every year: ``(year, image name, mining %, [(member, GeoTIFF bytes)])``."""
    row, col = origin
    transform = region_transform(row, col)
    rendered = _render_years(_Grid(row, col, PATCH_SIZE, PATCH_SIZE), seed, years)
    out = []
    for year, (image, mask) in rendered.items():
        if year in holes:
            hole = _nodata_region(seed, year, tile)
            image[:, hole] = IMAGE_NODATA
            mask[hole] = MASK_NODATA
        valid = mask != MASK_NODATA
        name = image_name(tile, year, country)
        share = 100.0 * float(mask[valid].sum()) / float(valid.sum())
        out.append((year, name, share, [
            (f"{DATASET_DIR}/{year}/IMAGE/{name}", _tif_bytes(image, transform, IMAGE_NODATA, BAND_NAMES)),
            (f"{DATASET_DIR}/{year}/MASK/{mask_name(tile, year, country)}",
             _tif_bytes(mask[None], transform, MASK_NODATA, ("mining",)))]))
    return out


def _write_patches(sink: _FolderSink | _ZipSink, origins: list[tuple[int, int]], seed: int,
                   years: Sequence[int], country: str | None,
                   progress: Progress | None, workers: int = 1) -> dict[int, dict[str, float]]:
    """Render and write every patch; returns year -> image name -> mining percentage.

    With ``workers > 1`` tiles are rendered in that many processes; they are written in tile order by
    this one, so the files do not depend on ``workers``.
    """
    nodata_tiles = {year: _nodata_tiles(seed, year, len(origins)) for year in years}
    shares: dict[int, dict[str, float]] = {year: {} for year in years}
    done, total = 0, len(origins) * len(years)
    jobs = [(seed, tuple(years), country, index + 1, origin,
             tuple(year for year in years if index in nodata_tiles[year])) for index, origin in enumerate(origins)]
    pool = None
    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn"))
    try:
        results = (pool.map(_render_tile, *zip(*jobs, strict=True), chunksize=4) if pool
                   else (_render_tile(*job) for job in jobs))
        for rendered in results:
            for year, name, share, members in rendered:
                shares[year][name] = share
                for member, data in members:
                    sink.put(member, data)
                done += 1
                if progress:
                    progress(done, total)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return shares


def _write_splits(sink: _FolderSink | _ZipSink, shares: dict[int, dict[str, float]], seed: int,
                  scratch: Path) -> None:
    """Write the official-format split file of every year through ``sink``."""
    for year, year_shares in shares.items():
        path = write_official_split(scratch / split_csv_name(year), year_shares, seed)
        sink.put(f"{SPLITS_DIR}/{path.name}", path.read_bytes())


def _check_years(years: Sequence[int]) -> tuple[int, ...]:
    years = tuple(int(y) for y in years)
    if not years or len(set(years)) != len(years):
        raise ConfigError(f"years={list(years)}; give one or more distinct years, e.g. 2016 2022")
    return years


def synthesize_dataset(out: str | Path, tiles: int = 256, seed: int = 0,
                       years: Sequence[int] = (2016, 2022), country: str | None = "GH",
                       zip: bool = False, progress: Progress | None = None, workers: int = 1,
                       overwrite: bool = True) -> Path:
    """Write a synthetic SmallMinesDS in the published layout.

    Writes ``SmallMinesDS/{YEAR}/IMAGE/IMG_GH_TTTT_YYYY.tif`` (float32, 13 x 128 x 128, nodata
    -9999, band descriptions), ``SmallMinesDS/{YEAR}/MASK/MASK_GH_TTTT_YYYY.tif`` (uint8, 0/1,
    nodata 255) and ``data_splits/train_test_splits_{YEAR}.csv`` under ``out``, replacing those
    folders if they exist, or the same members in ``out/SmallMinesDS.zip``. Tiles are georeferenced
    in EPSG:32630 at 10 m on a common grid; a tile id has the same footprint in every year. Mining
    covers about 5.5 % of the 2016 pixels and 7.7 % of the 2022 pixels, as in the real dataset.

    Args:
        out: the folder to write into (created if needed).
        tiles: patches per year.
        seed: seed of the world and of every choice; the same seed gives identical files.
        years: years to render, each a full set of the same tiles.
        country: country code in file names (``None`` gives ``IMG_0001_2016.tif``).
        zip: write one ``SmallMinesDS.zip`` instead of folders.
        progress: called as ``progress(done, total)`` after each patch (image and mask) is written.
        workers: processes rendering tiles (the files are the same for any number).
        overwrite: replace a dataset already in ``out`` (the command line refuses by default, ``--overwrite``).

    Returns:
        ``out`` for folders, or the path of the zip.

    Raises:
        ConfigError: for a number of tiles the world cannot hold or invalid years, or a dataset in
            ``out`` and ``overwrite`` False.
    """
    years = _check_years(years)
    out = Path(out)
    refuse_overwrite([out / f"{DATASET_DIR}.zip"] if zip else [out / DATASET_DIR, out / SPLITS_DIR], overwrite)
    out.mkdir(parents=True, exist_ok=True)
    origins = _select_tiles(tiles, seed)
    with tempfile.TemporaryDirectory(prefix=".synth-", dir=out) as scratch:
        staging = Path(scratch)
        if zip:
            target = out / f"{DATASET_DIR}.zip"
            partial = staging / target.name
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
                sink = _ZipSink(archive)
                shares = _write_patches(sink, origins, seed, years, country, progress, workers)
                _write_splits(sink, shares, seed, staging)
            os.replace(partial, target)
            return target
        sink = _FolderSink(staging / "tree")
        shares = _write_patches(sink, origins, seed, years, country, progress, workers)
        _write_splits(sink, shares, seed, staging)
        for folder in (DATASET_DIR, SPLITS_DIR):
            if (out / folder).exists():
                shutil.rmtree(out / folder)
            os.replace(sink.root / folder, out / folder)
    return out


# ---------------------------------------------------------------------------------------------
