"""Where mining appeared, persisted and stopped: change maps, area tables and zonal statistics.

Two binary mine maps (``mines.tif`` from ``smallmines map``, or any raster of 0/1 with nodata) become
one change raster of four classes (:class:`ChangeClass`), polygons of each change patch, an area
table and growth figures; with zones (districts, river basins, forest reserves, concessions) the
same numbers per zone. :func:`dataset_change` does the same for the labelled SmallMinesDS masks,
tile by tile, between the two years of the benchmark.

Outputs of :func:`compare_maps` (see ``docs/run-layout.md``)::

    change.tif     COG uint8: 0 no mining, 1 new, 2 persistent, 3 ceased, 255 nodata; colour table
    change.gpkg    layer ``change``: id, class, code, area_ha (one polygon per connected patch)
    areas.csv      class, code, pixels, area_ha, pct_valid (+ rows mining_YEAR and valid)
    summary.json   grid, inputs, class areas, net growth, annual growth rate, zone coverage
    zones.csv      with zones: one row per zone (covered fraction, class areas, growth)
    zones.gpkg     the same with the zone geometries (layer ``zones``)
    figures/       change_map and areas as PNG and PDF (``figures=True``)

Areas are computed on a projected grid: a geographic map is reprojected to its UTM zone first. Two
maps on different grids are resampled (nearest neighbour) onto one grid over their overlap, in the
CRS of the first map at the finer of the two resolutions. Only pixels valid in both maps count;
every percentage is of that valid area.

Growth is reported three ways: the net change in hectares, the net change relative to the first
year, and the compound annual growth rate ``(B / A) ** (1 / years) - 1``, which is undefined (null)
when the first year has no mining.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.transform import Affine, array_bounds
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_bounds

from smallmines.errors import ChangeError, DataFormatError, MapNotFoundError

if TYPE_CHECKING:
    import geopandas as gpd

logger = logging.getLogger(__name__)

__all__ = [
    "CHANGE_NODATA",
    "ChangeClass",
    "ChangeError",
    "ChangeResult",
    "DatasetChangeResult",
    "MapNotFoundError",
    "area_table",
    "change_classes",
    "compare_maps",
    "dataset_change",
    "growth",
    "map_year",
    "read_binary_map",
    "zonal_stats",
]


class ChangeClass(IntEnum):
    """Codes of the change raster."""

    NO_MINING = 0
    NEW = 1
    PERSISTENT = 2
    CEASED = 3

    @property
    def label(self) -> str:
        """Human-readable name: ``"new mining"``."""
        return CLASS_LABELS[self]


CLASS_LABELS: dict[ChangeClass, str] = {
    ChangeClass.NO_MINING: "no mining",
    ChangeClass.NEW: "new mining",
    ChangeClass.PERSISTENT: "persistent mining",
    ChangeClass.CEASED: "ceased mining",
}
CLASS_KEYS: dict[ChangeClass, str] = {
    ChangeClass.NO_MINING: "no_mining",
    ChangeClass.NEW: "new",
    ChangeClass.PERSISTENT: "persistent",
    ChangeClass.CEASED: "ceased",
}
"""Short column-friendly names (``new_ha``, ``ceased_pct``)."""
CHANGE_NODATA = 255
MAP_NODATA = 255
SQM_PER_HA = 10_000.0
_LUT = np.array([ChangeClass.NO_MINING, ChangeClass.NEW, ChangeClass.CEASED, ChangeClass.PERSISTENT], np.uint8)
"""Change code indexed by ``2 * mining_a + mining_b``."""
_YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})(?!\d)")


# --------------------------------------------------------------------------------------------
# pure functions on arrays and numbers


def change_classes(mines_a: np.ndarray, mines_b: np.ndarray, nodata: int = MAP_NODATA) -> np.ndarray:
    """Combine two aligned binary maps into change codes.

    Args:
        mines_a: uint8 map of the first year: 0 no mining, 1 mining, ``nodata`` elsewhere.
        mines_b: the same for the second year, on the same grid.
        nodata: nodata value of both inputs.

    Returns:
        uint8 array of :class:`ChangeClass` codes, :data:`CHANGE_NODATA` where either input is nodata.

    Raises:
        ChangeError: the two arrays differ in shape.
    """
    if mines_a.shape != mines_b.shape:
        raise ChangeError(f"maps have shapes {mines_a.shape} and {mines_b.shape}; align them first")
    valid = (mines_a != nodata) & (mines_b != nodata)
    code = _LUT[(2 * (mines_a == 1) + (mines_b == 1)).astype(np.intp)]
    return np.where(valid, code, np.uint8(CHANGE_NODATA)).astype(np.uint8)


def class_pixels(change: np.ndarray) -> dict[ChangeClass, int]:
    """Pixel count of every change class (nodata left out)."""
    counts = np.bincount(change.ravel(), minlength=256)
    return {c: int(counts[c]) for c in ChangeClass}


def growth(mining_a_ha: float, mining_b_ha: float, year_a: int, year_b: int) -> dict[str, float | None]:
    """Net and annual growth of the mined area between two years.

    Args:
        mining_a_ha: mined area in the first year, hectares.
        mining_b_ha: mined area in the second year, hectares.
        year_a: first year.
        year_b: second year (after ``year_a``).

    Returns:
        ``net_growth_ha`` (B - A), ``net_growth_pct`` (relative to A, None when A is 0),
        ``annual_growth_ha`` (linear, per year), ``annual_growth_rate_pct`` (compound annual rate,
        None when A is 0 or the years are equal).
    """
    years = year_b - year_a
    net = mining_b_ha - mining_a_ha
    out: dict[str, float | None] = {
        "net_growth_ha": net,
        "net_growth_pct": 100.0 * net / mining_a_ha if mining_a_ha > 0 else None,
        "annual_growth_ha": net / years if years > 0 else None,
        "annual_growth_rate_pct": None,
    }
    if years > 0 and mining_a_ha > 0:
        out["annual_growth_rate_pct"] = 100.0 * ((mining_b_ha / mining_a_ha) ** (1.0 / years) - 1.0)
    return out


def area_table(pixels: dict[ChangeClass, int], pixel_area_m2: float, year_a: int, year_b: int) -> pd.DataFrame:
    """The area table: one row per change class, then mining per year and the valid area.

    Args:
        pixels: pixel count per class (from :func:`class_pixels`).
        pixel_area_m2: area of one pixel in square metres.
        year_a: first year (names the row ``mining_YEAR``).
        year_b: second year.

    Returns:
        DataFrame with columns ``class``, ``code`` (nullable int), ``pixels``, ``area_ha`` and
        ``pct_valid`` (percent of the area valid in both maps).
    """
    valid = sum(pixels.values())
    ha = pixel_area_m2 / SQM_PER_HA
    rows = [(CLASS_LABELS[c], int(c), pixels[c]) for c in ChangeClass]
    rows.append((f"mining {year_a}", None, pixels[ChangeClass.PERSISTENT] + pixels[ChangeClass.CEASED]))
    rows.append((f"mining {year_b}", None, pixels[ChangeClass.PERSISTENT] + pixels[ChangeClass.NEW]))
    rows.append(("valid area", None, valid))
    table = pd.DataFrame(rows, columns=["class", "code", "pixels"])
    table["code"] = table["code"].astype("Int64")
    table["area_ha"] = table["pixels"] * ha
    table["pct_valid"] = 100.0 * table["pixels"] / valid if valid else float("nan")
    return table


def _stats_row(pixels: dict[ChangeClass, int], pixel_area_m2: float, year_a: int, year_b: int) -> dict[str, Any]:
    """Wide form of the area table plus growth: the columns of a zone row."""
    ha = pixel_area_m2 / SQM_PER_HA
    valid = sum(pixels.values())
    row: dict[str, Any] = {"valid_ha": valid * ha}
    for c in ChangeClass:
        row[f"{CLASS_KEYS[c]}_ha"] = pixels[c] * ha
    for c in ChangeClass:
        row[f"{CLASS_KEYS[c]}_pct"] = 100.0 * pixels[c] / valid if valid else None
    mining_a = (pixels[ChangeClass.PERSISTENT] + pixels[ChangeClass.CEASED]) * ha
    mining_b = (pixels[ChangeClass.PERSISTENT] + pixels[ChangeClass.NEW]) * ha
    row[f"mining_{year_a}_ha"] = mining_a
    row[f"mining_{year_b}_ha"] = mining_b
    row[f"mining_{year_a}_pct"] = 100.0 * mining_a / (valid * ha) if valid else None
    row[f"mining_{year_b}_pct"] = 100.0 * mining_b / (valid * ha) if valid else None
    row.update(growth(mining_a, mining_b, year_a, year_b))
    return row


# --------------------------------------------------------------------------------------------
# atomic writes


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); rename it into place on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()  # writers (GDAL) create the file themselves
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}.aux.xml")):
            leftover.unlink(missing_ok=True)


def write_cog(
    path: str | Path,
    array: np.ndarray,
    crs: CRS,
    transform: Affine,
    nodata: float | None,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
    tags: dict[str, str] | None = None,
    description: str | None = None,
    overview_resampling: str = "nearest",
) -> Path:
    """Write a single-band array as a Cloud Optimized GeoTIFF (deflate, internal overviews), atomically.

    Args:
        path: destination ``.tif``.
        array: ``(H, W)`` array; its dtype is kept.
        crs: coordinate reference system.
        transform: affine transform of the grid.
        nodata: nodata value stored in the header.
        colormap: optional colour table ``{value: (r, g, b, a)}`` (uint8 rasters only).
        tags: metadata items of the dataset.
        description: band description.
        overview_resampling: resampling of the overviews (``nearest`` for classes).
    """
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as rio_copy

    path = Path(path)
    profile = {"driver": "GTiff", "height": array.shape[0], "width": array.shape[1], "count": 1,
               "dtype": array.dtype.name, "crs": crs, "transform": transform, "nodata": nodata}
    if colormap:
        profile["photometric"] = "palette"
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            if colormap:
                dst.write_colormap(1, colormap)
            dst.write(array, 1)
            if tags:
                dst.update_tags(**tags)
            if description:
                dst.set_band_description(1, description)
        with mem.open() as src, _atomic(path) as tmp:
            rio_copy(src, tmp, driver="COG", compress="DEFLATE", overview_resampling=overview_resampling,
                     blocksize=512)
    return path


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    with _atomic(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_json_default, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return _finite(float(value))
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(value: Any) -> Any:
    """NaN and infinities become None (JSON null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _clean(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_clean(v) for v in data]
    if isinstance(data, (np.floating, float)):
        return _finite(float(data))
    if isinstance(data, np.integer):
        return int(data)
    if data is pd.NA:
        return None
    return data


def _write_csv(path: Path, table: pd.DataFrame) -> Path:
    with _atomic(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.8g")
    return path


def _write_gpkg(path: Path, frame: gpd.GeoDataFrame, layer: str) -> Path:
    with _atomic(path) as tmp:
        frame.to_file(tmp, layer=layer, driver="GPKG", engine="pyogrio")
    return path


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
        return candidate
    if not path.is_file():
        raise MapNotFoundError(f"{path}: no such mine map; give a mines.tif, a map folder holding one, or any "
                               "0/1 GeoTIFF")
    return path


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


# --------------------------------------------------------------------------------------------
# polygons and zones


def change_polygons(change: np.ndarray, grid: Grid, min_area_ha: float = 0.0) -> gpd.GeoDataFrame:
    """One polygon per connected patch of new, persistent or ceased mining.

    Args:
        change: change codes on ``grid``.
        grid: the grid of ``change``.
        min_area_ha: drop polygons smaller than this (the raster and tables keep them).

    Returns:
        GeoDataFrame in the grid's CRS with ``id``, ``class`` (label), ``code`` and ``area_ha``,
        largest first.
    """
    import geopandas as gpd
    from rasterio.features import shapes
    from shapely.geometry import shape

    wanted = (change >= ChangeClass.NEW) & (change <= ChangeClass.CEASED)
    geoms, codes = [], []
    for geom, value in shapes(change, mask=wanted, transform=grid.transform, connectivity=8):
        geoms.append(shape(geom))
        codes.append(int(value))
    frame = gpd.GeoDataFrame({"code": np.asarray(codes, dtype=np.int16)}, geometry=geoms, crs=grid.crs)
    frame["class"] = [CLASS_LABELS[ChangeClass(c)] for c in codes]
    frame["area_ha"] = frame.geometry.area / SQM_PER_HA
    if min_area_ha > 0:
        frame = frame[frame["area_ha"] >= min_area_ha]
    frame = frame.sort_values("area_ha", ascending=False, kind="stable").reset_index(drop=True)
    frame.insert(0, "id", np.arange(1, len(frame) + 1, dtype=np.int64))
    return frame[["id", "class", "code", "area_ha", "geometry"]]


def read_zones(zones: str | Path | gpd.GeoDataFrame, zone_field: str | None) -> tuple[gpd.GeoDataFrame, str]:
    """Read a zones layer and pick its name field.

    Args:
        zones: a vector file pyogrio reads (GeoPackage, GeoJSON, shapefile) or a GeoDataFrame.
        zone_field: attribute naming each zone; None takes ``name``/``NAME`` when present, else the
            row number.

    Returns:
        (zones with polygon geometries, the name field)

    Raises:
        ChangeError: unreadable file, no CRS, no polygon, or an unknown field (the fields are listed).
    """
    import geopandas as gpd

    if isinstance(zones, gpd.GeoDataFrame):
        frame = zones.copy()
        source = "zones"
    else:
        source = str(zones)
        if not Path(zones).exists():
            raise ChangeError(f"{zones}: zones file not found")
        try:
            frame = gpd.read_file(zones, engine="pyogrio")
        except Exception as exc:  # pyogrio raises DataSourceError, DataLayerError, ...
            raise ChangeError(f"{zones}: cannot be read as a vector layer ({exc})") from exc
    if frame.crs is None:
        raise ChangeError(f"{source}: has no CRS; zones must be georeferenced")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    frame = frame[frame.geom_type.isin(["Polygon", "MultiPolygon"])]
    if frame.empty:
        raise ChangeError(f"{source}: holds no polygon; zones must be polygons (districts, basins, reserves)")
    fields = [c for c in frame.columns if c != frame.geometry.name]
    if zone_field is None:
        zone_field = next((c for c in fields if c.lower() == "name"), None)
        if zone_field is None:
            zone_field = "zone"
            frame[zone_field] = [f"zone {i + 1}" for i in range(len(frame))]
    elif zone_field not in frame.columns:
        raise ChangeError(f"{source}: has no field {zone_field!r}; fields: {', '.join(fields) or '(none)'}")
    frame = frame.reset_index(drop=True)
    frame[zone_field] = frame[zone_field].astype(str)
    return frame, zone_field


def zonal_stats(
    change: np.ndarray,
    grid: Grid,
    zones: gpd.GeoDataFrame,
    zone_field: str,
    year_a: int,
    year_b: int,
) -> gpd.GeoDataFrame:
    """Area table and growth per zone, with the fraction of each zone the maps cover.

    Each zone is rasterised (pixel centres) on the change grid, extended past the map where the
    zone extends past it, so ``covered_fraction`` is the share of the zone's pixels that lie inside
    both maps and are valid in both. Zones that overlap each other are counted independently.

    Args:
        change: change codes on ``grid``.
        grid: the grid of ``change``.
        zones: polygons in any CRS.
        zone_field: the attribute that names each zone.
        year_a: first year.
        year_b: second year.

    Returns:
        One row per zone (geometry in the zones' CRS): ``zone``, ``zone_area_ha``,
        ``covered_fraction``, ``coverage`` (``full``, ``partial`` or ``outside``), then the columns
        of the area table and growth (None where the zone has no valid pixel).
    """
    import geopandas as gpd
    from rasterio.features import geometry_mask
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    projected = zones.to_crs(grid.crs)
    rows = []
    for geom, name in zip(projected.geometry, zones[zone_field], strict=True):
        left, bottom, right, top = geom.bounds
        inv = ~grid.transform
        c0, r0 = inv @ (left, top)
        c1, r1 = inv @ (right, bottom)
        col0, row0 = math.floor(c0), math.floor(r0)
        window = Window(col0, row0, max(1, math.ceil(c1) - col0), max(1, math.ceil(r1) - row0))
        inside = ~geometry_mask([geom], out_shape=(int(window.height), int(window.width)),
                                transform=window_transform(window, grid.transform))
        total = int(inside.sum())
        # the part of the zone window that lies on the change grid
        gr0, gc0 = max(row0, 0), max(col0, 0)
        gr1 = min(row0 + int(window.height), grid.height)
        gc1 = min(col0 + int(window.width), grid.width)
        pixels = dict.fromkeys(ChangeClass, 0)
        if gr1 > gr0 and gc1 > gc0:
            sub_zone = inside[gr0 - row0:gr1 - row0, gc0 - col0:gc1 - col0]
            sub = change[gr0:gr1, gc0:gc1][sub_zone]
            pixels = class_pixels(sub)
        valid = sum(pixels.values())
        covered = valid / total if total else 0.0
        coverage = "outside" if valid == 0 else "full" if valid == total else "partial"
        row = {"zone": name, "zone_area_ha": geom.area / SQM_PER_HA, "covered_fraction": covered,
               "coverage": coverage}
        stats = _stats_row(pixels, grid.pixel_area_m2, year_a, year_b)
        if valid == 0:
            stats = {k: None for k in stats}
        row.update(stats)
        rows.append(row)
    table = pd.DataFrame(rows)
    for _, row in table[table["coverage"] == "partial"].iterrows():
        logger.warning("zone %r: only %.1f%% is covered by valid pixels of both maps; its numbers describe that "
                       "part", row["zone"], 100 * row["covered_fraction"])
    for _, row in table[table["coverage"] == "outside"].iterrows():
        logger.warning("zone %r lies outside the valid area of the maps; its row has no areas", row["zone"])
    return gpd.GeoDataFrame(table, geometry=list(zones.geometry), crs=zones.crs)


# --------------------------------------------------------------------------------------------
# the public entry points


@dataclass
class ChangeResult:
    """What :func:`compare_maps` wrote and computed.

    Attributes:
        out_dir: the output folder.
        change_tif: the change raster (COG).
        polygons: the change polygons (GeoPackage, layer ``change``).
        areas_csv: the area table.
        summary_json: everything in :attr:`summary`.
        table: the area table (``class``, ``code``, ``pixels``, ``area_ha``, ``pct_valid``).
        summary: years, grid, inputs, class areas and growth.
        zones: per-zone table (with geometries) or None.
        zones_csv: path or None.
        zones_gpkg: path or None.
        figures: PNG/PDF figures written.
    """

    out_dir: Path
    change_tif: Path
    polygons: Path
    areas_csv: Path
    summary_json: Path
    table: pd.DataFrame
    summary: dict[str, Any]
    zones: gpd.GeoDataFrame | None = None
    zones_csv: Path | None = None
    zones_gpkg: Path | None = None
    figures: list[Path] = field(default_factory=list)


def change_colormap() -> dict[int, tuple[int, int, int, int]]:
    """Colour table of the change raster, from the shared scheme in :mod:`smallmines.figures`."""
    from smallmines.figures import CHANGE_COLOURS, hex_to_rgba

    table = {int(c): hex_to_rgba(CHANGE_COLOURS[c]) for c in ChangeClass}
    table[CHANGE_NODATA] = (0, 0, 0, 0)
    return table


def compare_maps(
    map_a: str | Path,
    map_b: str | Path,
    out_dir: str | Path,
    year_a: int | None = 2016,
    year_b: int | None = 2022,
    zones: str | Path | gpd.GeoDataFrame | None = None,
    zone_field: str | None = None,
    min_area_ha: float = 0.0,
    figures: bool = True,
) -> ChangeResult:
    """Compare two mine maps: change raster, polygons, area table, growth and zonal statistics.

    Args:
        map_a: first-year map: a ``smallmines map`` folder, its ``mines.tif``, or any 0/1 raster.
        map_b: second-year map; aligned onto A's grid (CRS and pixel size may differ).
        out_dir: output folder (created).
        year_a: first year; None reads it from the map's ``summary.json`` or name, else 2016.
        year_b: second year; None reads it likewise, else 2022.
        zones: optional polygons (file or GeoDataFrame) for per-zone statistics.
        zone_field: attribute naming the zones (default ``name``, else the row number).
        min_area_ha: smallest polygon kept in ``change.gpkg`` (raster and tables keep everything).
        figures: also write ``figures/change_map`` and ``figures/areas`` as PNG and PDF.

    Returns:
        The :class:`ChangeResult` (paths, area table, summary, zones).

    Raises:
        MapNotFoundError: a map does not exist.
        DataFormatError: a map is not binary or has no CRS.
        ChangeError: the maps do not overlap, ``year_b`` is not after ``year_a``, or bad zones.

    .. versionadded:: 0.1
    """
    out = Path(out_dir)
    a, b = read_binary_map(map_a), read_binary_map(map_b)
    year_a = int(year_a if year_a is not None else a.year or 2016)
    year_b = int(year_b if year_b is not None else b.year or 2022)
    if year_b <= year_a:
        raise ChangeError(f"year_b ({year_b}) must be after year_a ({year_a}); swap the maps or the years")
    grid = common_grid(a, b)
    mines_a, mines_b = align(a, grid), align(b, grid)
    change = change_classes(mines_a, mines_b)
    pixels = class_pixels(change)
    valid = sum(pixels.values())
    if valid == 0:
        raise ChangeError(f"{a.path} and {b.path} overlap but share no pixel that is valid in both")
    logger.info("comparing %s (%d) with %s (%d) on %d x %d pixels of %.1f m", a.path, year_a, b.path, year_b,
                grid.width, grid.height, grid.res[0])

    change_tif = write_cog(out / "change.tif", change, grid.crs, grid.transform, CHANGE_NODATA,
                           colormap=change_colormap(), description=f"mining change {year_a}-{year_b}",
                           tags={"classes": ", ".join(f"{int(c)}={c.label}" for c in ChangeClass)
                                 + f", {CHANGE_NODATA}=nodata",
                                 "year_a": str(year_a), "year_b": str(year_b)})
    polygons = change_polygons(change, grid, min_area_ha)
    polygons_path = _write_gpkg(out / "change.gpkg", polygons, "change")
    table = area_table(pixels, grid.pixel_area_m2, year_a, year_b)
    areas_csv = _write_csv(out / "areas.csv", table)

    row = _stats_row(pixels, grid.pixel_area_m2, year_a, year_b)
    summary: dict[str, Any] = {
        "year_a": year_a,
        "year_b": year_b,
        "inputs": {"map_a": str(a.path), "map_b": str(b.path), "crs_a": a.crs.to_string(),
                   "crs_b": b.crs.to_string()},
        "grid": {"crs": grid.crs.to_string(), "resolution_m": list(grid.res), "width": grid.width,
                 "height": grid.height, "bounds": list(grid.bounds)},
        "pixel_area_m2": grid.pixel_area_m2,
        "overlap_fraction_a": _overlap(a, change, grid),
        "overlap_fraction_b": _overlap(b, change, grid),
        "classes": {CLASS_KEYS[c]: {"code": int(c), "label": c.label, "pixels": pixels[c],
                                    "area_ha": row[f"{CLASS_KEYS[c]}_ha"], "pct_valid": row[f"{CLASS_KEYS[c]}_pct"]}
                    for c in ChangeClass},
        "valid_ha": row["valid_ha"],
        "mining_a_ha": row[f"mining_{year_a}_ha"],
        "mining_b_ha": row[f"mining_{year_b}_ha"],
        "mining_a_pct": row[f"mining_{year_a}_pct"],
        "mining_b_pct": row[f"mining_{year_b}_pct"],
        **growth(row[f"mining_{year_a}_ha"], row[f"mining_{year_b}_ha"], year_a, year_b),
        "polygons": {"count": len(polygons), "min_area_ha": min_area_ha,
                     "by_class": {lbl: int(n) for lbl, n in polygons["class"].value_counts().items()}},
    }
    for key, m in (("overlap_fraction_a", a), ("overlap_fraction_b", b)):
        if summary[key] < 0.99:
            logger.warning("only %.1f%% of %s lies where both maps have data; change is computed on the overlap",
                           100 * summary[key], m.path)
    result = ChangeResult(out, change_tif, polygons_path, areas_csv, out / "summary.json", table, summary)

    if zones is not None:
        frame, field_name = read_zones(zones, zone_field)
        per_zone = zonal_stats(change, grid, frame, field_name, year_a, year_b)
        result.zones = per_zone
        result.zones_csv = _write_csv(out / "zones.csv", pd.DataFrame(per_zone.drop(columns="geometry")))
        result.zones_gpkg = _write_gpkg(out / "zones.gpkg", per_zone, "zones")
        summary["zones"] = {
            "source": str(zones) if not hasattr(zones, "geometry") else "GeoDataFrame",
            "field": field_name,
            "count": len(per_zone),
            "partial": per_zone.loc[per_zone["coverage"] == "partial", "zone"].tolist(),
            "outside": per_zone.loc[per_zone["coverage"] == "outside", "zone"].tolist(),
        }

    if figures:
        result.figures = _change_figures(change, grid, summary, result.zones, out / "figures")
    _write_json(result.summary_json, _clean(summary))
    return result


def _overlap(m: BinaryMap, change: np.ndarray, grid: Grid) -> float:
    """Share of the map's valid area where both maps have data (1.0: all of it was compared)."""
    rx, ry = _resolution_in(m, grid.crs)
    own = float((m.data != MAP_NODATA).sum()) * rx * ry
    if own == 0:
        return 0.0
    return min(1.0, float((change != CHANGE_NODATA).sum()) * grid.pixel_area_m2 / own)


def _change_figures(change: np.ndarray, grid: Grid, summary: dict[str, Any],
                    zones: gpd.GeoDataFrame | None, folder: Path) -> list[Path]:
    from smallmines import figures as fig

    written = fig.save_figure(fig.change_map_figure(change, grid.transform, summary["year_a"], summary["year_b"],
                                                    summary=summary), folder / "change_map")
    written += fig.save_figure(fig.growth_figure(summary), folder / "areas")
    if zones is not None and len(zones):
        written += fig.save_figure(fig.zones_figure(zones, summary["year_a"], summary["year_b"]), folder / "zones")
    return written


# --------------------------------------------------------------------------------------------
# the labelled dataset: tile-by-tile growth between the two years

TILE_STATUS = ("no mining", "appeared", "grew", "unchanged", "shrank", "vanished")
"""How the labelled mining of a tile changed: none in either year, from none to some, more, equal,
less, from some to none."""
DEFAULT_PIXEL_SIZE = 10.0
"""Pixel size in metres assumed for packed datasets, whose header stores tile centres only."""


@dataclass
class DatasetChangeResult:
    """What :func:`dataset_change` wrote and computed.

    Attributes:
        out_dir: the output folder.
        tiles: one row per tile present in both years (see :func:`tile_growth`).
        summary: totals over the paired tiles, growth, tile counts by status, unpaired ids.
        tiles_csv: ``tiles.csv``.
        tiles_gpkg: ``tiles.gpkg`` (layer ``tiles``: footprints with every column of ``tiles``).
        areas_csv: ``areas.csv``, the area table summed over paired tiles.
        summary_json: ``summary.json``.
        figures: PNG/PDF figures written.
    """

    out_dir: Path
    tiles: pd.DataFrame
    summary: dict[str, Any]
    tiles_csv: Path
    tiles_gpkg: Path
    areas_csv: Path
    summary_json: Path
    figures: list[Path] = field(default_factory=list)


def _tile_status(a_px: int, b_px: int) -> str:
    if a_px == 0 and b_px == 0:
        return "no mining"
    if a_px == 0:
        return "appeared"
    if b_px == 0:
        return "vanished"
    return "grew" if b_px > a_px else "shrank" if b_px < a_px else "unchanged"


def _footprints(source: Any, indices: Sequence[int]) -> list[tuple[tuple[float, float, float, float], str | None]]:
    """Bounds and CRS of the given patches of a :class:`~smallmines.data.dataset.PatchSource`."""
    from smallmines.data.io import read_info

    out = []
    for i in indices:
        if source.pack is not None:
            x, y = source.pack.header.centers[i]
            half = source.pack.header.size * DEFAULT_PIXEL_SIZE / 2
            out.append(((x - half, y - half, x + half, y + half), source.pack.header.crs[i]))
        else:
            info = read_info(source.layout.patches[i].image)
            out.append((tuple(info.bounds), info.crs))
    return out


def tile_growth(
    path: str | Path | Any,
    year_a: int | None = None,
    year_b: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    masks: Mapping[int, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Compare the labelled masks of the same tiles in two years.

    Tiles are paired by site (country and tile id). Pixels count only where both years are valid
    (mask not 255 and no image band nodata), so a cloud gap in one year never reads as change.

    Args:
        path: a SmallMinesDS zip, folder or ``.smpack``, or an open
            :class:`~smallmines.data.dataset.PatchSource`.
        year_a: first year (default: the earliest in the dataset).
        year_b: second year (default: the latest).
        progress: called as ``progress(done, total)`` after every tile pair.
        masks: masks already read (source index -> uint8 mask with image nodata as 255); the others
            are read from ``path``.

    Returns:
        (tiles, summary). ``tiles`` has one row per paired site: ``site``, ``id_a``, ``id_b``,
        footprint ``minx``/``miny``/``maxx``/``maxy``, ``crs``, ``valid_ha``, ``mining_a_ha``,
        ``mining_b_ha``, ``mining_a_pct``, ``mining_b_pct``, ``new_ha``, ``persistent_ha``,
        ``ceased_ha``, ``net_growth_ha``, ``growth_pp`` (percentage points of the tile's valid area)
        and ``status`` (one of :data:`TILE_STATUS`). ``summary`` holds totals and growth over the
        paired tiles, counts by status and the ids of tiles without a partner year.

    Raises:
        DatasetNotFoundError: no dataset at ``path``.
        ChangeError: the dataset has fewer than two years, or no tile exists in both.
    """
    from smallmines.data.dataset import PatchSource

    source = path if isinstance(path, PatchSource) else PatchSource(path)
    path = source.path
    masks = masks or {}

    def mask_of(i: int) -> np.ndarray:
        return masks[i] if i in masks else source.read(i)[1]

    years = sorted({k.year for k in source.keys})
    if len(years) < 2 and (year_a is None or year_b is None):
        raise ChangeError(f"{path}: holds only the years {years}; tile growth needs two years of the same tiles")
    year_a = years[0] if year_a is None else int(year_a)
    year_b = years[-1] if year_b is None else int(year_b)
    if year_b <= year_a:
        raise ChangeError(f"year_b ({year_b}) must be after year_a ({year_a})")
    by_site: dict[int, dict[str, int]] = {year_a: {}, year_b: {}}
    for i, key in enumerate(source.keys):
        if key.year in by_site:
            by_site[key.year][key.site] = i
    sites = sorted(by_site[year_a].keys() & by_site[year_b].keys())
    unpaired = sorted(source.ids[i] for y in (year_a, year_b) for s, i in by_site[y].items() if s not in sites)
    if not sites:
        raise ChangeError(f"{path}: no tile exists in both {year_a} and {year_b} (tiles are paired by id)")
    if unpaired:
        logger.warning("%d tiles exist in only one of %d and %d and are left out, e.g. %s", len(unpaired),
                       year_a, year_b, unpaired[0])
    idx_a = [by_site[year_a][s] for s in sites]
    idx_b = [by_site[year_b][s] for s in sites]
    foot_a = _footprints(source, idx_a)
    foot_b = _footprints(source, idx_b)
    rows = []
    totals = dict.fromkeys(ChangeClass, 0)
    total_area = 0.0
    misaligned = []
    for n, (site, ia, ib, (bounds, crs), (bounds_b, _)) in enumerate(
        zip(sites, idx_a, idx_b, foot_a, foot_b, strict=True), start=1
    ):
        mask_a, mask_b = mask_of(ia), mask_of(ib)
        if mask_a.shape != mask_b.shape:
            raise DataFormatError(source.ids[ib], f"is {mask_b.shape}, its {year_a} partner is {mask_a.shape}")
        pixel_m2 = (bounds[2] - bounds[0]) * (bounds[3] - bounds[1]) / mask_a.size
        if max(abs(u - v) for u, v in zip(bounds, bounds_b, strict=True)) > math.sqrt(pixel_m2):
            misaligned.append(site)
        change = change_classes(mask_a, mask_b, MAP_NODATA)
        px = class_pixels(change)
        for c in ChangeClass:
            totals[c] += px[c]
        total_area += sum(px.values()) * pixel_m2
        ha = pixel_m2 / SQM_PER_HA
        valid = sum(px.values())
        a_px = px[ChangeClass.PERSISTENT] + px[ChangeClass.CEASED]
        b_px = px[ChangeClass.PERSISTENT] + px[ChangeClass.NEW]
        rows.append({
            "site": site, "id_a": source.ids[ia], "id_b": source.ids[ib],
            "minx": bounds[0], "miny": bounds[1], "maxx": bounds[2], "maxy": bounds[3], "crs": crs,
            "valid_ha": valid * ha,
            "mining_a_ha": a_px * ha, "mining_b_ha": b_px * ha,
            "mining_a_pct": 100.0 * a_px / valid if valid else float("nan"),
            "mining_b_pct": 100.0 * b_px / valid if valid else float("nan"),
            "new_ha": px[ChangeClass.NEW] * ha, "persistent_ha": px[ChangeClass.PERSISTENT] * ha,
            "ceased_ha": px[ChangeClass.CEASED] * ha,
            "net_growth_ha": (b_px - a_px) * ha,
            "growth_pp": 100.0 * (b_px - a_px) / valid if valid else float("nan"),
            "status": _tile_status(a_px, b_px),
        })
        if progress is not None:
            progress(n, len(sites))
    if misaligned:
        logger.warning("%d tile pairs have footprints that differ by more than a pixel between %d and %d, e.g. %s",
                       len(misaligned), year_a, year_b, misaligned[0])
    tiles = pd.DataFrame(rows)
    valid_px = sum(totals.values())
    pixel_area = total_area / valid_px if valid_px else DEFAULT_PIXEL_SIZE**2
    row = _stats_row(totals, pixel_area, year_a, year_b)
    counts = tiles["status"].value_counts()
    summary: dict[str, Any] = {
        "dataset": str(path),
        "year_a": year_a,
        "year_b": year_b,
        "tiles_paired": len(sites),
        "tiles_unpaired": len(unpaired),
        "unpaired_ids": unpaired,
        "misaligned_sites": misaligned,
        "pixel_area_m2": pixel_area,
        "pixels": {CLASS_KEYS[c]: totals[c] for c in ChangeClass},
        "valid_ha": row["valid_ha"],
        "classes": {CLASS_KEYS[c]: {"code": int(c), "label": c.label, "pixels": totals[c],
                                    "area_ha": row[f"{CLASS_KEYS[c]}_ha"], "pct_valid": row[f"{CLASS_KEYS[c]}_pct"]}
                    for c in ChangeClass},
        "mining_a_ha": row[f"mining_{year_a}_ha"],
        "mining_b_ha": row[f"mining_{year_b}_ha"],
        "mining_a_pct": row[f"mining_{year_a}_pct"],
        "mining_b_pct": row[f"mining_{year_b}_pct"],
        **growth(row[f"mining_{year_a}_ha"], row[f"mining_{year_b}_ha"], year_a, year_b),
        "tiles_by_status": {s: int(counts.get(s, 0)) for s in TILE_STATUS},
        "tiles_with_mining_a": int((tiles["mining_a_ha"] > 0).sum()),
        "tiles_with_mining_b": int((tiles["mining_b_ha"] > 0).sum()),
        "mean_tile_share_a_pct": float(tiles["mining_a_pct"].mean()),
        "mean_tile_share_b_pct": float(tiles["mining_b_pct"].mean()),
        "top_growth": tiles.nlargest(10, "net_growth_ha")[["site", "net_growth_ha", "growth_pp"]]
        .to_dict(orient="records"),
    }
    logger.info("%d tiles in %d and %d: labelled mining %.0f ha -> %.0f ha", len(sites), year_a, year_b,
                summary["mining_a_ha"], summary["mining_b_ha"])
    return tiles, summary


def tiles_frame(tiles: pd.DataFrame) -> gpd.GeoDataFrame:
    """Tile table as footprint polygons; mixed CRSs are brought to EPSG:4326."""
    import geopandas as gpd
    from shapely.geometry import box

    crss = [c for c in tiles["crs"].dropna().unique()]
    geoms = [box(r.minx, r.miny, r.maxx, r.maxy) for r in tiles.itertuples()]
    if len(crss) <= 1:
        return gpd.GeoDataFrame(tiles.copy(), geometry=geoms, crs=crss[0] if crss else None)
    parts = []
    for crs in crss:
        sel = (tiles["crs"] == crs).to_numpy()
        part = gpd.GeoDataFrame(tiles[sel].copy(), geometry=[g for g, k in zip(geoms, sel, strict=True) if k], crs=crs)
        parts.append(part.to_crs("EPSG:4326"))
    logger.info("tiles are in %d CRSs; footprints are written in EPSG:4326", len(crss))
    return gpd.GeoDataFrame(pd.concat(parts).loc[tiles.index], crs="EPSG:4326")


def dataset_change(
    path: str | Path,
    out_dir: str | Path,
    year_a: int | None = None,
    year_b: int | None = None,
    figures: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetChangeResult:
    """How much the labelled mining of SmallMinesDS grew, per tile and overall.

    Writes ``tiles.csv``, ``tiles.gpkg`` (footprints, layer ``tiles``), ``areas.csv`` (the area
    table over all paired tiles), ``summary.json`` and, with ``figures``, ``figures/tile_growth``
    (footprints coloured by growth) and ``figures/areas`` as PNG and PDF.

    Args:
        path: a SmallMinesDS zip, folder or ``.smpack``.
        out_dir: output folder (created).
        year_a: first year (default: the earliest in the dataset).
        year_b: second year (default: the latest).
        figures: write the figures.
        progress: called as ``progress(done, total)`` while tiles are read.

    Returns:
        The :class:`DatasetChangeResult`.

    Raises:
        DatasetNotFoundError: no dataset at ``path``.
        ChangeError: fewer than two years, or no tile present in both.

    .. versionadded:: 0.1
    """
    out = Path(out_dir)
    tiles, summary = tile_growth(path, year_a, year_b, progress)
    ya, yb = summary["year_a"], summary["year_b"]
    px = {c: summary["pixels"][CLASS_KEYS[c]] for c in ChangeClass}
    table = area_table(px, summary["pixel_area_m2"], ya, yb)
    frame = tiles_frame(tiles)
    result = DatasetChangeResult(
        out, tiles, summary,
        tiles_csv=_write_csv(out / "tiles.csv", tiles),
        tiles_gpkg=_write_gpkg(out / "tiles.gpkg", frame, "tiles"),
        areas_csv=_write_csv(out / "areas.csv", table),
        summary_json=out / "summary.json",
    )
    if figures:
        from smallmines import figures as fig

        result.figures = fig.save_figure(fig.tile_growth_figure(frame, ya, yb), out / "figures" / "tile_growth")
        result.figures += fig.save_figure(fig.growth_figure(summary, title="Labelled mining, paired tiles"),
                                          out / "figures" / "areas")
    _write_json(result.summary_json, _clean(summary))
    return result
