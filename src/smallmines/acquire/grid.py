"""The area of interest and the output grid: a bbox or vector file -> a 10 m grid in its UTM zone.

The grid's edges are snapped to multiples of the pixel size in the UTM zone of the area's centre,
so two fetches of overlapping areas land on the same pixels, as the SmallMinesDS patches do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affine import Affine
from rasterio.warp import transform_bounds

from smallmines.errors import ConfigError, CorruptFileError

PIXEL_SIZE = 10.0
"""Output pixel size in metres (the SmallMinesDS grid)."""
GEOGRAPHIC = "EPSG:4326"


@dataclass(frozen=True)
class Area:
    """The area of interest: its bounds in degrees, its outline as GeoJSON and where it came from."""

    bounds: tuple[float, float, float, float]
    geometry: dict[str, Any]
    source: str


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid: CRS, affine transform and size."""

    crs: str
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in the grid CRS."""
        left, top = self.transform.c, self.transform.f
        return (left, top + self.transform.e * self.height, left + self.transform.a * self.width, top)

    def geobox(self) -> Any:
        """Return the same grid as an ``odc.geo`` GeoBox (what odc-stac loads onto)."""
        from odc.geo.geobox import GeoBox

        return GeoBox((self.height, self.width), self.transform, self.crs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (CRS, the six transform coefficients, width, height)."""
        return {"crs": self.crs, "transform": list(self.transform)[:6], "width": self.width, "height": self.height}


def _bbox_geometry(bounds: tuple[float, float, float, float]) -> dict[str, Any]:
    west, south, east, north = bounds
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def parse_bbox(text: str) -> tuple[float, float, float, float] | None:
    """``"W,S,E,N"`` in degrees -> a tuple, or None when the text is not four numbers.

    Raises:
        ConfigError: four numbers that are not a valid bbox in degrees.

    """
    parts = text.split(",")
    if len(parts) != 4:
        return None
    try:
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        return None
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise ConfigError(f"bbox {text!r}: expected W,S,E,N in degrees with W < E and S < N "
                          "(e.g. -2.05,5.60,-1.95,5.70)")
    return west, south, east, north


def read_area(aoi: str | Path | tuple[float, float, float, float]) -> Area:
    """Read the area of interest from a bbox (tuple or ``"W,S,E,N"`` in degrees) or any vector file.

    Raises:
        ConfigError: a bbox that is not valid, or a path that does not exist.
        CorruptFileError: a vector file that cannot be read, has no CRS or no geometry.

    """
    if isinstance(aoi, tuple):
        bounds = parse_bbox(",".join(str(v) for v in aoi))
        assert bounds is not None
        return Area(bounds, _bbox_geometry(bounds), "bbox")
    bounds = parse_bbox(str(aoi)) if not Path(aoi).exists() else None
    if bounds is not None:
        return Area(bounds, _bbox_geometry(bounds), "bbox")
    path = Path(aoi)
    if not path.exists():
        raise ConfigError(f"AOI {str(aoi)!r} is neither a vector file nor a bbox W,S,E,N in degrees "
                          "(e.g. -2.05,5.60,-1.95,5.70)")
    import geopandas as gpd
    from shapely.geometry import mapping

    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # pyogrio raises its own error types
        raise CorruptFileError(path, f"cannot be read as a vector file ({exc})") from exc
    if frame.crs is None:
        raise CorruptFileError(path, "has no CRS; set one (e.g. EPSG:4326) so the area can be placed")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    if frame.empty:
        raise CorruptFileError(path, "has no geometry")
    outline = frame.to_crs(GEOGRAPHIC).geometry.union_all()
    return Area(tuple(float(v) for v in outline.bounds), mapping(outline), str(path))  # type: ignore[arg-type]


def utm_crs(lon: float, lat: float) -> str:
    """Return the WGS 84 / UTM zone CRS (EPSG:326zz north, 327zz south) holding a point."""
    zone = min(int(math.floor((lon + 180.0) / 6.0)) + 1, 60)
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def grid_for(area: Area, resolution: float = PIXEL_SIZE) -> Grid:
    """Return the grid covering ``area`` in the UTM zone of its centre, edges snapped to ``resolution``."""
    west, south, east, north = area.bounds
    crs = utm_crs((west + east) / 2, (south + north) / 2)
    left, bottom, right, top = transform_bounds(GEOGRAPHIC, crs, west, south, east, north, densify_pts=21)
    left, bottom = math.floor(left / resolution) * resolution, math.floor(bottom / resolution) * resolution
    right, top = math.ceil(right / resolution) * resolution, math.ceil(top / resolution) * resolution
    width, height = round((right - left) / resolution), round((top - bottom) / resolution)
    return Grid(crs, Affine(resolution, 0.0, left, 0.0, -resolution, top), width, height)
