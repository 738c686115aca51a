"""Synthetic whole scenes: a window of the world as one stacked raster and as per-sensor files.

The window is chosen where the world's mining share is nearest ``SCENE_MINING_SHARE``. Besides the
stacked 13-band GeoTIFF, separate S2 10 m, S2 20 m and S1 20 m rasters and a DEM in EPSG:4326 at
one arc-second (like Copernicus GLO-30) are written, block by block.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.io import DatasetWriter
from rasterio.transform import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window

from smallmines.bands import BAND_NAMES, IMAGE_NODATA, MASK_NODATA
from smallmines.data.synth.patches import _check_years
from smallmines.data.synth.world import (
    CRS,
    GEOGRAPHIC_CRS,
    PIXEL_SIZE,
    SURVEY_STEP,
    _Grid,
    _render_years,
    _survey,
    region_transform,
)
from smallmines.errors import ConfigError

Progress = Callable[[int, int], None]

SCENE_MINING_SHARE = 0.06
"""Scenes cover the window of the world whose mining share is nearest this (or the most mining)."""
SCENE_BLOCK = 512
SCENE_PRODUCTS = {
    "s2_10m": ("blue", "green", "red", "nir"),
    "s2_20m": ("rededge1", "rededge2", "rededge3", "rededge4", "swir1", "swir2"),
    "s1": ("vv", "vh"),
}
"""Per-sensor scene files besides the stacked one (20 m products are named ``*_20m`` or ``s1``)."""
DEM_RESOLUTION_DEG = 1.0 / 3600.0
"""Copernicus GLO-30 pixel: one arc-second."""
DEM_BLOCK = 256
SCENE_CACHE_MB = 128
"""GDAL block cache (MB) while writing scenes: blocks are written whole, so little is needed."""
SCENE_CREATION = {"tiled": True, "compress": "deflate", "zlevel": 1, "num_threads": 2,
                  "bigtiff": "IF_SAFER"}

# Whole scenes
# ---------------------------------------------------------------------------------------------


def _scene_origin(size: int, seed: int) -> tuple[int, int]:
    """World pixel of the scene's top-left corner (see ``SCENE_MINING_SHARE``)."""
    span = size // SURVEY_STEP
    survey = _survey(seed).any(axis=0).astype(np.int64)
    if span >= survey.shape[0]:
        return 0, 0
    table = np.pad(survey.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = table[span:, span:] - table[:-span, span:] - table[span:, :-span] + table[:-span, :-span]
    share = sums / span ** 2
    distance = np.abs(np.minimum(share, share.max()) - min(SCENE_MINING_SHARE, share.max()))
    row, col = np.unravel_index(int(np.argmin(distance)), distance.shape)
    return int(row) * SURVEY_STEP, int(col) * SURVEY_STEP


@dataclass(frozen=True)
class _Product:
    """One scene raster: its bands, pixel size in units of 10 m, data type and nodata."""

    bands: tuple[str, ...]
    factor: int = 1
    dtype: str = "float32"
    nodata: float = IMAGE_NODATA


def _scene_products(separate: bool) -> dict[str, _Product]:
    """List the rasters written block by block (the DEM is reprojected afterwards)."""
    products = {"stacked": _Product(BAND_NAMES),
                "truth": _Product(("mining",), 1, "uint8", MASK_NODATA)}
    if separate:
        products.update({name: _Product(bands, 1 if name.endswith("10m") else 2)
                         for name, bands in SCENE_PRODUCTS.items()})
    return products


def _band_indices(product: _Product) -> list[int]:
    return [BAND_NAMES.index(band) for band in product.bands]


def _open_raster(path: Path, product: _Product, width: int, height: int, crs: str,
                 transform: Affine, block: int) -> DatasetWriter:
    """Open a tiled, deflated GeoTIFF for writing, with band descriptions."""
    predictor = 3 if product.dtype.startswith("float") else 2
    dst = rasterio.open(path, "w", driver="GTiff", width=width, height=height,
                        count=len(product.bands), dtype=product.dtype, crs=crs, transform=transform,
                        nodata=product.nodata, blockxsize=block, blockysize=block,
                        predictor=predictor, **SCENE_CREATION)
    dst.descriptions = product.bands
    return dst


def _write_dem(stacked: Path, target: Path) -> None:
    """Reproject the DEM band to EPSG:4326 at one arc-second, as Copernicus GLO-30 is shipped."""
    with rasterio.open(stacked) as src:
        transform, width, height = calculate_default_transform(
            src.crs, GEOGRAPHIC_CRS, src.width, src.height, *src.bounds,
            resolution=DEM_RESOLUTION_DEG)
        dem = np.full((height, width), IMAGE_NODATA, dtype=np.float32)
        reproject(rasterio.band(src, BAND_NAMES.index("dem") + 1), dem, src_nodata=IMAGE_NODATA,
                  dst_transform=transform, dst_crs=GEOGRAPHIC_CRS, dst_nodata=IMAGE_NODATA,
                  resampling=Resampling.bilinear)
    product = _Product(("dem",))
    with _open_raster(target, product, width, height, GEOGRAPHIC_CRS, transform, DEM_BLOCK) as dst:
        dst.write(dem, 1)


def _write_scene_blocks(files: dict[tuple[int, str], DatasetWriter], products: dict[str, _Product],
                        size: int, origin: tuple[int, int], seed: int, years: Sequence[int],
                        progress: Progress | None) -> None:
    """Render the scene block by block (all years at once) and write each product's window."""
    starts = range(0, size, SCENE_BLOCK)
    done, total = 0, len(starts) ** 2 * len(years)
    for top in starts:
        for left in starts:
            grid = _Grid(origin[0] + top, origin[1] + left, min(SCENE_BLOCK, size - top),
                         min(SCENE_BLOCK, size - left))
            for year, (image, mask) in _render_years(grid, seed, years).items():
                for name, product in products.items():
                    step = product.factor
                    data = mask[None] if name == "truth" else image[_band_indices(product)]
                    data = data[:, ::step, ::step]
                    window = Window(left // step, top // step, data.shape[2], data.shape[1])
                    files[year, name].write(data, window=window)
                done += 1
                if progress:
                    progress(done, total)


def synthesize_scene(out: str | Path, size: int = 4096, seed: int = 0,
                     years: Sequence[int] = (2016, 2022), separate: bool = True,
                     progress: Progress | None = None) -> dict[int, dict[str, Path]]:
    """Write whole synthetic scenes of the same world as :func:`synthesize_dataset`.

    Per year writes ``scene_{year}.tif`` (13 bands, float32, 10 m, EPSG:32630, nodata -9999) and
    ``scene_{year}_truth.tif`` (uint8 mining mask, 0/1, nodata 255); with ``separate`` also the
    scene as distributed per sensor: ``scene_{year}_s2_10m.tif`` (blue, green, red, nir),
    ``scene_{year}_s2_20m.tif`` (red edge 1-4, SWIR 1-2 at 20 m), ``scene_{year}_s1.tif`` (VV, VH
    at 20 m) and ``scene_{year}_dem.tif`` (EPSG:4326, one arc-second). Every file has band
    descriptions, is tiled and deflated, and is rendered block by block, so memory stays bounded
    for any size. The scene covers a window of the world with some mining (about 6 % where the
    window is small enough to find it); its pixels equal :func:`render` of the same window.

    Args:
        out: folder to write into (created if needed); existing scene files are replaced.
        size: pixels per side at 10 m; even.
        seed: the world's seed.
        years: years to render.
        separate: also write the per-sensor files.
        progress: called as ``progress(done, total)`` after each block of each year.

    Returns:
        ``{year: {"stacked": p, "truth": p, "s2_10m": p, "s2_20m": p, "s1": p, "dem": p}}`` (the
        last four only with ``separate``).

    Raises:
        ConfigError: for a size that is not a positive even number, or invalid years.
    """
    years = _check_years(years)
    if size <= 0 or size % 2:
        raise ConfigError(f"size={size}; the scene side must be a positive even number of pixels")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    origin = _scene_origin(size, seed)
    products = _scene_products(separate)
    names = [*products, *(["dem"] if separate else [])]
    paths = {year: {name: out / f"scene_{year}{'' if name == 'stacked' else '_' + name}.tif"
                    for name in names} for year in years}
    with (tempfile.TemporaryDirectory(prefix=".synth-", dir=out) as scratch,
          rasterio.Env(GDAL_CACHEMAX=SCENE_CACHE_MB)):
        staged = {year: {name: Path(scratch) / p.name for name, p in files.items()}
                  for year, files in paths.items()}
        with ExitStack() as stack:
            files = {}
            for year in years:
                for name, product in products.items():
                    side, block = size // product.factor, SCENE_BLOCK // product.factor
                    transform = region_transform(*origin, PIXEL_SIZE * product.factor)
                    files[year, name] = stack.enter_context(_open_raster(
                        staged[year][name], product, side, side, CRS, transform, block))
            _write_scene_blocks(files, products, size, origin, seed, years, progress)
        for year in years:
            if separate:
                _write_dem(staged[year]["stacked"], staged[year]["dem"])
            for name, path in paths[year].items():
                os.replace(staged[year][name], path)
    return paths
