"""Binary mine maps: reading one, its year, and aligning two on one projected grid.

A map is a ``smallmines map`` folder or any 0/1 raster; two maps are aligned over their overlap
(nearest neighbour, the finer resolution).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.transform import Affine, array_bounds
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_bounds

from smallmines.errors import ChangeError, DataFormatError, MapNotFoundError
from smallmines.folders import RUN_TAG

if TYPE_CHECKING:
    pass

from smallmines.analysis.areas import MAP_NODATA

logger = logging.getLogger(__name__)


_YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})(?!\d)")


# --------------------------------------------------------------------------------------------
# reading maps


@dataclass
class BinaryMap:
    """A binary mine map read into memory: uint8 0/1 with 255 nodata, and its grid."""

    path: Path
    data: np.ndarray
    crs: CRS
    transform: Affine
    year: int | None = None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the map's CRS."""
        return array_bounds(self.data.shape[0], self.data.shape[1], self.transform)


def _resolve_map(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = path / "mines.tif"
        if not candidate.is_file():
            raise MapNotFoundError(f"{path}: a map folder must hold mines.tif (from `smallmines map`); "
                                   f"found {sorted(p.name for p in path.iterdir())[:8]}")
        _check_complete(path, candidate)
        return candidate
    if not path.is_file():
        raise MapNotFoundError(f"{path}: no such mine map; give a mines.tif, a map folder holding one, or any "
                               "0/1 GeoTIFF")
    return path


def _check_complete(folder: Path, mines: Path) -> None:
    """Refuse a map folder left incomplete by an interrupted run, or holding files of two runs."""
    summary = folder / "summary.json"
    if not summary.is_file():
        if (folder / ".work").is_dir() or (folder / "probability.tif").is_file():
            raise DataFormatError(folder, "has no summary.json: the `smallmines map` run that writes it did not "
                                  "finish (summary.json comes last); rerun smallmines map into this folder, or "
                                  f"give {mines} itself to compare it anyway")
        return
    try:
        run_id = json.loads(summary.read_text(encoding="utf-8")).get("run_id")
    except (ValueError, AttributeError):
        raise DataFormatError(summary, "is not a smallmines map summary (invalid JSON); rerun smallmines map") from None
    if run_id is None:  # maps written before run ids
        return
    with rasterio.open(mines) as src:
        tagged = src.tags().get(RUN_TAG)
    if tagged != run_id:
        raise DataFormatError(folder, f"mixes two map runs: summary.json is from run {run_id}, mines.tif from "
                              f"{tagged or 'an unknown run'}; rerun smallmines map into this folder")


def map_year(path: str | Path) -> int | None:
    """Year of a mine map: ``summary.json["year"]`` beside it, else a year in its folder or file name.

    Args:
        path: a map folder or a raster inside one.

    Returns:
        The year, or None when nothing names one.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    summary = folder / "summary.json"
    if summary.is_file():
        try:
            data = json.loads(summary.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("year") is not None:
                return int(data["year"])
        except (ValueError, TypeError) as exc:
            logger.debug("%s: no year read (%s)", summary, exc)
    for name in (path.name, folder.name):
        match = _YEAR.search(name)
        if match:
            return int(match[1])
    return None


def read_binary_map(path: str | Path) -> BinaryMap:
    """Read a mine map as uint8 0/1 with 255 nodata.

    Accepts a map folder (``mines.tif`` inside) or any single-band raster whose valid values are 0
    and 1. Nodata comes from the file's nodata value or mask; a uint8 raster without a nodata value
    has 255 treated as nodata (the SmallMinesDS mask convention).

    Raises:
        MapNotFoundError: the file or folder does not exist.
        DataFormatError: the raster has no CRS or holds values other than 0, 1 and nodata (a
            probability map is recognised and named).
    """
    path = _resolve_map(path)
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise DataFormatError(path, "has no CRS; a mine map must be georeferenced to be compared")
            band = src.read(1, masked=True)
            crs, transform, dtype, nodata = src.crs, src.transform, src.dtypes[0], src.nodata
    except RasterioError as exc:
        raise DataFormatError(path, f"cannot be read as a raster ({exc})") from exc
    values = np.ma.getdata(band)
    invalid = np.ma.getmaskarray(band).copy()
    if nodata is None and dtype == "uint8":
        invalid |= values == MAP_NODATA
    if np.issubdtype(values.dtype, np.floating):
        invalid |= np.isnan(values)
    valid_values = values[~invalid]
    is_binary = (valid_values == 0) | (valid_values == 1)
    if not is_binary.all():
        odd = valid_values[~is_binary]
        if np.issubdtype(odd.dtype, np.floating) and (odd >= 0).all() and (odd <= 1).all():
            raise DataFormatError(path, "holds fractional values between 0 and 1: it looks like a probability "
                                  "map; give mines.tif (0/1) or threshold it first")
        shown = ", ".join(str(v) for v in np.unique(odd)[:5].tolist())
        raise DataFormatError(path, f"holds values {shown}; a mine map has 0 (no mining), 1 (mining) and nodata")
    data = np.where(invalid, np.uint8(MAP_NODATA), values.astype(np.uint8, copy=False)).astype(np.uint8)
    logger.debug("%s: %d x %d, %s, %.1f%% valid", path, data.shape[1], data.shape[0], crs,
                 100.0 * (~invalid).mean())
    return BinaryMap(path, data, crs, transform, map_year(path))


# --------------------------------------------------------------------------------------------
# aligning two grids


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y), positive."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top)."""
        return array_bounds(self.height, self.width, self.transform)

    @property
    def pixel_area_m2(self) -> float:
        """Area of one pixel (the CRS is projected in metres)."""
        return self.res[0] * self.res[1]


def _projected(crs: CRS, bounds: tuple[float, float, float, float]) -> CRS:
    """``crs`` itself when projected; otherwise the UTM zone of the centre of ``bounds``."""
    if not crs.is_geographic:
        return crs
    west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds)
    lon, lat = (west + east) / 2, (south + north) / 2
    zone = int((lon + 180) // 6) + 1
    epsg = (32600 if lat >= 0 else 32700) + zone
    logger.info("%s is geographic; areas are computed in UTM zone %d (EPSG:%d)", crs, zone, epsg)
    return CRS.from_epsg(epsg)


def _resolution_in(m: BinaryMap, crs: CRS) -> tuple[float, float]:
    if m.crs == crs:
        return abs(m.transform.a), abs(m.transform.e)
    transform, _, _ = calculate_default_transform(m.crs, crs, m.data.shape[1], m.data.shape[0], *m.bounds)
    return abs(transform.a), abs(transform.e)


def common_grid(a: BinaryMap, b: BinaryMap) -> Grid:
    """The grid both maps are compared on: A's CRS (UTM when geographic), finer resolution, overlap.

    When A is projected and keeps its resolution, the grid is aligned to A's pixels, so A is read
    without resampling.

    Raises:
        ChangeError: the maps do not overlap.
    """
    crs = _projected(a.crs, a.bounds)
    res_a = _resolution_in(a, crs)
    res_b = _resolution_in(b, crs)
    res = res_a
    if res_b[0] < 0.99 * res_a[0] or res_b[1] < 0.99 * res_a[1]:
        res = (min(res_a[0], res_b[0]), min(res_a[1], res_b[1]))
        logger.info("map B is finer (%.2f m) than map A (%.2f m); comparing at %.2f m", res_b[0], res_a[0], res[0])
    ba = a.bounds if a.crs == crs else transform_bounds(a.crs, crs, *a.bounds)
    bb = b.bounds if b.crs == crs else transform_bounds(b.crs, crs, *b.bounds)
    left, bottom = max(ba[0], bb[0]), max(ba[1], bb[1])
    right, top = min(ba[2], bb[2]), min(ba[3], bb[3])
    if left >= right or bottom >= top:
        raise ChangeError(f"{a.path} and {b.path} do not overlap: bounds {tuple(round(v) for v in ba)} and "
                          f"{tuple(round(v) for v in bb)} in {crs}")
    if crs == a.crs and res == res_a:  # snap to A's pixels
        x0, y0 = a.transform.c, a.transform.f
        col0 = math.floor((left - x0) / res[0] + 1e-6)
        col1 = math.ceil((right - x0) / res[0] - 1e-6)
        row0 = math.floor((y0 - top) / res[1] + 1e-6)
        row1 = math.ceil((y0 - bottom) / res[1] - 1e-6)
        transform = Affine(res[0], 0, x0 + col0 * res[0], 0, -res[1], y0 - row0 * res[1])
        return Grid(crs, transform, col1 - col0, row1 - row0)
    width = max(1, math.ceil((right - left) / res[0] - 1e-6))
    height = max(1, math.ceil((top - bottom) / res[1] - 1e-6))
    return Grid(crs, Affine(res[0], 0, left, 0, -res[1], top), width, height)


def align(m: BinaryMap, grid: Grid) -> np.ndarray:
    """``m`` on ``grid``: a window read when the pixels line up, nearest-neighbour warp otherwise."""
    if m.crs == grid.crs and np.allclose(m.transform[:6:4], (grid.transform.a, grid.transform.e)):
        col = (grid.transform.c - m.transform.c) / grid.transform.a
        row = (grid.transform.f - m.transform.f) / grid.transform.e
        if abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6:
            out = np.full((grid.height, grid.width), MAP_NODATA, np.uint8)
            r0, c0 = int(round(row)), int(round(col))
            src_r0, src_c0 = max(r0, 0), max(c0, 0)
            src_r1 = min(r0 + grid.height, m.data.shape[0])
            src_c1 = min(c0 + grid.width, m.data.shape[1])
            if src_r1 > src_r0 and src_c1 > src_c0:
                out[src_r0 - r0:src_r1 - r0, src_c0 - c0:src_c1 - c0] = m.data[src_r0:src_r1, src_c0:src_c1]
            return out
    out = np.full((grid.height, grid.width), MAP_NODATA, np.uint8)
    reproject(m.data, out, src_transform=m.transform, src_crs=m.crs, src_nodata=MAP_NODATA,
              dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=MAP_NODATA,
              resampling=Resampling.nearest)
    logger.debug("%s resampled onto the common grid (%d x %d)", m.path, grid.width, grid.height)
    return out


