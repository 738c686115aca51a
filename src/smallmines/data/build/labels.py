"""Mine polygons to masks: reading, repairing and rasterising the labels of a dataset build.

Labels come from any vector file GDAL reads (GeoPackage, Shapefile, GeoJSON...), in any CRS: they
are reprojected onto the tile grid's CRS. Polygons and MultiPolygons with holes are used as they
are; an invalid geometry (self-intersection, bow tie) is repaired with ``shapely.make_valid`` and a
warning naming the feature; empty geometries, geometries that are not polygons and features wholly
outside the imagery are reported and skipped.

Areas whose label is uncertain are marked *unknown* (mask 255, ignored by losses and metrics),
either by a class attribute (``class_field``: features whose value is one of ``unknown_values`` are
unknown, every other feature is mining) or by a second layer or file (``unknown``).

Partially covered pixels (the rule, see :func:`rasterize_tile`):

* a pixel is **mining** when its **centre** lies inside a mining polygon (GDAL's default rule,
  not "all touched"). Over a polygon much larger than a pixel this neither grows nor shrinks the
  mined area on average; the rasterised area differs from the polygon's area by at most one pixel
  width along its boundary (``perimeter x pixel size``);
* a pixel is **unknown** when an unknown area **touches** it at all (GDAL's "all touched"): a pixel
  partly unknown is not trusted as either class. Unknown wins over mining.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import rasterize
from shapely.geometry import box
from shapely.strtree import STRtree

from smallmines.bands import MASK_NODATA
from smallmines.errors import ConfigError, CorruptFileError

logger = logging.getLogger(__name__)

UNKNOWN_VALUES = ("unknown",)
"""Values of ``class_field`` that mark an area as unknown (compared case-insensitively)."""
MINING, UNKNOWN = 1, MASK_NODATA
NAME_FIELDS = ("id", "name", "ID", "NAME", "Name", "fid")
"""Attributes used to name a feature in warnings, first found wins (else its feature id)."""


@dataclass
class LabelReport:
    """What happened to the features of a label file.

    Attributes:
        source: the file (and layer) read.
        features: features read.
        mining: polygon features used as mining.
        unknown: polygon features used as unknown.
        repaired: names of invalid geometries that were repaired.
        empty: names of features without geometry, skipped.
        not_polygon: names of features that are points or lines, skipped.
        outside: names of features wholly outside the imagery, skipped.

    """

    source: str
    features: int = 0
    mining: int = 0
    unknown: int = 0
    repaired: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    not_polygon: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for ``build.json`` and the dataset card)."""
        return {"source": self.source, "features": self.features, "mining": self.mining, "unknown": self.unknown,
                "repaired": self.repaired, "empty": self.empty, "not_polygon": self.not_polygon,
                "outside": self.outside}


@dataclass
class Labels:
    """Mining and unknown polygons in the grid CRS, indexed for fast per-tile lookup."""

    mining: list[Any]
    unknown: list[Any]
    reports: list[LabelReport]

    def __post_init__(self) -> None:
        self._mining_tree = STRtree(self.mining)
        self._unknown_tree = STRtree(self.unknown)

    def near(self, bounds: tuple[float, float, float, float]) -> tuple[list[Any], list[Any]]:
        """Mining and unknown polygons that intersect a box ``(left, bottom, right, top)``."""
        area = box(*bounds)
        mining = [self.mining[i] for i in sorted(self._mining_tree.query(area, predicate="intersects"))]
        unknown = [self.unknown[i] for i in sorted(self._unknown_tree.query(area, predicate="intersects"))]
        return mining, unknown


def _read_frame(path: str | Path, layer: str | None) -> Any:
    import geopandas as gpd

    try:
        frame = gpd.read_file(path, layer=layer, fid_as_index=True)
    except Exception as exc:  # pyogrio raises its own DataSourceError and friends
        where = f" (layer {layer!r})" if layer else ""
        raise CorruptFileError(path, f"cannot be read as a vector file{where} ({exc}); give a GeoPackage, "
                                     "Shapefile or GeoJSON of mine polygons") from exc
    if frame.crs is None and len(frame):
        raise CorruptFileError(path, "has no CRS; set one (e.g. EPSG:4326) so the polygons can be placed on "
                                     "the imagery")
    return frame


def _feature_name(frame: Any, index: Any, source: str) -> str:
    for column in NAME_FIELDS:
        if column in frame.columns and frame.at[index, column] is not None:
            return f"{source} feature {index} ({column}={frame.at[index, column]})"
    return f"{source} feature {index}"


def _polygonal(geometry: Any) -> Any:
    """Keep the polygonal part of a geometry (repairs can return collections with lines); None if none."""
    parts = shapely.get_parts(geometry)
    polygons = [p for p in parts if p.geom_type in ("Polygon", "MultiPolygon")]
    if not polygons:
        return None
    return polygons[0] if len(polygons) == 1 else shapely.union_all(polygons)


def _clean(frame: Any, crs: CRS, extent: Any, report: LabelReport) -> list[tuple[Any, Any]]:
    """Reprojected, repaired polygons of a frame, with their row index; reports skipped features."""
    out = []
    if len(frame):
        frame = frame.to_crs(crs)
    report.features = len(frame)
    for index, geometry in frame.geometry.items():
        name = _feature_name(frame, index, report.source)
        if geometry is None or geometry.is_empty:
            report.empty.append(name)
            continue
        if geometry.geom_type not in ("Polygon", "MultiPolygon", "GeometryCollection"):
            report.not_polygon.append(name)
            continue
        if not geometry.is_valid:
            reason = shapely.is_valid_reason(geometry)
            geometry = shapely.make_valid(geometry)
            logger.warning("%s: invalid geometry (%s) repaired with make_valid", name, reason)
            report.repaired.append(name)
        polygon = _polygonal(geometry)
        if polygon is None or polygon.is_empty:
            report.not_polygon.append(name)
            continue
        if not polygon.intersects(extent):
            report.outside.append(name)
            continue
        out.append((index, polygon))
    for what, names in (("empty", report.empty), ("not polygons", report.not_polygon),
                        ("outside the imagery", report.outside)):
        if names:
            logger.warning("%s: %d features %s, skipped: %s", report.source, len(names), what,
                           ", ".join(names[:5]) + (", ..." if len(names) > 5 else ""))
    return out


def read_labels(path: str | Path, crs: str, extent: tuple[float, float, float, float],
                layer: str | None = None, class_field: str | None = None,
                unknown_values: Sequence[str] = UNKNOWN_VALUES, unknown: str | Path | None = None) -> Labels:
    """Read mine polygons (and unknown areas) onto a grid's CRS.

    Args:
        path: vector file of mine polygons.
        crs: the grid's CRS (WKT); polygons are reprojected onto it.
        extent: ``(left, bottom, right, top)`` of the imagery in ``crs``; features outside are skipped.
        layer: layer of ``path`` (default: its first).
        class_field: attribute naming each feature's class; features whose value is in
            ``unknown_values`` become unknown, every other one mining.
        unknown_values: values of ``class_field`` that mean unknown (case-insensitive).
        unknown: a second source of unknown areas: a layer name of ``path`` or another vector file.

    Returns:
        The polygons, indexed, with a report per file or layer read.

    Raises:
        CorruptFileError: a file that cannot be read or has no CRS.
        ConfigError: ``class_field`` is not an attribute of the file (the message lists them).

    """
    target = CRS.from_wkt(crs)
    area = box(*extent)
    frame = _read_frame(path, layer)
    source = f"{Path(path).name}" + (f" layer {layer}" if layer else "")
    report = LabelReport(source)
    polygons = _clean(frame, target, area, report)
    mining, unknown_polys = [], []
    if class_field is not None:
        if class_field not in frame.columns:
            fields = ", ".join(str(c) for c in frame.columns if c != "geometry") or "none"
            raise ConfigError(f"{path}: no attribute {class_field!r} for --class-field; the attributes are {fields}")
        wanted = {v.strip().lower() for v in unknown_values}
        for index, polygon in polygons:
            value = frame.at[index, class_field]
            is_unknown = value is not None and str(value).strip().lower() in wanted
            (unknown_polys if is_unknown else mining).append(polygon)
    else:
        mining = [p for _, p in polygons]
    report.mining, report.unknown = len(mining), len(unknown_polys)
    reports = [report]
    if unknown is not None:
        is_file = Path(unknown).exists()
        second = _read_frame(unknown if is_file else path, None if is_file else str(unknown))
        second_report = LabelReport(Path(unknown).name if is_file else f"{Path(path).name} layer {unknown}")
        extra = [p for _, p in _clean(second, target, area, second_report)]
        second_report.unknown = len(extra)
        unknown_polys += extra
        reports.append(second_report)
    logger.debug("labels: %d mining and %d unknown polygons from %s", len(mining), len(unknown_polys),
                ", ".join(r.source for r in reports))
    return Labels(mining, unknown_polys, reports)


def rasterize_tile(labels: Labels, transform: Affine, size: tuple[int, int],
                   bounds: tuple[float, float, float, float]) -> np.ndarray:
    """Rasterise the label mask of one tile: 0 not mining, 1 mining (centre rule), 255 unknown (touched).

    Args:
        labels: the polygons.
        transform: the tile's affine transform.
        size: ``(height, width)`` in pixels.
        bounds: the tile's ``(left, bottom, right, top)``.

    """
    mining, unknown = labels.near(bounds)
    mask = np.zeros(size, np.uint8)
    if mining:
        rasterize(((g, MINING) for g in mining), out=mask, transform=transform, all_touched=False)
    if unknown:
        touched = rasterize(((g, 1) for g in unknown), out_shape=size, transform=transform, all_touched=True,
                            dtype="uint8")
        mask[touched == 1] = UNKNOWN
    return mask
