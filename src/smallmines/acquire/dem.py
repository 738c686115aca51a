"""Copernicus DEM GLO-30: tiles mosaicked and warped onto the output grid, in metres.

The tiles (one by one degree, EPSG:4326, one arc-second) are fused into one plane and resampled
bilinearly onto the 10 m grid by odc-stac; values below :data:`DEM_MIN` (the tiles' fill) are no data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from smallmines.acquire.catalog import dem_asset
from smallmines.acquire.grid import Grid
from smallmines.errors import CatalogError

DEM_MIN = -1000.0
"""Elevations below this are fill values (no data)."""


@dataclass
class Elevation:
    """A lazy DEM mosaic: ``(1, y, x)`` float32 metres (NaN: no data)."""

    metres: Any
    items: list[dict[str, Any]]


def _one_plane(item: Any, parsed: Any, index: int) -> int:
    return 0


def mosaic(items: Sequence[Any], grid: Grid, chunk: int = 1024) -> Elevation:
    """Mosaic DEM tiles on ``grid``.

    Raises:
        CatalogError: no tile, or tiles whose elevation asset cannot be told apart.

    """
    import dask.array as da
    from odc.stac import load

    if not items:
        raise CatalogError("no DEM tile to mosaic")
    layouts: dict[str, list[Any]] = {}
    for item in items:
        layouts.setdefault(dem_asset(item), []).append(item)
    planes = []
    for key, group in layouts.items():
        data = load(group, bands=[key], geobox=grid.geobox(), chunks={"x": chunk, "y": chunk},
                    groupby=_one_plane, resampling="bilinear", dtype="float32", fail_on_error=True)
        values = data[key].data[0]
        planes.append(da.where(values > DEM_MIN, values, np.float32(np.nan)))
    metres = planes[0]
    for plane in planes[1:]:
        metres = da.where(da.isnan(metres), plane, metres)
    described = [{"id": item.id, "datetime": item.properties.get("datetime")} for item in items]
    return Elevation(metres[None].astype(np.float32), described)
