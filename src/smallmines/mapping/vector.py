"""Mine polygons from a mine mask: polygonise, measure, label, write a GeoPackage.

Polygons are traced by GDAL from a mask raster on disk, line by line, so memory grows with the
number of mines, not with the scene. Their outlines follow pixel edges, so rasterising a polygon
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


def polygonize(mask_path: str | Path) -> list[Any]:
    """Polygons (4-connected) of the pixels equal to 1 in a single-band mask raster.

    Args:
        mask_path: a raster whose band 1 holds 1 for mining and 0 elsewhere.

    Returns:
        shapely Polygons in the raster's CRS, in GDAL's tracing order.

    """
    from rasterio.features import shapes

    with rasterio.open(mask_path) as src:
        band = rasterio.band(src, 1)
        return [shapely.geometry.shape(geom) for geom, value in
                shapes(band, mask=band, connectivity=4, transform=src.transform) if value == 1]


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
