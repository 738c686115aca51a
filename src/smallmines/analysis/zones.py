"""Change polygons (one per connected patch of a class) and zonal statistics.

Zones (districts, river basins, forest reserves, concessions) get the class areas and growth, and a
covered fraction: a zone partly or wholly outside the maps is flagged as partial or outside, never
dropped silently.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from smallmines.errors import ChangeError
from smallmines.legend import CLASS_LABELS, ChangeClass

if TYPE_CHECKING:
    import geopandas as gpd

from smallmines.analysis.areas import SQM_PER_HA, _stats_row, class_pixels
from smallmines.analysis.maps import Grid

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# polygons and zones


def change_polygons(change: np.ndarray, grid: Grid, min_area_ha: float = 0.0) -> gpd.GeoDataFrame:
    """One polygon per connected patch (4-connected) of new, persistent or ceased mining.

    Patches touching only at a corner are separate polygons, so every polygon is valid (8-connected
    tracing made self-intersecting rings wherever two pixels met diagonally).

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
    for geom, value in shapes(change, mask=wanted, transform=grid.transform, connectivity=4):
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


