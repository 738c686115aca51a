"""``fetch``: an area and a year -> the analysis-ready 13-band scene ``smallmines map`` reads.

Searches the catalogue for Sentinel-2 L2A, Sentinel-1 RTC and Copernicus DEM items over the area,
composites them lazily (odc-stac and Dask, chunk by chunk) onto a 10 m grid in the area's UTM zone
and writes into the output folder::

    scene.tif       13 bands in the published order (band descriptions = band names), float32, -9999
    s2.tif          the ten Sentinel-2 bands, reflectance x 10000
    s2_count.tif    clear Sentinel-2 observations per pixel (uint16)
    s1.tif          VV, VH in dB
    dem.tif         elevation in metres
    fetch.json      provenance: catalogue, collections, items, dates, cloud cover, baselines, masking

Every raster is a COG written under a temporary name and renamed into place; a file whose inputs
(items, grid, options) have not changed is reused by a rerun.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from smallmines.acquire import sentinel1, sentinel2
from smallmines.acquire.catalog import SENSORS, Catalogue, open_catalogue
from smallmines.acquire.dem import mosaic
from smallmines.acquire.grid import Area, Grid, grid_for, read_area
from smallmines.acquire.raster import KEY_TAG, Product, Staging, chunk_windows, existing_key
from smallmines.bands import BAND_NAMES, IMAGE_NODATA
from smallmines.errors import CatalogError, ConfigError
from smallmines.folders import refuse_overwrite

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

FORMAT = "smallmines-fetch/1"
"""Version of what fetch writes: part of every reuse key."""
FILES = {"scene": "scene.tif", "s2": "s2.tif", "s2_count": "s2_count.tif", "s1": "s1.tif", "dem": "dem.tif"}
ALL_TIME = (datetime(1900, 1, 1), datetime(2100, 1, 1))
"""Search window of the DEM (a static product)."""


@dataclass
class FetchResult:
    """What a fetch wrote: the stacked scene, every file, the provenance record, and what was reused."""

    out_dir: Path
    scene: Path
    files: dict[str, Path]
    record: dict[str, Any]
    reused: list[str] = field(default_factory=list)


def parse_months(months: str | int) -> list[int]:
    """``"1"`` -> [1]; ``"1-3"`` -> [1, 2, 3]; ``"12-2"`` -> [12, 1, 2] (December of the year before).

    Raises:
        ConfigError: not a month or a range of months.

    """
    text = str(months).strip()
    try:
        first, _, last = text.partition("-")
        a, b = int(first), int(last or first)
    except ValueError:
        a = b = 0
    if not (1 <= a <= 12 and 1 <= b <= 12):
        raise ConfigError(f"--months {text!r}: give a month 1-12 or a range like 1-3 or 12-2 "
                          "(a range that wraps starts in the year before)")
    return [(a - 1 + i) % 12 + 1 for i in range((b - a) % 12 + 1)]


def season(year: int, months: str | int = "1") -> tuple[datetime, datetime]:
    """Return the observation window: first day of the first month to the last second of the last month."""
    chosen = parse_months(months)
    first_year = year - 1 if chosen[0] > chosen[-1] else year
    start = datetime(first_year, chosen[0], 1)
    end = datetime(year, chosen[-1], calendar.monthrange(year, chosen[-1])[1], 23, 59, 59)
    return start, end


def _search(catalogue: Catalogue, sensor: str, area: Area, window: tuple[datetime, datetime]) -> list[Any]:
    items = catalogue.search(sensor, area.bounds, *window)
    if not items:
        bounds = ",".join(f"{v:.4f}" for v in area.bounds)
        raise CatalogError(
            f"no {SENSORS[sensor]} item (collection {catalogue.collections[sensor]}) in catalogue "
            f"{catalogue.name!r} over {bounds} between {window[0]:%Y-%m-%d} and {window[1]:%Y-%m-%d}; "
            "widen --months, check the AOI and the year, or use another --stac")
    logger.info("%s: %d items", SENSORS[sensor], len(items))
    return items


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([FORMAT, *parts], sort_keys=True, default=str).encode()).hexdigest()[:32]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, allow_nan=False, default=str)
        handle.write("\n")
    os.chmod(name, 0o644)
    os.replace(name, path)


def _windows(grid: Grid, chunk: int) -> list[tuple[int, int, int, int]]:
    """``(row, col, height, width)`` of the grid's chunks."""
    return chunk_windows((tuple(min(chunk, grid.height - r) for r in range(0, grid.height, chunk)),
                          tuple(min(chunk, grid.width - c) for c in range(0, grid.width, chunk))))


def _stack(staging: Staging, files: dict[str, Path], grid: Grid, key: str, chunk: int,
           progress: Callable[[], None]) -> None:
    """Write the 13-band scene from the per-sensor files, window by window."""
    name = FILES["scene"]
    raw = staging.folder / f"raw-{name}"
    from smallmines.acquire.raster import CREATION

    sources = [files["s2"], files["s1"], files["dem"]]
    with rasterio.open(raw, "w", driver="GTiff", width=grid.width, height=grid.height, count=len(BAND_NAMES),
                       dtype="float32", crs=grid.crs, transform=grid.transform, nodata=IMAGE_NODATA,
                       **CREATION) as dst:
        dst.descriptions = BAND_NAMES
        dst.update_tags(**{KEY_TAG: key, "bands": ",".join(BAND_NAMES)})
        handles = [rasterio.open(path) for path in sources]
        try:
            for row, col, height, width in _windows(grid, chunk):
                window = Window(col, row, width, height)
                dst.write(np.concatenate([src.read(window=window) for src in handles]), window=window)
                progress()
        finally:
            for src in handles:
                src.close()
    staging.to_cog(raw, name)


def _product(array: Any, bands: tuple[str, ...] | list[str], key: str, nodata: float = IMAGE_NODATA,
             dtype: str = "float32") -> Product:
    import dask.array as da

    if dtype == "float32":
        array = da.where(da.isnan(array), np.float32(nodata), array)
    return Product(array, dtype, nodata, tuple(bands), {KEY_TAG: key})


def _clear_share(path: Path) -> tuple[float, float]:
    """Share of pixels with a clear observation and mean clear observations per pixel (read by blocks)."""
    clear = total = pixels = 0
    with rasterio.open(path) as src:
        for _, window in src.block_windows(1):
            count = src.read(1, window=window)
            clear += int((count > 0).sum())
            total += int(count.sum(dtype=np.int64))
            pixels += count.size
    return clear / pixels, total / pixels


def _record(area: Area, year: int, window: tuple[datetime, datetime], months: str | int, catalogue: Catalogue,
            grid: Grid, described: dict[str, list[dict[str, Any]]], statistic: str, files: dict[str, Path],
            reused: list[str], s1_catalogue: Catalogue | None = None) -> dict[str, Any]:
    """Build the provenance record written to ``fetch.json``."""
    share, mean_count = _clear_share(files["s2_count"])
    return {
        "format": FORMAT,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "aoi": {"source": area.source, "bounds_deg": list(area.bounds), "geometry": area.geometry},
        "year": year,
        "window": {"start": window[0].isoformat(), "end": window[1].isoformat(), "months": parse_months(months)},
        "catalogue": catalogue.describe(),
        **({"s1_catalogue": s1_catalogue.describe()} if s1_catalogue is not None else {}),
        "grid": grid.to_dict(),
        "items": described,
        "sentinel2": {"statistic": statistic, "masked_scl_classes": {str(k): v for k, v in
                                                                      sentinel2.SCL_MASKED.items()},
                      "cloud_probability_max_pct": sentinel2.CLOUD_PROBABILITY_MAX,
                      "items_with_cloud_probability": [i["id"] for i in described["s2"] if i["cloud_probability"]],
                      "resampling": "nearest (20 m bands repeated over 2 x 2 pixels)",
                      "offset": "DN - 1000 for processing baseline >= 04.00, DN otherwise",
                      "clear_pixel_share": share, "mean_clear_observations": mean_count},
        "sentinel1": {"filter": f"Lee {sentinel1.LEE_SIZE}x{sentinel1.LEE_SIZE}, ENL {sentinel1.LEE_LOOKS}, "
                                "in linear power", "units": "dB (10 log10 gamma0)", "statistic": "median",
                      "resampling": "bilinear"},
        "dem": {"resampling": "bilinear", "units": "m"},
        "files": {name: path.name for name, path in files.items()},
        "reused": reused,
    }


@contextmanager
def _reading(sensor: str) -> Iterator[None]:
    """Turn a failed read of a sensor's assets (network, missing file) into a CatalogError."""
    try:
        yield
    except (RasterioError, OSError) as exc:
        raise CatalogError(f"reading the {SENSORS[sensor]} assets failed ({type(exc).__name__}: {exc}); check the "
                           "network or the archive and rerun: files already finished are reused") from exc


def _require_clear(count: Path, items: int, window: tuple[datetime, datetime]) -> None:
    if _clear_share(count)[0] == 0:
        raise CatalogError(f"no clear Sentinel-2 pixel over the AOI in {items} item(s) between "
                           f"{window[0]:%Y-%m-%d} and {window[1]:%Y-%m-%d} (every observation is cloud, shadow, "
                           "cirrus or no data); widen --months or choose another year")


def fetch(aoi: str | Path | tuple[float, float, float, float], year: int, out_dir: str | Path, *,
          stac: str | Path = "planetary-computer", months: str | int = "1", statistic: str = "median",
          collections: dict[str, str | None] | None = None, chunk: int = 512,
          progress: Progress | None = None, s1_stac: str | Path | None = None,
          overwrite: bool = True) -> FetchResult:
    """Fetch and composite Sentinel-2 L2A, Sentinel-1 RTC and the Copernicus DEM for an area and a year.

    Args:
        aoi: a vector file, or a bbox ``(W, S, E, N)`` / ``"W,S,E,N"`` in degrees.
        year: the year of the observation window (the window's last month falls in it).
        out_dir: output folder (created; files of an earlier fetch with the same inputs are reused).
        stac: ``planetary-computer``, ``earth-search``, a STAC API URL, or a local static catalog /
            ItemCollection JSON.
        months: the window's months, ``"1"`` (January, as SmallMinesDS), ``"1-3"``, ``"12-2"``.
        statistic: Sentinel-2 composite statistic (:data:`~smallmines.acquire.sentinel2.STATISTICS`).
        collections: per-sensor (``s2``, ``s1``, ``dem``) collection ids overriding the catalogue's.
        chunk: Dask chunk side in pixels: one chunk of every observation is in memory at a time (about
            ``chunk^2 x 64 bytes x observations``: 200 MB for 512 and 12 observations).
        progress: called as ``progress(done, total)`` after each chunk written.
        s1_stac: another catalogue for Sentinel-1 RTC (same forms as ``stac``), for catalogues that
            serve none: ``stac="earth-search", s1_stac="planetary-computer"``.
        overwrite: replace files of another request (other area, year, items or options) in ``out_dir``;
            the command line refuses by default (``--overwrite``). Files of the same request are reused
            either way.

    Returns:
        The files written and the provenance record (also in ``fetch.json``).

    Raises:
        CatalogError: the catalogue cannot be opened or searched, a sensor has no item in the window,
            an item lacks a band, or the area has no clear Sentinel-2 pixel.
        ConfigError: invalid months, statistic, chunk or AOI.

    """
    sentinel2.check_statistic(statistic)
    if chunk < 64:
        raise ConfigError(f"chunk={chunk}; give at least 64 pixels")
    window = season(year, months)
    area = read_area(aoi)
    grid = grid_for(area)
    catalogue = open_catalogue(stac, collections)
    s1_catalogue = open_catalogue(s1_stac, collections) if s1_stac is not None else None
    if "api" in (catalogue.kind, getattr(s1_catalogue, "kind", None)):
        from odc.stac import configure_rio

        # GDAL settings for reading COGs over HTTP, with retries of transient failures
        configure_rio(cloud_defaults=True, GDAL_HTTP_MAX_RETRY="5", GDAL_HTTP_RETRY_DELAY="2")
    found = {"s2": _search(catalogue, "s2", area, window),
             "s1": _search(s1_catalogue or catalogue, "s1", area, window),
             "dem": _search(catalogue, "dem", area, ALL_TIME)}
    ids = {sensor: sorted(item.id for item in items) for sensor, items in found.items()}
    keys = {"s2": _key("s2", grid.to_dict(), ids["s2"], statistic, sentinel2.SCL_MASKED,
                       sentinel2.CLOUD_PROBABILITY_MAX),
            "s1": _key("s1", grid.to_dict(), ids["s1"], sentinel1.LEE_SIZE, sentinel1.LEE_LOOKS),
            "dem": _key("dem", grid.to_dict(), ids["dem"])}
    keys["scene"] = _key("scene", keys["s2"], keys["s1"], keys["dem"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {name: out / file for name, file in FILES.items()}
    reused = [name for name in ("s2", "s1", "dem", "scene")
              if existing_key(files[name]) == keys[name] and (name != "s2" or existing_key(files["s2_count"]) ==
                                                              keys["s2"])]
    blocks = len(_windows(grid, chunk))
    todo = [name for name in ("s2", "s1", "dem", "scene") if name not in reused]
    refuse_overwrite([files[name] for name in todo], overwrite)
    done, total = [0], blocks * len(todo)

    def tick() -> None:
        done[0] += 1
        if progress:
            progress(done[0], total)

    logger.info("grid %s, %d x %d pixels; window %s to %s; reusing %s", grid.crs, grid.width, grid.height,
                f"{window[0]:%Y-%m-%d}", f"{window[1]:%Y-%m-%d}", ", ".join(reused) or "nothing")
    described: dict[str, list[dict[str, Any]]] = {}
    staging = Staging(out)
    try:
        with _reading("s2"):
            s2 = sentinel2.composite(found["s2"], grid, statistic, chunk)
            described["s2"] = s2.items
            if "s2" in todo:
                staging.write({FILES["s2"]: _product(s2.reflectance, sentinel2.S2_BANDS, keys["s2"]),
                               FILES["s2_count"]: _product(s2.count, ["clear_observations"], keys["s2"], 0,
                                                           "uint16")}, grid, tick)
                _require_clear(staging.folder / FILES["s2_count"], len(found["s2"]), window)
                staging.commit()
        with _reading("s1"):
            s1 = sentinel1.composite(found["s1"], grid, chunk)
            described["s1"] = s1.items
            if "s1" in todo:
                staging.write({FILES["s1"]: _product(s1.db, ["vv", "vh"], keys["s1"])}, grid, tick)
                staging.commit()
        with _reading("dem"):
            dem = mosaic(found["dem"], grid, chunk)
            described["dem"] = dem.items
            if "dem" in todo:
                staging.write({FILES["dem"]: _product(dem.metres, ["dem"], keys["dem"])}, grid, tick)
                staging.commit()
        if "scene" in todo:
            _stack(staging, files, grid, keys["scene"], chunk, tick)
            staging.commit()
    finally:
        staging.close()
    record = _record(area, year, window, months, catalogue, grid, described, statistic, files, reused, s1_catalogue)
    _write_json(out / "fetch.json", record)
    return FetchResult(out, files["scene"], files, record, reused)
