"""Change classes from two binary maps, class pixel counts, area tables and growth rates.

Pure functions on arrays and numbers: ``change_classes`` codes each pixel as no mining, new,
persistent or ceased mining (:class:`smallmines.legend.ChangeClass`); ``growth`` gives the net change
in hectares, relative to the first year, and the compound annual growth rate ``(B / A) ** (1 / years) - 1``,
undefined (null) when the first year has no mining.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from smallmines.errors import ChangeError
from smallmines.legend import CHANGE_NODATA, CLASS_KEYS, CLASS_LABELS, ChangeClass

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


MAP_NODATA = 255
SQM_PER_HA = 10_000.0
_LUT = np.array([ChangeClass.NO_MINING, ChangeClass.NEW, ChangeClass.CEASED, ChangeClass.PERSISTENT], np.uint8)
"""Change code indexed by ``2 * mining_a + mining_b``."""
# --------------------------------------------------------------------------------------------
# pure functions on arrays and numbers


def change_classes(mines_a: np.ndarray, mines_b: np.ndarray, nodata: int = MAP_NODATA) -> np.ndarray:
    """Combine two aligned binary maps into change codes.

    Args:
        mines_a: uint8 map of the first year: 0 no mining, 1 mining, ``nodata`` elsewhere.
        mines_b: the same for the second year, on the same grid.
        nodata: nodata value of both inputs.

    Returns:
        uint8 array of :class:`ChangeClass` codes, :data:`CHANGE_NODATA` where either input is nodata.

    Raises:
        ChangeError: the two arrays differ in shape.
    """
    if mines_a.shape != mines_b.shape:
        raise ChangeError(f"maps have shapes {mines_a.shape} and {mines_b.shape}; align them first")
    valid = (mines_a != nodata) & (mines_b != nodata)
    code = _LUT[(2 * (mines_a == 1) + (mines_b == 1)).astype(np.intp)]
    return np.where(valid, code, np.uint8(CHANGE_NODATA)).astype(np.uint8)


def class_pixels(change: np.ndarray) -> dict[ChangeClass, int]:
    """Pixel count of every change class (nodata left out)."""
    counts = np.bincount(change.ravel(), minlength=256)
    return {c: int(counts[c]) for c in ChangeClass}


def growth(mining_a_ha: float, mining_b_ha: float, year_a: int, year_b: int) -> dict[str, float | None]:
    """Net and annual growth of the mined area between two years.

    Args:
        mining_a_ha: mined area in the first year, hectares.
        mining_b_ha: mined area in the second year, hectares.
        year_a: first year.
        year_b: second year (after ``year_a``).

    Returns:
        ``net_growth_ha`` (B - A), ``net_growth_pct`` (relative to A, None when A is 0),
        ``annual_growth_ha`` (linear, per year), ``annual_growth_rate_pct`` (compound annual rate,
        None when A is 0 or the years are equal).
    """
    years = year_b - year_a
    net = mining_b_ha - mining_a_ha
    out: dict[str, float | None] = {
        "net_growth_ha": net,
        "net_growth_pct": 100.0 * net / mining_a_ha if mining_a_ha > 0 else None,
        "annual_growth_ha": net / years if years > 0 else None,
        "annual_growth_rate_pct": None,
    }
    if years > 0 and mining_a_ha > 0:
        out["annual_growth_rate_pct"] = 100.0 * ((mining_b_ha / mining_a_ha) ** (1.0 / years) - 1.0)
    return out


def area_table(pixels: dict[ChangeClass, int], pixel_area_m2: float, year_a: int, year_b: int) -> pd.DataFrame:
    """The area table: one row per change class, then mining per year and the valid area.

    Args:
        pixels: pixel count per class (from :func:`class_pixels`).
        pixel_area_m2: area of one pixel in square metres.
        year_a: first year (names the row ``mining_YEAR``).
        year_b: second year.

    Returns:
        DataFrame with columns ``class``, ``code`` (nullable int), ``pixels``, ``area_ha`` and
        ``pct_valid`` (percent of the area valid in both maps).
    """
    valid = sum(pixels.values())
    ha = pixel_area_m2 / SQM_PER_HA
    rows = [(CLASS_LABELS[c], int(c), pixels[c]) for c in ChangeClass]
    rows.append((f"mining {year_a}", None, pixels[ChangeClass.PERSISTENT] + pixels[ChangeClass.CEASED]))
    rows.append((f"mining {year_b}", None, pixels[ChangeClass.PERSISTENT] + pixels[ChangeClass.NEW]))
    rows.append(("valid area", None, valid))
    table = pd.DataFrame(rows, columns=["class", "code", "pixels"])
    table["code"] = table["code"].astype("Int64")
    table["area_ha"] = table["pixels"] * ha
    table["pct_valid"] = 100.0 * table["pixels"] / valid if valid else float("nan")
    return table


def _stats_row(pixels: dict[ChangeClass, int], pixel_area_m2: float, year_a: int, year_b: int) -> dict[str, Any]:
    """Wide form of the area table plus growth: the columns of a zone row."""
    ha = pixel_area_m2 / SQM_PER_HA
    valid = sum(pixels.values())
    row: dict[str, Any] = {"valid_ha": valid * ha}
    for c in ChangeClass:
        row[f"{CLASS_KEYS[c]}_ha"] = pixels[c] * ha
    for c in ChangeClass:
        row[f"{CLASS_KEYS[c]}_pct"] = 100.0 * pixels[c] / valid if valid else None
    mining_a = (pixels[ChangeClass.PERSISTENT] + pixels[ChangeClass.CEASED]) * ha
    mining_b = (pixels[ChangeClass.PERSISTENT] + pixels[ChangeClass.NEW]) * ha
    row[f"mining_{year_a}_ha"] = mining_a
    row[f"mining_{year_b}_ha"] = mining_b
    row[f"mining_{year_a}_pct"] = 100.0 * mining_a / (valid * ha) if valid else None
    row[f"mining_{year_b}_pct"] = 100.0 * mining_b / (valid * ha) if valid else None
    row.update(growth(mining_a, mining_b, year_a, year_b))
    return row


