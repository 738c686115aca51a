"""Atomic writers for analysis outputs: COGs with colour tables, JSON without NaN, CSV and GeoPackage.

Every file is written under a temporary name in its destination folder and renamed into place, so
a reader never sees half a file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from rasterio.crs import CRS
from rasterio.transform import Affine

if TYPE_CHECKING:
    import geopandas as gpd

logger = logging.getLogger(__name__)


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


