"""A local STAC stand-in for the fetch tests (no test in this file).

Items mirror Microsoft Planetary Computer's ``sentinel-2-l2a``, ``sentinel-1-rtc`` and
``cop-dem-glo-30`` items: asset keys (``B02``...``B12``, ``SCL``, ``vv``/``vh``, ``data``), ``eo:bands``
with names, common names and centre wavelengths, ``proj:epsg``/``proj:shape``/``proj:transform`` per
asset, ``s2:processing_baseline``, ``raster:bands`` nodata on S1, linear gamma0, DEM tiles in EPSG:4326
at one arc-second. The COG assets are cut from the synthetic twin's world (the 2022 surface in every
year: unchanged ground), so the clear-sky truth is known pixel for pixel:

- Sentinel-2, January 2022 (baseline 04.00 and 05.09: DN = reflectance + 1000): item A has a thick
  cloud (SCL 9) over the top-left, a cloud shadow strip (SCL 3) and a haze the SCL misses but its
  cloud-probability asset (``CLD``) flags; item B a thin cirrus patch
  (SCL 10); item C lies partly outside its swath (DN 0, SCL 0 east of a diagonal) and has a
  medium-probability cloud (SCL 8) inside A's cloud, so :data:`ONLY_B` is clear in B alone.
- Sentinel-2, January 2016 (baseline 02.04: DN = reflectance), two items, one with a cloud.
- Sentinel-1 RTC, three dates per year, VV and VH in linear power with gamma speckle (4.4 looks),
  one partly outside its swath (nodata -32768).
- Two DEM tiles split at a meridian through the area.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_bounds

from smallmines.bands import BAND_NAMES
from smallmines.data.synth.scenes import _scene_origin
from smallmines.data.synth.world import region_transform, render

CRS = "EPSG:32630"
SIDE = 288
"""Rows and columns of the item rasters (10 m)."""
MARGIN = 16
"""The AOI is the item area less this many pixels on each side."""
SEED = 0
ORIGIN = _scene_origin(512, SEED)
S2_10M = ("B02", "B03", "B04", "B08")
S2_KEYS = {"blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06", "rededge3": "B07",
           "nir": "B08", "rededge4": "B8A", "swir1": "B11", "swir2": "B12"}
EO = {"B02": ("blue", 0.49, "Blue"), "B03": ("green", 0.56, "Green"), "B04": ("red", 0.665, "Red"),
      "B05": ("rededge", 0.704, "Vegetation red edge 1"), "B06": ("rededge", 0.74, "Vegetation red edge 2"),
      "B07": ("rededge", 0.783, "Vegetation red edge 3"), "B08": ("nir", 0.842, "NIR 1"),
      "B8A": ("nir08", 0.865, "NIR 2"), "B11": ("swir16", 1.61, "SWIR 1"), "B12": ("swir22", 2.19, "SWIR 2")}
EXTENSIONS = ["https://stac-extensions.github.io/eo/v1.0.0/schema.json",
              "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
              "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
              "https://stac-extensions.github.io/sat/v1.0.0/schema.json"]
COG = "image/tiff; application=geotiff; profile=cloud-optimized"
CLOUD = (slice(0, 144), slice(0, 144))
"""Item A's thick cloud (10 m rows, cols; even, so it covers whole 20 m pixels)."""
SHADOW = (slice(150, 170), slice(0, 288))
CIRRUS = (slice(200, 260), slice(100, 200))
ONLY_B = (slice(40, 120), slice(40, 120))
"""Clear in item B only (cloudy in A, medium cloud in C)."""
HAZE = (slice(20, 40), slice(200, 260))
"""Item A's haze the SCL calls clear but its cloud-probability layer (``CLD``) flags; item C has no data there."""
SWATH_EDGE = 120
"""Item C has no data where ``col > row + SWATH_EDGE``."""


def outside_swath(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Item C's no-data side: east of a diagonal."""
    return cols > rows + SWATH_EDGE


def truth(year: int = 2022) -> np.ndarray:
    """The clear-sky 13-band image the items are cut from (the 2022 surface: unchanged ground)."""
    return render(*ORIGIN, SIDE, SIDE, 2022, SEED)[0]


def aoi_bounds() -> tuple[float, float, float, float]:
    """The AOI in degrees: the item area less ``MARGIN`` pixels on each side."""
    t = region_transform(ORIGIN[0] + MARGIN, ORIGIN[1] + MARGIN)
    side = (SIDE - 2 * MARGIN) * 10.0
    return transform_bounds(CRS, "EPSG:4326", t.c, t.f - side, t.c + side, t.f)


def _write_cog(path: Path, data: np.ndarray, transform: Affine, crs: str, nodata: float | None) -> None:
    count, height, width = data.shape
    with rasterio.open(path, "w", driver="COG", width=width, height=height, count=count, dtype=data.dtype.name,
                       crs=crs, transform=transform, nodata=nodata, compress="deflate", blocksize=128) as dst:
        dst.write(data)


def _footprint(transform: Affine, height: int, width: int, crs: str,
               valid: np.ndarray | None = None) -> tuple[dict[str, Any], list[float]]:
    """Footprint polygon (of the valid pixels when given) and bbox, in degrees."""
    import pyproj
    from shapely.geometry import box, mapping, shape
    from shapely.ops import transform as reshape

    to_deg = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform
    if valid is None:
        left, top = transform.c, transform.f
        outline = box(left, top + transform.e * height, left + transform.a * width, top)
    else:
        from rasterio.features import shapes

        polygons = [shape(g) for g, v in shapes(valid.astype(np.uint8), transform=transform) if v == 1]
        outline = max(polygons, key=lambda p: p.area)
    outline = reshape(to_deg, outline)
    return mapping(outline), list(outline.bounds)


def _proj(transform: Affine, shape: tuple[int, int]) -> dict[str, Any]:
    return {"proj:shape": list(shape), "proj:transform": list(transform)[:6]}


def _item(item_id: str, collection: str, when: datetime, props: dict[str, Any], assets: dict[str, Any],
          footprint: tuple[dict[str, Any], list[float]]) -> dict[str, Any]:
    return {"type": "Feature", "stac_version": "1.0.0", "stac_extensions": EXTENSIONS, "id": item_id,
            "collection": collection, "geometry": footprint[0], "bbox": footprint[1],
            "properties": {"datetime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), **props},
            "links": [], "assets": assets}


def _s2_item(folder: Path, item_id: str, when: datetime, baseline: str, surface: np.ndarray,
             damage: dict[str, Any]) -> dict[str, Any]:
    """One S2 L2A item; ``damage`` holds ``clouds`` [(rows, cols, scl, dn)], ``shadow`` and ``swath``."""
    offset = 1000 if float(baseline) >= 4 else 0
    dn = np.clip(np.round(surface[:10]) + offset, 1, 65535).astype(np.float64)
    scl = np.full((SIDE, SIDE), 4, np.uint8)
    for rows, cols, cls, value in damage.get("clouds", ()):
        dn[:, rows, cols] = value if cls != 10 else dn[:, rows, cols] + value
        scl[rows, cols] = cls
    cloud_probability = None
    if "haze" in damage:
        dn[:, damage["haze"][0], damage["haze"][1]] += 3000
        cloud_probability = np.zeros((SIDE, SIDE), np.uint8)
        cloud_probability[damage["haze"]] = 80
    if "shadow" in damage:
        dn[:, damage["shadow"][0], damage["shadow"][1]] *= 0.3
        scl[damage["shadow"]] = 3
    rr, cc = np.mgrid[:SIDE, :SIDE]
    valid = ~outside_swath(rr, cc) if damage.get("swath") else np.ones((SIDE, SIDE), bool)
    dn[:, ~valid] = 0
    scl[~valid] = 0
    dn = dn.astype(np.uint16)
    t10, t20 = region_transform(*ORIGIN), region_transform(*ORIGIN, 20.0)
    folder = folder / item_id
    folder.mkdir(parents=True, exist_ok=True)
    assets: dict[str, Any] = {}
    for band, key in S2_KEYS.items():
        fine = key in S2_10M
        data = dn[BAND_NAMES.index(band)]
        data = data if fine else data[::2, ::2]
        transform = t10 if fine else t20
        _write_cog(folder / f"{key}.tif", data[None], transform, CRS, 0)
        common, wavelength, description = EO[key]
        assets[key] = {"href": str(folder / f"{key}.tif"), "type": COG, "roles": ["data"],
                       "title": f"Band {key[1:].lstrip('0')} - {description} - {'10' if fine else '20'}m",
                       "eo:bands": [{"name": key, "common_name": common, "description": description,
                                     "center_wavelength": wavelength}],
                       "gsd": 10.0 if fine else 20.0, **_proj(transform, data.shape)}
    _write_cog(folder / "SCL.tif", scl[None, ::2, ::2], t20, CRS, 0)
    assets["SCL"] = {"href": str(folder / "SCL.tif"), "type": COG, "roles": ["data"],
                     "title": "Scene classfication map (SCL)", "gsd": 20.0, **_proj(t20, (SIDE // 2, SIDE // 2))}
    if cloud_probability is not None:
        _write_cog(folder / "CLD.tif", cloud_probability[None, ::2, ::2], t20, CRS, None)
        assets["CLD"] = {"href": str(folder / "CLD.tif"), "type": COG, "roles": ["data"],
                         "title": "Cloud probability (MSK_CLDPRB), %", "gsd": 20.0,
                         **_proj(t20, (SIDE // 2, SIDE // 2))}
    assets["preview"] = {"href": "https://example.invalid/preview.png", "type": "image/png", "roles": ["overview"]}
    cloud = float(np.isin(scl, (3, 8, 9, 10)).mean() * 100)
    props = {"platform": "Sentinel-2A", "constellation": "Sentinel 2", "instruments": ["msi"], "proj:epsg": 32630,
             "eo:cloud_cover": round(cloud, 2), "s2:processing_baseline": baseline, "s2:mgrs_tile": "30NWN",
             "s2:product_type": "S2MSI2A"}
    return _item(item_id, "sentinel-2-l2a", when, props, assets, _footprint(t10, SIDE, SIDE, CRS, valid))


def _s1_item(folder: Path, item_id: str, when: datetime, surface: np.ndarray, seed: int,
             swath: bool) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    linear = 10.0 ** (surface[10:12] / 10.0)
    speckle = rng.gamma(4.4, 1 / 4.4, size=linear.shape)
    power = (linear * speckle).astype(np.float32)
    rr, cc = np.mgrid[:SIDE, :SIDE]
    valid = rr < SIDE - 100 if swath else np.ones((SIDE, SIDE), bool)
    power[:, ~valid] = -32768
    transform = region_transform(*ORIGIN)
    folder = folder / item_id
    folder.mkdir(parents=True, exist_ok=True)
    assets = {}
    for i, pol in enumerate(("vv", "vh")):
        _write_cog(folder / f"{pol}.tif", power[i:i + 1], transform, CRS, -32768)
        first = pol.upper()
        assets[pol] = {"href": str(folder / f"{pol}.tif"), "type": COG, "roles": ["data"],
                       "title": f"{first}: vertical transmit, {'vertical' if pol == 'vv' else 'horizontal'} receive",
                       "raster:bands": [{"nodata": -32768, "data_type": "float32", "spatial_resolution": 10.0}],
                       **_proj(transform, (SIDE, SIDE))}
    props = {"platform": "SENTINEL-1A", "constellation": "Sentinel-1", "proj:epsg": 32630, "sar:polarizations":
             ["VV", "VH"], "sar:instrument_mode": "IW", "sar:product_type": "GRD", "sat:orbit_state": "descending"}
    return _item(item_id, "sentinel-1-rtc", when, props, assets, _footprint(transform, SIDE, SIDE, CRS, valid))


def _dem_items(folder: Path, surface: np.ndarray) -> list[dict[str, Any]]:
    """The DEM band reprojected to EPSG:4326 at one arc-second, cut into a west and an east tile."""
    src_transform = region_transform(*ORIGIN)
    left, top = src_transform.c, src_transform.f
    bounds = (left, top - SIDE * 10.0, left + SIDE * 10.0, top)
    transform, width, height = calculate_default_transform(CRS, "EPSG:4326", SIDE, SIDE, *bounds,
                                                           resolution=1 / 3600)
    dem = np.full((height, width), -32767, np.float32)
    reproject(surface[12], dem, src_transform=src_transform, src_crs=CRS, dst_transform=transform,
              dst_crs="EPSG:4326", src_nodata=None, dst_nodata=-32767, resampling=Resampling.bilinear)
    items = []
    half = width // 2
    for name, cols in (("W", slice(0, half)), ("E", slice(half, width))):
        tile = dem[None, :, cols]
        tile_transform = transform * Affine.translation(cols.start, 0)
        item_id = f"Copernicus_DSM_COG_10_N05_00_W002_00_{name}_DEM"
        path = folder / f"{item_id}.tif"
        _write_cog(path, tile, tile_transform, "EPSG:4326", -32767)
        assets = {"data": {"href": str(path), "type": COG, "roles": ["data"], "title": item_id,
                           "raster:bands": [{"data_type": "float32", "spatial_resolution": 30, "unit": "metre"}],
                           **_proj(tile_transform, tile.shape[1:])}}
        props = {"platform": "TanDEM-X", "gsd": 30, "proj:epsg": 4326}
        items.append(_item(item_id, "cop-dem-glo-30", datetime(2021, 4, 22), props, assets,
                           _footprint(tile_transform, tile.shape[1], tile.shape[2], "EPSG:4326")))
    return items


def build_items(folder: Path) -> list[dict[str, Any]]:
    """Write every asset under ``folder`` and return the items (dicts, absolute hrefs)."""
    folder.mkdir(parents=True, exist_ok=True)
    surface = truth()
    a_clouds = [(*CLOUD, 9, 9000)]
    items = [
        _s2_item(folder, "S2A_MSIL2A_20220105T104431_R008_T30NWN", datetime(2022, 1, 5, 10, 44), "04.00", surface,
                 {"clouds": a_clouds, "shadow": SHADOW, "haze": HAZE}),
        _s2_item(folder, "S2B_MSIL2A_20220115T104309_R008_T30NWN", datetime(2022, 1, 15, 10, 43), "04.00", surface,
                 {"clouds": [(*CIRRUS, 10, 1500)]}),
        _s2_item(folder, "S2A_MSIL2A_20220125T104301_R008_T30NWN", datetime(2022, 1, 25, 10, 43), "05.09", surface,
                 {"clouds": [(*ONLY_B, 8, 7000)], "swath": True}),
        _s2_item(folder, "S2A_MSIL2A_20160108T104432_R008_T30NWN", datetime(2016, 1, 8, 10, 44), "02.04", surface,
                 {}),
        _s2_item(folder, "S2A_MSIL2A_20160128T104422_R008_T30NWN", datetime(2016, 1, 28, 10, 44), "02.04", surface,
                 {"clouds": a_clouds}),
    ]
    for year in (2016, 2022):
        for i, day in enumerate((3, 15, 27)):
            items.append(_s1_item(folder, f"S1A_IW_GRDH_1SDV_{year}01{day:02d}T182011_rtc", datetime(year, 1, day, 18),
                                  surface, seed=year * 10 + i, swath=i == 1))
    items += _dem_items(folder, surface)
    return items


def build_year(folder: Path, year: int) -> list[dict[str, Any]]:
    """Items of one more January (two S2 items of the baseline of that time, three S1 dates), same ground."""
    surface = truth()
    baseline = "04.00" if year >= 2022 else "02.14"
    items = [_s2_item(folder, f"S2A_MSIL2A_{year}0110T104431_R008_T30NWN", datetime(year, 1, 10, 10, 44), baseline,
                      surface, {}),
             _s2_item(folder, f"S2B_MSIL2A_{year}0120T104431_R008_T30NWN", datetime(year, 1, 20, 10, 44), baseline,
                      surface, {"clouds": [(*CLOUD, 9, 9000)]})]
    for i, day in enumerate((4, 16, 28)):
        items.append(_s1_item(folder, f"S1A_IW_GRDH_1SDV_{year}01{day:02d}T182011_rtc", datetime(year, 1, day, 18),
                              surface, seed=year * 10 + i, swath=False))
    return items


def stac_1_1(item: dict[str, Any], single_band_on_asset: bool = False) -> dict[str, Any]:
    """The same item in the STAC 1.1 form (eo v2, raster v2, projection v2) that catalogues move to.

    ``eo:bands`` and ``raster:bands`` merge into ``bands`` whose entries carry ``eo:common_name``,
    ``eo:center_wavelength``, ``nodata`` and ``data_type``; ``proj:epsg`` becomes ``proj:code``. With
    ``single_band_on_asset`` a one-band asset holds those fields itself, as STAC 1.1 recommends.
    """
    out = json.loads(json.dumps(item))
    out["stac_version"] = "1.1.0"
    out["stac_extensions"] = ["https://stac-extensions.github.io/eo/v2.0.0/schema.json",
                              "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
                              "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
                              "https://stac-extensions.github.io/sat/v1.0.0/schema.json"]
    props = out["properties"]
    if "proj:epsg" in props:
        props["proj:code"] = f"EPSG:{props.pop('proj:epsg')}"
    for asset in out["assets"].values():
        eo = asset.pop("eo:bands", None) or []
        raster = asset.pop("raster:bands", None) or []
        merged = []
        for i in range(max(len(eo), len(raster))):
            band: dict[str, Any] = {}
            for key, value in (eo[i] if i < len(eo) else {}).items():
                band[key if key in ("name", "description") else f"eo:{key}"] = value
            for key, value in (raster[i] if i < len(raster) else {}).items():
                band[key if key in ("nodata", "data_type", "unit") else f"raster:{key}"] = value
            merged.append(band)
        if merged and single_band_on_asset and len(merged) == 1:
            asset.update({k: v for k, v in merged[0].items() if k != "name"})
        elif merged:
            asset["bands"] = merged
    return out


def write_item_collection(folder: Path, items: list[dict[str, Any]] | None = None) -> Path:
    """An ItemCollection JSON of the items (built when not given) in ``folder``."""
    items = build_items(folder / "assets") if items is None else items
    path = folder / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}), encoding="utf-8")
    return path
