"""Raster and vector layers for the report's interactive (Leaflet) map.

Rasters are reprojected to Web Mercator and reduced to at most ``max_overlay_px`` pixels a side,
classes merged by rank so that small new or ceased patches stay visible; the result is embedded as
PNG. Zones and tiles become GeoJSON with popups.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from markupsafe import Markup
from matplotlib import colormaps
from matplotlib.colors import to_hex, to_rgba
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_bounds

from smallmines.analysis.figures import GROWTH_CMAP
from smallmines.errors import SmallminesError
from smallmines.legend import CHANGE_COLOURS, CHANGE_NODATA, MINING_COLOUR, PROBABILITY_CMAP, YEAR_COLOURS, ChangeClass
from smallmines.report.context import CONTEXT_STYLE, COUNTRY_STYLE, countries
from smallmines.report.figures import rgb_stretch

if TYPE_CHECKING:
    pass

from smallmines.report.inputs import ChangeFolder, ReportInputs
from smallmines.report.sections import DatasetView, Section, _ha, _note, _num, _swatch

logger = logging.getLogger(__name__)


WEB_MERCATOR = "EPSG:3857"
PROBABILITY_FLOOR = 0.1
"""Probabilities below this are transparent on the web map, so the image shows through."""
# --------------------------------------------------------------------------------------------
# raster layers for the web map


@dataclass
class WebLayer:
    """An image overlay on the web map."""

    name: str
    plain: str
    url: str
    bounds: list[list[float]]
    group: str = "overlay"
    visible: bool = False
    opacity: float = 1.0
    pixelated: bool = False


def _rank_reduce(array: np.ndarray, factor: int, ranks: Mapping[int, int]) -> np.ndarray:
    """Block-reduce a class raster keeping the highest-ranked value of each block (0 = nodata)."""
    if factor <= 1:
        return array
    lut = np.zeros(256, np.uint8)
    inverse = np.full(max(ranks.values()) + 1, CHANGE_NODATA, np.uint8)
    for value, rank in ranks.items():
        lut[value] = rank
        inverse[rank] = value
    h, w = (array.shape[0] // factor) * factor, (array.shape[1] // factor) * factor
    blocks = lut[array[:h, :w]].reshape(h // factor, factor, w // factor, factor).max(axis=(1, 3))
    return inverse[blocks]


MINES_RANKS = {0: 1, 1: 2}
CHANGE_RANKS = {int(ChangeClass.NO_MINING): 1, int(ChangeClass.PERSISTENT): 2, int(ChangeClass.CEASED): 3,
                int(ChangeClass.NEW): 4}


def _read_reduced(path: Path, kind: str, max_px: int,
                  bands: Sequence[int] | None = None) -> tuple[np.ndarray, Any, Affine]:
    """Read a raster at most ~``max_px`` a side: averaged for images, class-ranked for classes."""
    with rasterio.open(path) as src:
        factor = max(1, math.ceil(max(src.width, src.height) / max_px))
        crs = src.crs
        if kind in ("mines", "change"):
            data = src.read(1)
            if src.nodata is not None and src.nodata != CHANGE_NODATA:
                data = np.where(data == src.nodata, CHANGE_NODATA, data).astype(np.uint8)
            data = _rank_reduce(data.astype(np.uint8), factor, MINES_RANKS if kind == "mines" else CHANGE_RANKS)
            return data[None], crs, src.transform @ Affine.scale(factor)
        indexes = list(bands) if bands else _rgb_indexes(src) if kind == "rgb" else [1]
        shape = (len(indexes), max(1, src.height // factor), max(1, src.width // factor))
        band = src.read(indexes, out_shape=shape, resampling=Resampling.average, masked=True)
        data = np.ma.filled(band.astype(np.float32), np.nan)
        if kind == "rgb":
            data[data == -9999] = np.nan
        transform = src.transform @ Affine.scale(src.width / shape[2], src.height / shape[1])
        return data, crs, transform


def _rgb_indexes(src: rasterio.DatasetReader) -> list[int]:
    """1-based band indexes of red, green, blue: by band description, else the published 13-band order."""
    from smallmines.bands import RGB_BANDS, band_index

    names = [(d or "").lower() for d in src.descriptions]
    if all(b in names for b in RGB_BANDS):
        return [names.index(b) + 1 for b in RGB_BANDS]
    if src.count >= 13:
        return [band_index(b) + 1 for b in RGB_BANDS]
    if src.count >= 3:
        return [1, 2, 3]
    raise SmallminesError(f"{src.name}: {src.count} bands; cannot find red, green and blue for a true-colour image")


def _to_web(data: np.ndarray, crs: Any, transform: Affine, categorical: bool) -> tuple[np.ndarray, list[list[float]]]:
    """Warp ``(B, H, W)`` to Web Mercator at about the same pixel count; returns data and lat/lon bounds."""
    bands, h, w = data.shape
    left, top = transform.c, transform.f
    right, bottom = left + w * transform.a, top + h * transform.e
    dst_transform, dst_w, dst_h = calculate_default_transform(crs, WEB_MERCATOR, w, h, left, bottom, right, top)
    nodata = CHANGE_NODATA if categorical else np.nan
    out = np.full((bands, dst_h, dst_w), nodata, dtype=data.dtype)
    reproject(data, out, src_transform=transform, src_crs=crs, src_nodata=nodata, dst_transform=dst_transform,
              dst_crs=WEB_MERCATOR, dst_nodata=nodata,
              resampling=Resampling.nearest if categorical else Resampling.bilinear)
    west, north = dst_transform.c, dst_transform.f
    east, south = west + dst_w * dst_transform.a, north + dst_h * dst_transform.e
    lon0, lat0, lon1, lat1 = transform_bounds(WEB_MERCATOR, "EPSG:4326", west, south, east, north)
    return out, [[lat0, lon0], [lat1, lon1]]


def _png(rgba: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG", compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _colourize(data: np.ndarray, kind: str, colour: str = MINING_COLOUR) -> np.ndarray:
    """RGBA uint8 of a warped layer."""
    if kind == "rgb":
        valid = np.isfinite(data).all(axis=0)
        rgb = rgb_stretch(data)
        alpha = np.where(valid, 1.0, 0.0)[..., None]
        return (np.concatenate([rgb, alpha], axis=-1) * 255).round().astype(np.uint8)
    if kind == "probability":
        p = data[0]
        valid = np.isfinite(p)
        rgba = colormaps[PROBABILITY_CMAP](np.clip(np.nan_to_num(p), 0, 1))
        rgba[..., 3] = np.where(valid, np.clip((p - PROBABILITY_FLOOR) / 0.4, 0, 1) * 0.9, 0)
        return (rgba * 255).round().astype(np.uint8)
    table = np.zeros((256, 4), np.uint8)
    if kind == "mines":
        table[1] = [round(255 * v) for v in to_rgba(colour)]
    else:
        for c in (ChangeClass.NEW, ChangeClass.PERSISTENT, ChangeClass.CEASED):
            table[int(c)] = [round(255 * v) for v in to_rgba(CHANGE_COLOURS[c])]
    return table[data[0]]


def _web_layer(path: Path, kind: str, name: str, plain: str, max_px: int, colour: str = MINING_COLOUR,
               bands: Sequence[int] | None = None, **options: Any) -> WebLayer | None:
    try:
        data, crs, transform = _read_reduced(path, kind, max_px, bands)
        if crs is None:
            raise SmallminesError(f"{path}: no CRS")
        warped, bounds = _to_web(data, crs, transform, categorical=kind in ("mines", "change"))
    except (RasterioError, SmallminesError, ValueError) as exc:
        logger.warning("web map layer %s skipped: %s", path, exc)
        return None
    return WebLayer(name, plain, _png(_colourize(warped, kind, colour)), bounds,
                    pixelated=kind in ("mines", "change"), **options)


def _label(colour: str | None, text: str) -> str:
    return (f'<span class="sw" style="background:{colour}"></span>' if colour else "") + html.escape(text)


def _vector_geojson(frame: Any, popup: Callable[[Any], str], tip: Callable[[Any], str],
                    style: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """GeoJSON (EPSG:4326, simplified) with popups, tooltips and per-feature styles."""
    web = frame.to_crs("EPSG:4326")
    features = []
    for (_, row), geom in zip(web.iterrows(), web.geometry, strict=True):
        if geom is None or geom.is_empty:
            continue
        from shapely.geometry import mapping

        features.append({"type": "Feature", "geometry": mapping(geom.simplify(1e-5, preserve_topology=True)),
                         "properties": {"_popup": popup(row), "_tip": tip(row), "_style": style(row)}})
    return {"type": "FeatureCollection", "features": features}


def _zone_popup(row: Any, ya: int, yb: int) -> str:
    lines = [f"<b>{html.escape(str(row['zone']))}</b>",
             f"covered: {_num(100 * float(row['covered_fraction']), 0, ' %')} ({html.escape(str(row['coverage']))})"]
    if row["coverage"] != "outside":
        lines += [f"mining {ya}: {_ha(row.get(f'mining_{ya}_ha'))}", f"mining {yb}: {_ha(row.get(f'mining_{yb}_ha'))}",
                  f"net growth: {_ha(row.get('net_growth_ha'), True)}",
                  f"annual rate: {_num(row.get('annual_growth_rate_pct'), 1, ' %/yr', True)}"]
    return "<br>".join(lines)


def _tile_popup(row: Any, ya: int, yb: int) -> str:
    return (f"<b>{html.escape(str(row['site']))}</b><br>{html.escape(str(row['status']))}<br>"
            f"mining {ya}: {_num(row['mining_a_pct'], 1, ' %')}<br>"
            f"mining {yb}: {_num(row['mining_b_pct'], 1, ' %')}<br>"
            f"change: {_num(row['growth_pp'], 1, ' pp', True)} ({_ha(row['net_growth_ha'], True)})")


def _growth_colour(value: float, limit: float) -> str:
    if not math.isfinite(value):
        return "#bdbdbd"
    return to_hex(GROWTH_CMAP(0.5 + 0.5 * max(-1.0, min(1.0, value / limit))))


def _legend_html(has: set[str], years: Sequence[int]) -> str:
    parts = []
    if "change" in has:
        parts.append("<b>Change</b>")
        for c in (ChangeClass.NEW, ChangeClass.PERSISTENT, ChangeClass.CEASED):
            parts.append(_label(CHANGE_COLOURS[c], c.label))
    if "mines" in has:
        parts.append("<b>Mines</b>")
        parts += [_label(YEAR_COLOURS[i % 2], f"mining {y}") for i, y in enumerate(years)]
    if "probability" in has:
        stops = ", ".join(to_hex(colormaps[PROBABILITY_CMAP](v)) for v in np.linspace(0, 1, 8))
        parts.append("<b>Mining probability</b>")
        parts.append(f'<div class="ramp" style="background:linear-gradient(to right, {stops})"></div>'
                     f'<div class="ends"><span>{PROBABILITY_FLOOR:g}</span><span>0.5</span><span>1</span></div>')
    if "tiles" in has:
        parts.append("<b>Dataset tiles</b>")
        parts.append(_label(CHANGE_COLOURS[ChangeClass.NEW], "labelled mining grew"))
        parts.append(_label(CHANGE_COLOURS[ChangeClass.CEASED], "labelled mining shrank"))
        parts.append(_label("#d9d9d9", "no mining either year"))
    if "zones" in has:
        parts.append("<b>Zones</b>")
        parts.append(_label(None, "dashed: partly covered; click for numbers"))
    if "context" in has:
        parts.append(_label(CONTEXT_STYLE["color"], "context polygons (--context)"))
    if "countries" in has:
        parts.append(_label(COUNTRY_STYLE["color"], "country borders (Natural Earth)"))
    return "".join(p if p.startswith(("<b>", "<div")) else f"<div>{p}</div>" for p in parts)


def _map_section(inputs: ReportInputs, change: ChangeFolder | None, view: DatasetView | None,
                 max_px: int, context: tuple[Any, str] | None = None) -> tuple[Section | None, dict[str, Any] | None]:
    """The web map section and its payload; ``context`` is ``(polygons, name field)`` of ``--context``."""
    layers: list[WebLayer] = []
    vectors: list[dict[str, Any]] = []
    has: set[str] = set()
    years = [m.year for m in inputs.maps]
    labels = [str(y) if y is not None else m.path.name for y, m in zip(years, inputs.maps, strict=True)]
    for m, label in zip(inputs.maps, labels, strict=True):
        if m.scene is not None:
            layer = _web_layer(m.scene, "rgb", f"True colour {label}", f"true colour {label}", max_px, group="base",
                               bands=m.rgb_bands)
            if layer:
                layers.append(layer)
    # the latest true-colour image is the default background
    bases = [layer for layer in layers if layer.group == "base"]
    if bases:
        bases[-1].visible = True
    for i, (m, label) in enumerate(zip(inputs.maps, labels, strict=True)):
        last = i == len(inputs.maps) - 1
        if m.probability is not None:
            layer = _web_layer(m.probability, "probability", _label(None, f"Mining probability {label}"),
                               f"probability {label}", max_px, visible=last and change is None, opacity=0.9)
            if layer:
                layers.append(layer)
                has.add("probability")
        if m.mines is not None:
            colour = YEAR_COLOURS[i % 2]
            layer = _web_layer(m.mines, "mines", _label(colour, f"Mines {label}"), f"mines {label}", max_px,
                               colour=colour, opacity=0.85)
            if layer:
                layers.append(layer)
                has.add("mines")
    if change is not None and change.raster is not None:
        ya, yb = change.summary.get("year_a", ""), change.summary.get("year_b", "")
        swatches = "".join(_swatch(CHANGE_COLOURS[c]) for c in (ChangeClass.NEW, ChangeClass.PERSISTENT,
                                                               ChangeClass.CEASED))
        layer = _web_layer(change.raster, "change", Markup(swatches) + html.escape(f"Change {ya}\u2013{yb}"),
                           f"change {ya}-{yb}", max_px, visible=True)
        if layer:
            layers.append(layer)
            has.add("change")
        zones_gpkg = change.path / "zones.gpkg"
        if change.zones_frame is not None or zones_gpkg.is_file():
            import geopandas as gpd

            zones = change.zones_frame if change.zones_frame is not None else gpd.read_file(zones_gpkg)
            vectors.append({"name": _label(None, "Zones"), "visible": True, "style": {},
                            "data": _vector_geojson(
                                zones, lambda r: _zone_popup(r, ya, yb), lambda r: str(r["zone"]),
                                lambda r: {"color": "#111111", "weight": 1.6, "fill": True, "fillOpacity": 0.0,
                                           "dashArray": None if r["coverage"] == "full" else "5 4"})})
            has.add("zones")
    if view is not None and view.tiles is not None and len(view.tiles):
        from smallmines.analysis.tiles import tiles_frame

        frame = tiles_frame(view.tiles)
        if frame.crs is not None:
            ya, yb = view.growth["year_a"], view.growth["year_b"]
            limit = max(1.0, float(np.nanpercentile(np.abs(frame["growth_pp"].astype(float)), 98)))
            vectors.append({"name": _label("#e41a1c", "Dataset tiles by labelled growth"),
                            "visible": not layers, "style": {},
                            "data": _vector_geojson(
                                frame, lambda r: _tile_popup(r, ya, yb), lambda r: str(r["site"]),
                                lambda r: {"color": "#444444", "weight": 0.6, "fillOpacity": 0.85,
                                           "fillColor": "#d9d9d9" if r["status"] == "no mining"
                                           else _growth_colour(float(r["growth_pp"]), limit)})})
            has.add("tiles")
    shown_zones = "zones" in has
    if context is not None and not shown_zones:
        from smallmines.report.context import context_geojson

        vectors.append({"name": _label(CONTEXT_STYLE["color"], "Context polygons"), "visible": True, "style": {},
                        "data": context_geojson(*context)})
        has.add("context")
    if not layers and not vectors:
        return None, None
    bounds = _union_bounds([layer.bounds for layer in layers] or [_geojson_bounds(v["data"]) for v in vectors])
    (south, west), (north, east) = bounds
    outlines = countries((west, south, east, north))
    if outlines["features"]:  # first, so that zones and tiles lie above them
        for feature in outlines["features"]:
            feature["properties"] = {"_tip": html.escape(str(feature["properties"].get("name", ""))),
                                     "_style": COUNTRY_STYLE}
        vectors.insert(0, {"name": _label(None, "Countries (Natural Earth)"), "visible": True, "style": {},
                           "data": outlines, "attribution": "Countries: Natural Earth (public domain)"})
        has.add("countries")
    payload = {"layers": [layer.__dict__ for layer in layers], "vectors": vectors, "bounds": bounds,
               "legend": _legend_html(has, [y for y in years if y is not None] or [0])}
    missing = []
    if inputs.maps and not any(layer.group == "base" for layer in layers):
        missing.append("no true-colour background: the map summary.json names no readable scene (inputs.stacked)")
    if layers:
        lead = ("Switch layers in the panel at the top right; the background buttons choose the true-colour image. "
                "Raster layers are reduced for the browser; use the GeoTIFFs for analysis.")
    else:
        lead = "Footprints of the dataset tiles, coloured by the growth of their labelled mining."
    if vectors:
        lead += " Click a zone or tile for its numbers."
    body = Markup('<div id="map"></div>') + Markup("").join(_note(m, warn=True) for m in missing)
    return Section("webmap", "Interactive map", body, lead), payload


def _union_bounds(items: Sequence[list[list[float]]]) -> list[list[float]]:
    south = min(b[0][0] for b in items)
    west = min(b[0][1] for b in items)
    north = max(b[1][0] for b in items)
    east = max(b[1][1] for b in items)
    return [[south, west], [north, east]]


def _geojson_bounds(collection: Mapping[str, Any]) -> list[list[float]]:
    from shapely.geometry import shape

    boxes = [shape(f["geometry"]).bounds for f in collection["features"]]
    return [[min(b[1] for b in boxes), min(b[0] for b in boxes)], [max(b[3] for b in boxes), max(b[2] for b in boxes)]]


