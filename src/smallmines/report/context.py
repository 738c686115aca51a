"""Context for the report's maps without a tile server: country outlines and the user's own polygons.

The country outlines are Natural Earth 1:110m Admin 0 countries (public domain), shipped as package
data (``assets/natural_earth/countries.geojson``, 170 KB, rebuilt by ``tools/make_countries.py``).
Only the countries near the mapped area are embedded in a report. Natural Earth's admin-1
(province / region) outlines are not shipped: no copy was at hand to derive them from; a user's
``--context`` file (districts, forest reserves, concessions) gives the finer units.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import geopandas as gpd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

COUNTRIES_SOURCE = "Natural Earth 1:110m Admin 0 countries (public domain)"
COUNTRY_MARGIN_DEG = 12.0
"""Countries within this many degrees of the area are embedded (enough for the region around it)."""
COUNTRY_STYLE = {"color": "#5b5b5b", "weight": 1.0, "opacity": 0.9, "fill": False}
CONTEXT_STYLE = {"color": "#1b7837", "weight": 1.8, "opacity": 0.95, "fill": False, "dashArray": "6 4"}
"""The user's context polygons: green dashed outlines (zones with numbers are drawn black)."""


@lru_cache(maxsize=1)
def _countries_text() -> str:
    path = resources.files("smallmines.report") / "assets" / "natural_earth" / "countries.geojson"
    return path.read_text(encoding="utf-8")


def countries(bounds: tuple[float, float, float, float] | None = None,
              margin: float = COUNTRY_MARGIN_DEG) -> dict[str, Any]:
    """The country outlines (GeoJSON, EPSG:4326), those whose bbox lies within ``margin`` degrees of ``bounds``.

    Args:
        bounds: ``(west, south, east, north)`` in degrees; None gives every country.
        margin: degrees around ``bounds``.
    """
    from shapely.geometry import shape

    data = json.loads(_countries_text())
    if bounds is None:
        return data
    west, south, east, north = bounds
    kept = []
    for feature in data["features"]:
        x0, y0, x1, y1 = shape(feature["geometry"]).bounds
        if x0 <= east + margin and x1 >= west - margin and y0 <= north + margin and y1 >= south - margin:
            kept.append(feature)
    return {**data, "features": kept}


def country_of(lon: float, lat: float) -> str | None:
    """Name of the Natural Earth country holding a point (None at sea or off the simplified outlines)."""
    from shapely.geometry import Point, shape

    point = Point(lon, lat)
    for feature in countries((lon, lat, lon, lat), margin=0.0)["features"]:
        if shape(feature["geometry"]).covers(point):
            return str(feature["properties"].get("name"))
    return None


def read_context(path: str | Path, name_field: str | None = None) -> tuple[gpd.GeoDataFrame, str]:
    """Read the user's context polygons (districts, reserves) for the report map.

    Raises:
        ChangeError: the file does not exist, cannot be read, has no CRS or no polygon, or lacks
            ``name_field`` (one line naming the file and the fix).
    """
    from smallmines.analysis.zones import read_zones

    return read_zones(path, name_field)


def context_geojson(frame: gpd.GeoDataFrame, name_field: str) -> dict[str, Any]:
    """The context polygons as GeoJSON for the web map (EPSG:4326, simplified), each with its name as tooltip."""
    import html

    from shapely.geometry import mapping

    web = frame.to_crs("EPSG:4326")
    features = []
    for name, geom in zip(web[name_field], web.geometry, strict=True):
        if geom is None or geom.is_empty:
            continue
        features.append({"type": "Feature", "geometry": mapping(geom.simplify(1e-5, preserve_topology=True)),
                         "properties": {"_tip": html.escape(str(name)), "_style": CONTEXT_STYLE}})
    return {"type": "FeatureCollection", "features": features}


def lonlat_bounds(bounds: tuple[float, float, float, float], crs: Any) -> tuple[float, float, float, float]:
    """``bounds`` in ``crs`` as ``(west, south, east, north)`` degrees."""
    from rasterio.warp import transform_bounds

    return tuple(transform_bounds(crs, "EPSG:4326", *bounds))  # type: ignore[return-value]


def add_context_to_static_map(fig: Figure, ax: Axes, crs: Any, area: tuple[float, float, float, float],
                              context: gpd.GeoDataFrame | None = None) -> None:
    """Draw the context polygons on a static map in km of ``crs`` and a locator inset of the countries.

    Args:
        fig: the figure of :func:`smallmines.analysis.figures.change_map_figure`.
        ax: its map axes (coordinates in km of ``crs``).
        crs: the CRS of the map.
        area: the map's bounds in ``crs`` (metres).
        context: polygons to outline on the map, any CRS.
    """
    from matplotlib.patches import Rectangle
    from shapely.geometry import box, shape

    if context is not None and len(context):
        projected = context.to_crs(crs)
        xlim, ylim = ax.get_xlim(), ax.get_ylim()
        for geom in projected.geometry:
            for poly in getattr(geom, "geoms", [geom]):
                xs, ys = poly.exterior.xy
                ax.plot([x / 1000 for x in xs], [y / 1000 for y in ys], color=CONTEXT_STYLE["color"], lw=1.0,
                        ls="--")
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
    west, south, east, north = lonlat_bounds(area, crs)
    half = 8.0
    cx, cy = (west + east) / 2, (south + north) / 2
    view = box(cx - half, cy - half, cx + half, cy + half)
    inset = ax.inset_axes((1.03, 0.25, 0.42, 0.42))
    inset.set_facecolor("#eaf2f8")
    for feature in countries((west, south, east, north), margin=half + 2)["features"]:
        geom = shape(feature["geometry"]).intersection(view)
        for poly in getattr(geom, "geoms", [geom]):
            if poly.geom_type != "Polygon" or poly.is_empty:
                continue
            xs, ys = poly.exterior.xy
            inset.fill(xs, ys, facecolor="#f7f7f7", edgecolor="#6b6b6b", linewidth=0.5)
    inset.add_patch(Rectangle((west, south), max(east - west, 0.15), max(north - south, 0.15),
                              facecolor="#d7301f", edgecolor="#d7301f", linewidth=1.2))
    inset.set_xlim(cx - half, cx + half)
    inset.set_ylim(cy - half, cy + half)
    inset.set_aspect("equal")
    inset.set_xticks([])
    inset.set_yticks([])
    name = country_of(cx, cy)
    inset.set_title(f"location{f' ({name})' if name else ''}", fontsize=7, loc="left")
    inset.text(0.01, -0.02, "Natural Earth", transform=inset.transAxes, fontsize=5, va="top", color="#777777")


__all__ = ["COUNTRIES_SOURCE", "add_context_to_static_map", "context_geojson", "countries",
           "country_of", "lonlat_bounds", "read_context"]
