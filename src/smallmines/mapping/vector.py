"""Mine polygons from a mine mask: polygonise, measure, label, write a GeoPackage.

Polygons are traced by GDAL from a mask raster on disk, tile by tile, so memory grows with the
number of mines kept, not with the scene or its specks. Their outlines follow pixel edges, so rasterising a polygon
back (pixel centres inside) gives exactly its pixels: the total polygon area equals the mask area,
and :func:`label_tile` can attach per-polygon statistics tile by tile.

Areas are planar in a projected CRS (scaled to metres) and geodesic on the WGS84 ellipsoid in a
geographic CRS, both for polygons and for pixels (:func:`pixel_areas_m2`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS

logger = logging.getLogger(__name__)

LAYER = "mines"
M2_PER_HA = 10_000.0
TILE = 2048
"""Side of the tiles a mask is traced in, pixels."""


def polygonize(mask_path: str | Path, min_area_ha: float = 0.0,
               tile: int = TILE) -> tuple[list[Any], np.ndarray, int]:
    """Trace the polygons (4-connected) of the pixels equal to 1 in a single-band mask raster.

    The raster is traced tile by tile: a polygon inside a tile is measured at once and dropped if
    small; a polygon that reaches a tile edge shared with another tile waits until the end, when
    those sharing an edge are merged. Memory holds the kept polygons and the ones on tile edges,
    never all the specks of a large noisy mask.

    Args:
        mask_path: a raster whose band 1 holds 1 for mining and 0 elsewhere.
        min_area_ha: drop polygons smaller than this (hectares).
        tile: side of the tiles traced at a time, pixels.

    Returns:
        The kept shapely Polygons in the raster's CRS (tile by tile, then the merged ones), their
        areas in hectares, and how many were dropped.

    """
    from rasterio.features import shapes
    from rasterio.windows import Window

    kept: list[Any] = []
    areas: list[np.ndarray] = []
    dropped = 0
    pending: list[Any] = []

    def keep(polygons: np.ndarray) -> None:
        nonlocal dropped
        area = areas_ha(polygons, crs)
        big = area >= min_area_ha
        kept.extend(polygons[big])
        areas.append(area[big])
        dropped += int((~big).sum())

    with rasterio.open(mask_path) as src:
        crs, t = src.crs.to_wkt(), src.transform
        for row in range(0, src.height, tile):
            for col in range(0, src.width, tile):
                height, width = min(tile, src.height - row), min(tile, src.width - col)
                data = src.read(1, window=Window(col, row, width, height))
                if not data.any():
                    continue
                transform = t * Affine.translation(col, row)
                polygons = np.array([shapely.geometry.shape(g) for g, _ in
                                     shapes(data, mask=data == 1, connectivity=4, transform=transform)], dtype=object)
                # north-up: reaching a side shared with another tile (top, right, bottom, left)
                left, top = transform.c, transform.f
                right, bottom = left + width * transform.a, top + height * transform.e
                tol = abs(transform.a) / 2
                b = shapely.bounds(polygons)
                shared = ((row > 0) & (b[:, 3] > top - tol)) | ((col + width < src.width) & (b[:, 2] > right - tol)) \
                    | ((row + height < src.height) & (b[:, 1] < bottom + tol)) | ((col > 0) & (b[:, 0] < left + tol))
                pending.extend(polygons[shared])
                keep(polygons[~shared])
    keep(np.array(_merge_edge_sharing(pending), dtype=object))
    return kept, np.concatenate(areas) if areas else np.zeros(0), dropped


def _merge_edge_sharing(polygons: list[Any]) -> list[Any]:
    """Union the polygons that share an edge (not just a corner), transitively."""
    if not polygons:
        return []
    parent = list(range(len(polygons)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    tree = shapely.STRtree(polygons)
    for i, j in zip(*tree.query(polygons, predicate="touches"), strict=True):
        if i < j and polygons[i].intersection(polygons[j]).length > 0:
            parent[root(i)] = root(j)
    groups: dict[int, list[Any]] = {}
    for i, polygon in enumerate(polygons):
        groups.setdefault(root(i), []).append(polygon)
    return [group[0] if len(group) == 1 else shapely.union_all(group) for group in groups.values()]


def _geod() -> Any:
    from pyproj import Geod

    return Geod(ellps="WGS84")


def areas_ha(geometries: Sequence[Any], crs: str) -> np.ndarray:
    """Area of each geometry in hectares (planar if ``crs`` is projected, else geodesic)."""
    crs_obj = CRS.from_wkt(crs)
    if not len(geometries):
        return np.zeros(0)
    if crs_obj.is_projected:
        factor = crs_obj.linear_units_factor[1]
        return shapely.area(np.asarray(geometries, dtype=object)) * factor * factor / M2_PER_HA
    geod = _geod()
    return np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in geometries]) / M2_PER_HA


def pixel_areas_m2(transform: Affine, crs: str, row0: int, rows: int) -> np.ndarray:
    """Area in m2 of one pixel in each of ``rows`` rows starting at ``row0`` (constant if projected)."""
    crs_obj = CRS.from_wkt(crs)
    if crs_obj.is_projected:
        factor = crs_obj.linear_units_factor[1]
        return np.full(rows, abs(transform.a * transform.e) * factor * factor)
    geod = _geod()
    lon0, _ = transform * (0, row0)
    lon1 = lon0 + transform.a
    out = np.empty(rows)
    for i in range(rows):
        _, top = transform * (0, row0 + i)
        _, bottom = transform * (0, row0 + i + 1)
        area, _ = geod.polygon_area_perimeter([lon0, lon1, lon1, lon0], [top, top, bottom, bottom])
        out[i] = abs(area)
    return out


def label_tile(geometries: Sequence[Any], tree: Any, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise polygon numbers (1-based positions in ``geometries``) over one tile.

    Args:
        geometries: the polygons.
        tree: ``shapely.STRtree(geometries)``.
        transform: the tile's affine transform.
        shape: ``(rows, cols)`` of the tile.

    Returns:
        int32 ``(rows, cols)``: 0 outside every polygon, ``k + 1`` inside ``geometries[k]``.

    """
    from rasterio.features import rasterize

    left, top = transform * (0, 0)
    right, bottom = transform * (shape[1], shape[0])
    hits = tree.query(shapely.box(min(left, right), min(top, bottom), max(left, right), max(top, bottom)))
    if not len(hits):
        return np.zeros(shape, np.int32)
    return rasterize(((geometries[k], int(k) + 1) for k in hits), out_shape=shape, transform=transform,
                     fill=0, dtype="int32")


def write_polygons(path: str | Path, geometries: Sequence[Any], attributes: dict[str, np.ndarray], crs: str,
                   simplify: float = 0.0) -> Path:
    """Write polygons and attributes to a GeoPackage layer ``mines`` (atomically).

    Args:
        path: the ``.gpkg`` file.
        geometries: polygons in ``crs``.
        attributes: columns, each as long as ``geometries`` (e.g. ``id``, ``area_ha``, ``mean_prob``).
        crs: CRS of the geometries (WKT); written with its EPSG code where it has one.
        simplify: Douglas-Peucker tolerance in CRS units (0 keeps pixel outlines); topology-preserving,
            so no polygon collapses or self-intersects.

    """
    import geopandas as gpd

    path = Path(path)
    geoms = np.asarray(geometries, dtype=object)
    if simplify > 0 and len(geoms):
        geoms = shapely.simplify(geoms, simplify, preserve_topology=True)
    crs_obj = CRS.from_wkt(crs)
    epsg = crs_obj.to_epsg()
    frame = gpd.GeoDataFrame(attributes, geometry=gpd.GeoSeries(geoms, crs=f"EPSG:{epsg}" if epsg else crs))
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    tmp.unlink(missing_ok=True)
    frame.to_file(tmp, driver="GPKG", layer=LAYER, engine="pyogrio", geometry_type="Polygon")
    os.replace(tmp, path)
    logger.info("wrote %d polygons to %s", len(frame), path)
    return path
