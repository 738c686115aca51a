"""Sentinel-2 L2A: masked with the scene classification, harmonised across baselines, composited per pixel.

Each item's ten bands and SCL layer are loaded lazily with odc-stac onto the output grid (nearest
neighbour, so the 20 m bands are repeated over 2 x 2 pixels of the 10 m grid as in the dataset),
items of one solar day fused into one observation. An observation is clear where the SCL class is
not one of :data:`SCL_MASKED` (no data, saturated, cloud shadow, medium and high probability cloud,
thin cirrus), below :data:`CLOUD_PROBABILITY_MAX` on the cloud-probability layer where the
catalogue offers one, and every band has data. Class 2 (dark area pixels) is kept: in the dry season it is
mostly dark water and terrain shade, and masking it would remove the turbid mining ponds.

From processing baseline 04.00 (25 January 2022) L2A digital numbers carry ``BOA_ADD_OFFSET`` =
-1000: reflectance x 10000 = DN - 1000. The offset is subtracted per item, read from
``s2:processing_baseline`` (Earth Search items that say ``earthsearch:boa_offset_applied`` are
already harmonised), so composites of 2016 and 2022 agree over unchanged ground. The composite is a
per-pixel statistic of the clear observations (:data:`STATISTICS`, median by default), reflectance
x 10000 with NaN where no clear observation exists, beside the count of clear observations.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import numpy as np

from smallmines.acquire.catalog import s2_assets
from smallmines.acquire.grid import Grid
from smallmines.bands import GROUPS
from smallmines.errors import CatalogError, ConfigError

logger = logging.getLogger(__name__)

S2_BANDS = GROUPS["s2"]
SCL_MASKED = {0: "no data", 1: "saturated or defective", 3: "cloud shadow", 8: "cloud, medium probability",
              9: "cloud, high probability", 10: "thin cirrus"}
"""Scene classification classes that are not a clear observation."""
BOA_OFFSET = 1000
"""Added to L2A digital numbers from processing baseline 04.00 on."""
OFFSET_BASELINE = 4.0
OFFSET_SINCE = datetime(2022, 1, 25)
"""First day of baseline 04.00: used only for items that do not state their baseline."""
DN_NODATA = 0
CLOUD_PROBABILITY_MAX = 50
"""Where an item offers a cloud-probability layer (percent), pixels at or above this are masked too."""


def _quantile(q: float, stack: np.ndarray, axis: int) -> np.ndarray:
    return np.nanpercentile(stack, q, axis=axis)


STATISTICS = {
    "median": np.nanmedian,
    "mean": np.nanmean,
    "q25": partial(_quantile, 25.0),
    "q75": partial(_quantile, 75.0),
}
"""Per-pixel composite statistics over the clear observations (the lower quartile suppresses haze)."""


@dataclass
class Composite:
    """A lazy S2 composite: reflectance ``(10, y, x)`` float32 (NaN: no clear observation), count ``(1, y, x)``."""

    reflectance: Any
    count: Any
    items: list[dict[str, Any]]


def baseline_offset(item: Any) -> int:
    """Return the DN offset of an item: 1000 from baseline 04.00 on, 0 before or when already removed."""
    props = item.properties
    if props.get("earthsearch:boa_offset_applied") is True:
        return 0
    baseline = props.get("s2:processing_baseline")
    try:
        return BOA_OFFSET if float(baseline) >= OFFSET_BASELINE else 0
    except (TypeError, ValueError):
        moment = item.datetime.replace(tzinfo=None) if item.datetime else None
        logger.warning("Sentinel-2 item %s states no processing baseline; assuming %s from its date",
                       item.id, "04.00 or later" if moment and moment >= OFFSET_SINCE else "before 04.00")
        return BOA_OFFSET if moment is not None and moment >= OFFSET_SINCE else 0


def describe_item(item: Any, offset: int, cloud_probability: bool = False) -> dict[str, Any]:
    """Provenance of one item: id, date, cloud cover, baseline, the offset removed, cloud probability used."""
    props = item.properties
    return {"id": item.id, "datetime": props.get("datetime"), "cloud_cover_pct": props.get("eo:cloud_cover"),
            "processing_baseline": props.get("s2:processing_baseline"), "offset_removed": offset,
            "cloud_probability": cloud_probability}


def check_statistic(statistic: str) -> None:
    """Raise ConfigError for a statistic that is not one of :data:`STATISTICS`."""
    if statistic not in STATISTICS:
        raise ConfigError(f"composite statistic {statistic!r} is unknown; choose one of {', '.join(STATISTICS)}")


def _groups(items: Sequence[Any]) -> dict[tuple[int, tuple[tuple[str, str], ...]], list[Any]]:
    """Items by (offset, asset keys): odc-stac loads one key layout at a time, one offset is one subtraction."""
    groups: dict[tuple[int, tuple[tuple[str, str], ...]], list[Any]] = {}
    for item in items:
        keys = tuple(sorted(s2_assets(item).items()))
        groups.setdefault((baseline_offset(item), keys), []).append(item)
    return groups


def _observations(items: Sequence[Any], keys: dict[str, str], offset: int, grid: Grid,
                  chunk: int) -> tuple[Any, Any]:
    """Lazy ``(time, 10, y, x)`` reflectance x 10000 (NaN where not clear) and ``(time, y, x)`` clear flags."""
    import dask.array as da
    from odc.stac import load

    wanted = [keys[b] for b in S2_BANDS] + [keys["scl"]] + ([keys["cloud"]] if "cloud" in keys else [])
    data = load(items, bands=wanted, geobox=grid.geobox(), chunks={"x": chunk, "y": chunk},
                groupby="solar_day", resampling="nearest", nodata=DN_NODATA, fail_on_error=True)
    dn = da.stack([data[keys[b]].data for b in S2_BANDS], axis=1)
    scl = data[keys["scl"]].data
    clear = ~da.isin(scl, list(SCL_MASKED)) & (dn != DN_NODATA).all(axis=1)
    if "cloud" in keys:
        clear &= data[keys["cloud"]].data < CLOUD_PROBABILITY_MAX
    reflectance = da.where(clear[:, None], dn.astype(np.float32) - np.float32(offset), np.float32(np.nan))
    return reflectance, clear


def _reduce(stack: np.ndarray, statistic: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: no clear observation
        return STATISTICS[statistic](stack, axis=0).astype(np.float32)


def composite(items: Sequence[Any], grid: Grid, statistic: str = "median", chunk: int = 1024) -> Composite:
    """Composite lazily: the clear-sky composite of ``items`` on ``grid``.

    Args:
        items: Sentinel-2 L2A STAC items.
        grid: output grid (10 m).
        statistic: one of :data:`STATISTICS`.
        chunk: Dask chunk side in pixels.

    Raises:
        CatalogError: an item lacks a band or the SCL layer.
        ConfigError: an unknown statistic.

    """
    import dask.array as da

    check_statistic(statistic)
    if not items:
        raise CatalogError("no Sentinel-2 item to composite")
    reflectance, clear, described = [], [], []
    for (offset, keys), group in _groups(items).items():
        values, flags = _observations(group, dict(keys), offset, grid, chunk)
        reflectance.append(values)
        clear.append(flags)
        described += [describe_item(item, offset, any(k == "cloud" for k, _ in keys)) for item in group]
    stack = da.concatenate(reflectance, axis=0).rechunk({0: -1, 1: -1})
    result = da.map_blocks(_reduce, stack, statistic, drop_axis=0, dtype=np.float32)
    count = da.concatenate(clear, axis=0).rechunk({0: -1}).sum(axis=0, dtype=np.uint16)[None]
    return Composite(result, count, sorted(described, key=lambda d: str(d["datetime"])))
