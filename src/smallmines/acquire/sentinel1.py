"""Sentinel-1 RTC: linear gamma0 -> Lee speckle filter -> dB -> temporal median, VV and VH.

Items of one solar day are fused into one observation on the output grid (bilinear). Each
observation is speckle-filtered with the Lee filter (Lee 1980) in linear power, where speckle is
multiplicative and the filter preserves the local mean backscatter: a 5 x 5 window and an
equivalent number of looks of 4.4 (Sentinel-1 IW GRD high resolution). Lee is the standard
adaptive filter of Sentinel-1 preprocessing (it smooths homogeneous areas and leaves edges and bright
targets); the refined Lee filter's edge-aligned windows cost several times more and the temporal
median that follows removes most of the remaining speckle. Backscatter is then converted to dB
(``10 log10``) and the per-pixel median over the window's observations is taken.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter

from smallmines.acquire.catalog import s1_assets
from smallmines.acquire.grid import Grid
from smallmines.errors import CatalogError

POLARISATIONS = ("vv", "vh")
LEE_SIZE = 5
"""Lee filter window side (pixels of the 10 m grid)."""
LEE_LOOKS = 4.4
"""Equivalent number of looks of Sentinel-1 IW GRD (high resolution), the speckle strength the filter assumes."""


@dataclass
class Backscatter:
    """A lazy S1 composite: ``(2, y, x)`` float32 VV, VH in dB (NaN: no observation)."""

    db: Any
    items: list[dict[str, Any]]


def lee_filter(power: np.ndarray, size: int = LEE_SIZE, looks: float = LEE_LOOKS) -> np.ndarray:
    """Lee-filter linear backscatter, image by image along the first axes (NaN: no data, ignored).

    Args:
        power: ``(..., y, x)`` linear gamma0 with NaN where there is no data.
        size: window side in pixels.
        looks: equivalent number of looks (speckle variance ``1/looks``).

    Returns:
        The filtered array, NaN where the input is NaN.

    """
    valid = np.isfinite(power)
    footprint = (1,) * (power.ndim - 2) + (size, size)
    weight = uniform_filter(valid.astype(np.float64), footprint, mode="reflect")
    values = np.where(valid, power, 0.0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = uniform_filter(values, footprint, mode="reflect") / weight
        square = uniform_filter(values * values, footprint, mode="reflect") / weight
        variance = np.maximum(square - mean * mean, 0.0)
        noise = 1.0 / looks
        signal = np.maximum((variance - mean * mean * noise) / (1.0 + noise), 0.0)
        gain = np.where(variance > 0, signal / variance, 0.0)
    return np.where(valid, mean + gain * (values - mean), np.nan).astype(np.float32)


def _to_db_median(power: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: no observation
        db = 10.0 * np.log10(np.where(power > 0, power, np.nan))
        return np.nanmedian(db, axis=0).astype(np.float32)


def describe_item(item: Any) -> dict[str, Any]:
    """Provenance of one item: id, date, orbit direction, polarisations."""
    props = item.properties
    return {"id": item.id, "datetime": props.get("datetime"), "orbit_state": props.get("sat:orbit_state"),
            "polarizations": props.get("sar:polarizations")}


def composite(items: Sequence[Any], grid: Grid, chunk: int = 1024) -> Backscatter:
    """Composite lazily: the speckle-filtered dB median of ``items`` on ``grid``.

    Raises:
        CatalogError: no item, or an item without VV or VH.

    """
    import dask.array as da
    from odc.stac import load

    if not items:
        raise CatalogError("no Sentinel-1 item to composite")
    layouts: dict[tuple[str, str], list[Any]] = {}
    for item in items:
        keys = s1_assets(item)
        layouts.setdefault((keys["vv"], keys["vh"]), []).append(item)
    slices = []
    for keys, group in layouts.items():
        data = load(group, bands=list(keys), geobox=grid.geobox(), chunks={"x": chunk, "y": chunk},
                    groupby="solar_day", resampling="bilinear", dtype="float32", fail_on_error=True)
        power = da.stack([data[key].data for key in keys], axis=1)  # time, pol, y, x
        slices.append(da.where(power > 0, power, np.float32(np.nan)))
    power = da.concatenate(slices, axis=0).rechunk({0: 1, 1: -1})
    depth = LEE_SIZE // 2
    filtered = power.map_overlap(lee_filter, depth={0: 0, 1: 0, 2: depth, 3: depth}, boundary="reflect",
                                 dtype=np.float32)
    db = da.map_blocks(_to_db_median, filtered.rechunk({0: -1}), drop_axis=0, dtype=np.float32)
    return Backscatter(db, sorted((describe_item(i) for i in items), key=lambda d: str(d["datetime"])))
