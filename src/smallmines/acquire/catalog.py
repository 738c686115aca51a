"""STAC catalogues: open one (a named service, an API URL or a local file), search it, find assets.

``--stac`` accepts ``planetary-computer`` (hrefs signed with the ``planetary-computer`` package),
``earth-search``, any STAC API URL (searched with pystac-client), or a local file: a static catalog
(``catalog.json`` and its children) or an ItemCollection / FeatureCollection JSON. Local catalogues
are searched in memory (collection, bbox, date window) and never signed.

Assets are found by what they hold, not by their key: Sentinel-2 bands by the ``eo:bands`` centre
wavelength, common name or band name (``B02``, ``blue``, ``B8A``...; the STAC 1.1 form, ``bands``
with ``eo:center_wavelength`` and ``eo:common_name`` or those fields on a single-band asset, alike),
the scene classification by its key or title (``SCL``), Sentinel-1 polarisations by key or title
(``vv``, ``VH: ...``) and the DEM as the one data asset, so catalogues with different key names work.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from smallmines.bands import GROUPS
from smallmines.errors import CatalogError

logger = logging.getLogger(__name__)

SERVICES = {
    "planetary-computer": "https://planetarycomputer.microsoft.com/api/stac/v1",
    "earth-search": "https://earth-search.aws.element84.com/v1",
}
"""Named catalogues and their STAC API root."""
COLLECTIONS = {
    "planetary-computer": {"s2": "sentinel-2-l2a", "s1": "sentinel-1-rtc", "dem": "cop-dem-glo-30"},
    "earth-search": {"s2": "sentinel-2-l2a", "s1": None, "dem": "cop-dem-glo-30"},
    "default": {"s2": "sentinel-2-l2a", "s1": "sentinel-1-rtc", "dem": "cop-dem-glo-30"},
}
"""Collection per sensor in each catalogue (None: not served); other catalogues use ``default``."""
SENSORS = {"s2": "Sentinel-2 L2A", "s1": "Sentinel-1 RTC", "dem": "Copernicus DEM GLO-30"}
WAVELENGTHS = {"blue": 0.490, "green": 0.560, "red": 0.665, "rededge1": 0.705, "rededge2": 0.740,
               "rededge3": 0.783, "nir": 0.842, "rededge4": 0.865, "swir1": 1.610, "swir2": 2.190}
"""Centre wavelengths (micrometres) of the ten Sentinel-2 bands of the dataset."""
WAVELENGTH_TOLERANCE = 0.012
COMMON_NAMES = {"blue": "blue", "green": "green", "red": "red", "nir": "nir", "nir08": "rededge4",
                "swir16": "swir1", "swir22": "swir2"}
"""``eo:bands`` common names that name one band (``rededge`` names three: the wavelength decides)."""
BAND_LABELS = {"B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2",
               "B07": "rededge3", "B08": "nir", "B8A": "rededge4", "B11": "swir1", "B12": "swir2"}
"""Sentinel-2 band names (``eo:bands`` ``name``) of the ten bands."""
CLOUD_PROBABILITY_KEYS = ("cld", "cloud_probability", "cloud-probability", "msk_cldprb", "cloud-prob")
"""Asset keys of an optional cloud-probability layer (percent); a title with "cloud prob" also counts."""


@dataclass
class Catalogue:
    """An opened catalogue: what ``--stac`` named, how to search it, and its collections."""

    name: str
    kind: str
    collections: dict[str, str | None]
    search_items: Callable[[str, tuple[float, float, float, float], datetime, datetime], list[Any]] = field(repr=False)

    def search(self, sensor: str, bbox: tuple[float, float, float, float], start: datetime,
               end: datetime) -> list[Any]:
        """Items of ``sensor``'s collection over ``bbox`` (degrees) between ``start`` and ``end``.

        Raises:
            CatalogError: the catalogue serves no collection for the sensor, or cannot be searched.

        """
        collection = self.collections.get(sensor)
        if collection is None:
            raise CatalogError(f"catalogue {self.name!r} serves no {SENSORS[sensor]} collection; use --stac "
                               "planetary-computer, a STAC API that has one, or a local catalogue"
                               + (", or take Sentinel-1 from another one with --s1-stac planetary-computer"
                                  if sensor == "s1" else ""))
        return self.search_items(collection, bbox, start, end)

    def describe(self) -> dict[str, Any]:
        """JSON-safe description for the provenance record."""
        return {"stac": self.name, "kind": self.kind, "collections": dict(self.collections)}


# ---------------------------------------------------------------------------------------------
# Opening


def open_catalogue(stac: str | Path, collections: dict[str, str | None] | None = None) -> Catalogue:
    """Open what ``--stac`` names.

    Args:
        stac: ``planetary-computer``, ``earth-search``, an ``http(s)://`` STAC API URL, or a local
            static catalog / ItemCollection JSON file.
        collections: per-sensor collection ids overriding the catalogue's defaults.

    Raises:
        CatalogError: an unknown name, a file that is not STAC, or an API that cannot be reached.

    """
    text = str(stac)
    key = text if text in SERVICES else "default"
    wanted = {**COLLECTIONS[key], **(collections or {})}
    if text in SERVICES or text.startswith(("http://", "https://")):
        url = SERVICES.get(text, text)
        sign = text == "planetary-computer" or "planetarycomputer.microsoft.com" in url
        return Catalogue(text, "api", wanted, _api_search(url, sign))
    path = Path(text)
    if not path.is_file():
        raise CatalogError(f"--stac {text!r} is not a catalogue name ({', '.join(SERVICES)}), an http(s) STAC "
                           "API URL, or an existing local catalog.json / ItemCollection JSON file")
    items = _local_items(path)
    return Catalogue(text, "local", wanted, lambda c, b, s, e: _filter(items, c, b, s, e))


def _api_search(url: str, sign: bool) -> Callable[..., list[Any]]:
    """Return a search function over a STAC API (opened on first use; signed for the Planetary Computer)."""
    client: list[Any] = []

    def search(collection: str, bbox: tuple[float, float, float, float], start: datetime,
               end: datetime) -> list[Any]:
        from pystac_client import Client

        try:
            if not client:
                modifier = None
                if sign:
                    import planetary_computer

                    modifier = planetary_computer.sign_inplace
                client.append(Client.open(url, modifier=modifier, timeout=60))
            found = client[0].search(collections=[collection], bbox=list(bbox),
                                     datetime=f"{_iso(start)}/{_iso(end)}").item_collection()
        except Exception as exc:  # requests, pystac_client.APIError, JSON errors
            raise CatalogError(f"STAC API {url} could not be searched for {collection} ({type(exc).__name__}: "
                               f"{exc}); check the URL and the network, or use a local catalogue") from exc
        return list(found)

    return search


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _local_items(path: Path) -> list[Any]:
    """Every item of a local static catalog or ItemCollection, asset hrefs made absolute."""
    import pystac

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{path}: cannot be read as JSON ({exc}); give a STAC catalog.json or an "
                           "ItemCollection JSON") from exc
    kind = data.get("type") if isinstance(data, dict) else None
    try:
        if kind == "FeatureCollection":
            items = list(pystac.ItemCollection.from_dict(data, preserve_dict=False))
            for item in items:
                for asset in item.assets.values():
                    if "://" not in asset.href and not Path(asset.href).is_absolute():
                        asset.href = str((path.parent / asset.href).resolve())
        elif kind in ("Catalog", "Collection"):
            root = pystac.read_file(str(path))
            root.make_all_asset_hrefs_absolute()
            items = list(root.get_items(recursive=True))
        else:
            raise CatalogError(f"{path}: a JSON of type {kind!r}; expected a STAC Catalog, Collection or an "
                               "ItemCollection (FeatureCollection of STAC items)")
    except CatalogError:
        raise
    except Exception as exc:  # pystac raises STACTypeError, KeyError... on malformed items
        raise CatalogError(f"{path}: not valid STAC ({type(exc).__name__}: {exc})") from exc
    logger.debug("%s: %d items", path, len(items))
    return items


def _filter(items: Sequence[Any], collection: str, bbox: tuple[float, float, float, float],
            start: datetime, end: datetime) -> list[Any]:
    """Local search: same collection, footprint bbox intersecting ``bbox``, datetime in the window."""
    west, south, east, north = bbox
    found = []
    for item in items:
        if item.collection_id != collection or item.bbox is None:
            continue
        iw, is_, ie, in_ = item.bbox[:4] if len(item.bbox) == 4 else (*item.bbox[:2], *item.bbox[3:5])
        if iw > east or ie < west or is_ > north or in_ < south:
            continue
        moment = item.datetime or item.common_metadata.start_datetime
        if moment is None or not start <= moment.replace(tzinfo=None) <= end:
            continue
        found.append(item)
    return found


# ---------------------------------------------------------------------------------------------
# Finding assets by what they hold


def _is_data(asset: Any) -> bool:
    roles = asset.roles or ["data"]
    media = (asset.media_type or "image/tiff").lower()
    return "data" in roles and ("tiff" in media or "geotiff" in media)


EO_FIELDS = ("common_name", "center_wavelength", "full_width_half_max")
"""Fields of an ``eo:bands`` entry (STAC 1.0), ``eo:``-prefixed inside ``bands`` in STAC 1.1 (eo v2)."""


def _eo_bands(asset: Any) -> list[dict[str, Any]]:
    """The asset's bands as ``eo:bands`` entries, from any of the forms catalogues use.

    STAC 1.0 items (eo v1) list ``eo:bands`` with ``common_name`` and ``center_wavelength``; STAC
    1.1 items (eo v2, as Earth Search and the Planetary Computer move to) list ``bands`` with
    ``eo:common_name`` and ``eo:center_wavelength``, or, for a single-band asset, put those fields
    on the asset itself. All three become ``{"name", "common_name", "center_wavelength", ...}``.
    """
    fields = asset.extra_fields
    listed = fields.get("eo:bands") or fields.get("bands")
    if not listed:
        single = {key: fields[f"eo:{key}"] for key in EO_FIELDS if f"eo:{key}" in fields}
        listed = [single] if single else []
    bands = []
    for band in listed:
        if not isinstance(band, dict):
            continue
        entry = dict(band)
        for key in EO_FIELDS:
            if key not in entry and f"eo:{key}" in band:
                entry[key] = band[f"eo:{key}"]
        bands.append(entry)
    return bands


def s2_band_of(eo_band: dict[str, Any]) -> str | None:
    """Which of the ten dataset bands an ``eo:bands`` entry describes (wavelength, then names)."""
    wavelength = eo_band.get("center_wavelength")
    if isinstance(wavelength, (int, float)):
        name, nearest = min(WAVELENGTHS.items(), key=lambda kv: abs(kv[1] - wavelength))
        if abs(nearest - wavelength) <= WAVELENGTH_TOLERANCE:
            return name
        return None
    label = str(eo_band.get("name", "")).upper()
    label = {"B2": "B02", "B3": "B03", "B4": "B04", "B5": "B05", "B6": "B06", "B7": "B07", "B8": "B08"}.get(
        label, label)
    if label in BAND_LABELS:
        return BAND_LABELS[label]
    for key in (eo_band.get("name"), eo_band.get("common_name")):
        if isinstance(key, str) and key.lower() in GROUPS["s2"]:
            return key.lower()
        if isinstance(key, str) and key.lower() in COMMON_NAMES:
            return COMMON_NAMES[key.lower()]
    return None


def s2_assets(item: Any) -> dict[str, str]:
    """``{band: asset key}`` for the ten S2 bands, ``"scl"`` and, where offered, ``"cloud"`` (probability).

    Raises:
        CatalogError: naming the item and every band or layer it lacks.

    """
    found: dict[str, tuple[int, str]] = {}
    for key, asset in item.assets.items():
        bands = _eo_bands(asset)
        if len(bands) == 1 and _is_data(asset):
            band = s2_band_of(bands[0])
            cog = "cloud-optimized" in (asset.media_type or "")
            if band is not None and (band not in found or cog > found[band][0]):
                found[band] = (int(cog), key)
        if key.lower() == "scl" or "(SCL)" in (asset.title or "") or "scene classification" in (
                asset.title or "").lower():
            found["scl"] = (1, key)
        title = (asset.title or "").lower()
        if key.lower() in CLOUD_PROBABILITY_KEYS or "cloud prob" in title:
            found["cloud"] = (1, key)
    keys = {band: key for band, (_, key) in found.items()}
    missing = [b for b in (*GROUPS["s2"], "scl") if b not in keys]
    if missing:
        raise CatalogError(f"Sentinel-2 item {item.id}: no asset for {', '.join(missing)} (looked for eo:bands "
                           f"centre wavelengths, common names and band names; assets: {', '.join(item.assets)}); "
                           "the catalogue's items need eo:bands on their band assets and an SCL asset")
    return keys


def s1_assets(item: Any) -> dict[str, str]:
    """``{"vv": key, "vh": key}``: the polarisation assets, by key or title.

    Raises:
        CatalogError: naming the item and the missing polarisation.

    """
    keys: dict[str, str] = {}
    for key, asset in item.assets.items():
        label = key.lower() if key.lower() in ("vv", "vh") else (asset.title or "").split(":")[0].strip().lower()
        if label in ("vv", "vh") and _is_data(asset):
            keys.setdefault(label, key)
    missing = [p for p in ("vv", "vh") if p not in keys]
    if missing:
        raise CatalogError(f"Sentinel-1 item {item.id}: no {', '.join(m.upper() for m in missing)} asset (assets: "
                           f"{', '.join(item.assets)}); dual-polarisation (VV+VH) RTC items are needed")
    return keys


def dem_asset(item: Any) -> str:
    """Return the elevation asset of a DEM item: the only data asset, else one named data/dem/elevation.

    Raises:
        CatalogError: naming the item when no single elevation asset can be told apart.

    """
    data = [key for key, asset in item.assets.items() if _is_data(asset)]
    if len(data) == 1:
        return data[0]
    for key in data:
        if key.lower() in ("data", "dem", "elevation"):
            return key
    raise CatalogError(f"DEM item {item.id}: cannot tell which asset holds elevation (data assets: "
                       f"{', '.join(data) or 'none'}); expected one data asset or one named 'data'")
