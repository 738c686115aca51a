"""Multi-year mining history: when each pixel was first and last mined, mined and new area per year.

Given three or more dated binary mine maps, :func:`map_history` writes (see ``docs/run-layout.md``)::

    first_year.tif   COG uint16: year each pixel was first mapped as mining; 0 never; 65535 nodata
    last_year.tif    COG uint16: year it was last mapped as mining; 0 never; 65535 nodata
    history.csv      one row per map: year, mined_ha, new_ha, resumed_ha, ceased_ha, net_ha, ...
    figures/history  mined area per year, split into continuing, resumed and new mining (PNG, PDF)
    figures/history_maps
                     small multiples: each map's mining as change from the map before

and, through :func:`~smallmines.analysis.change.compare_maps`, the change between the first and the
last map (``change.tif``, ``areas.csv``, ``summary.json`` with a ``history`` block, ...).

**Flickers.** A single-date map has errors that come and go: a pixel mapped as mining in one year
only, between two years without, is most likely an error. With ``confirm=N`` a run of mining in
fewer than ``N`` consecutive maps is dropped, unless it touches the first or the last map: there it
may continue beyond the record, so it can be neither confirmed nor refuted. Such runs are kept and
reported as ``unconfirmed_ha`` (in the first map: possibly a flicker of that map; in the last map:
new mining that a later map must confirm). The default ``N = 2`` removes one-year flickers inside
the record; ``N = 1`` keeps every map as it is. Because runs at both ends are kept, the first and the
last map are never changed, so ``change.tif`` between them agrees with the history.

Only pixels valid in every map count (on one grid: the first map's CRS, UTM when it is geographic,
the finest resolution, the overlap of all maps).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from smallmines.analysis.areas import MAP_NODATA, SQM_PER_HA, growth
from smallmines.analysis.maps import BinaryMap, Grid, align, common_grid, read_binary_map
from smallmines.analysis.writers import _clean, _write_csv, _write_json, write_cog
from smallmines.errors import ChangeError
from smallmines.folders import refuse_overwrite

if TYPE_CHECKING:
    import geopandas as gpd

    from smallmines.analysis.change import ChangeResult

logger = logging.getLogger(__name__)


YEAR_NODATA = 65535
NEVER = 0
DEFAULT_CONFIRM = 2
"""Consecutive maps a run of mining needs (unless it touches the first or last map) to count."""
_CHUNK = 1 << 20
"""Pixels whose run lengths are computed at once (bounds the memory of :func:`confirm_runs`)."""


# --------------------------------------------------------------------------------------------
# pure functions on stacks of maps


def confirm_runs(mining: np.ndarray, confirm: int = DEFAULT_CONFIRM) -> tuple[np.ndarray, np.ndarray]:
    """Drop runs of mining shorter than ``confirm`` consecutive maps that touch neither end of the record.

    Args:
        mining: bool stack ``(T, H, W)`` (or ``(T, ...)``), mining in each map, oldest first.
        confirm: consecutive maps a run needs; 1 keeps everything.

    Returns:
        ``(kept, unconfirmed)``: the mining that counts, and the part of it in runs shorter than
        ``confirm`` that touch the first or the last map (kept, but not confirmed).

    Raises:
        ChangeError: ``confirm`` below 1.
    """
    if confirm < 1:
        raise ChangeError(f"confirm {confirm} must be 1 or more (1 keeps every map as it is)")
    s = np.asarray(mining, dtype=bool)
    flat = s.reshape(s.shape[0], -1)
    kept = np.empty_like(flat)
    unconfirmed = np.empty_like(flat)
    for start in range(0, flat.shape[1], _CHUNK):  # bounded memory: the run lengths of one chunk at a time
        part = slice(start, start + _CHUNK)
        kept[:, part], unconfirmed[:, part] = _runs(flat[:, part], confirm)
    return kept.reshape(s.shape), unconfirmed.reshape(s.shape)


def _runs(s: np.ndarray, confirm: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`confirm_runs` on a ``(T, pixels)`` bool array."""
    t_count = s.shape[0]
    fwd = np.zeros(s.shape, np.int16)  # length of the run up to and including t
    bwd = np.zeros(s.shape, np.int16)  # length of the run from t on
    for t in range(t_count):
        fwd[t] = np.where(s[t], (fwd[t - 1] if t else 0) + 1, 0)
    for t in range(t_count - 1, -1, -1):
        bwd[t] = np.where(s[t], (bwd[t + 1] if t < t_count - 1 else 0) + 1, 0)
    idx = np.arange(t_count)[:, None]
    short = fwd + bwd - 1 < confirm
    edge = (fwd == idx + 1) | (bwd == t_count - idx)
    kept = s & (~short | edge)
    return kept, kept & short


def first_last_year(mining: np.ndarray, years: Sequence[int], valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Year of the first and of the last mining of each pixel (uint16; 0 never, 65535 invalid)."""
    years_arr = np.asarray(years, dtype=np.uint16)
    ever = mining.any(axis=0)
    first = years_arr[mining.argmax(axis=0)]
    last = years_arr[len(years_arr) - 1 - mining[::-1].argmax(axis=0)]
    first = np.where(ever, first, np.uint16(NEVER))
    last = np.where(ever, last, np.uint16(NEVER))
    return (np.where(valid, first, np.uint16(YEAR_NODATA)).astype(np.uint16),
            np.where(valid, last, np.uint16(YEAR_NODATA)).astype(np.uint16))


def history_table(raw: np.ndarray, kept: np.ndarray, unconfirmed: np.ndarray, years: Sequence[int],
                  pixel_area_m2: float) -> pd.DataFrame:
    """One row per map: mapped and counted mining, new, resumed and ceased mining, net growth.

    Args:
        raw: bool stack ``(T, ...)``: mining as mapped (valid pixels only).
        kept: the same after :func:`confirm_runs`.
        unconfirmed: the part of ``kept`` not confirmed (runs at the ends of the record).
        years: year of each map, ascending.
        pixel_area_m2: area of one pixel.

    Returns:
        DataFrame with ``year``, ``mined_ha`` (counted), ``mapped_ha`` (as mapped), ``flicker_ha``
        (dropped), ``unconfirmed_ha``, ``new_ha`` (first mining of a pixel), ``resumed_ha`` (mined
        again after a gap), ``ceased_ha`` (mined in the previous map, not in this one), ``net_ha``,
        ``growth_pct`` (relative to the previous map), ``annual_growth_rate_pct`` (compound, per year
        between the two maps) and ``ever_mined_ha`` (mined in this or any earlier map). The first
        row has no new, resumed, ceased or growth values (nothing earlier to compare with).
    """
    ha = pixel_area_m2 / SQM_PER_HA
    ever_before = np.zeros(kept.shape[1:], bool)
    rows = []
    for t, year in enumerate(years):
        row: dict[str, Any] = {"year": int(year), "mined_ha": kept[t].sum() * ha, "mapped_ha": raw[t].sum() * ha}
        row["flicker_ha"] = row["mapped_ha"] - row["mined_ha"]
        row["unconfirmed_ha"] = unconfirmed[t].sum() * ha
        if t == 0:
            row.update(new_ha=np.nan, resumed_ha=np.nan, ceased_ha=np.nan, net_ha=np.nan, growth_pct=np.nan,
                       annual_growth_rate_pct=np.nan)
        else:
            started = kept[t] & ~kept[t - 1]
            row["new_ha"] = (started & ~ever_before).sum() * ha
            row["resumed_ha"] = (started & ever_before).sum() * ha
            row["ceased_ha"] = (kept[t - 1] & ~kept[t]).sum() * ha
            g = growth(rows[-1]["mined_ha"], row["mined_ha"], int(years[t - 1]), int(year))
            row["net_ha"] = g["net_growth_ha"]
            row["growth_pct"] = np.nan if g["net_growth_pct"] is None else g["net_growth_pct"]
            rate = g["annual_growth_rate_pct"]
            row["annual_growth_rate_pct"] = np.nan if rate is None else rate
        ever_before |= kept[t]
        row["ever_mined_ha"] = ever_before.sum() * ha
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# the entry point


@dataclass
class HistoryResult:
    """What :func:`map_history` wrote and computed.

    Attributes:
        out_dir: the output folder.
        years: the years of the maps, ascending.
        confirm: the consecutive maps a run needed.
        table: the per-year table (``history.csv``).
        first_year_tif: year of first mining (COG).
        last_year_tif: year of last mining (COG).
        history_csv: path of the table.
        change: the change between the first and the last map (:func:`compare_maps`).
        summary: the ``history`` block of ``summary.json``.
        figures: figures written.
    """

    out_dir: Path
    years: list[int]
    confirm: int
    table: pd.DataFrame
    first_year_tif: Path
    last_year_tif: Path
    history_csv: Path
    change: ChangeResult
    summary: dict[str, Any]
    figures: list[Path] = field(default_factory=list)


def _dated(maps: Sequence[str | Path], years: Sequence[int] | None) -> list[tuple[int, BinaryMap]]:
    if len(maps) < 2:
        raise ChangeError(f"a history needs at least two maps, got {len(maps)}")
    if years is not None and len(years) != len(maps):
        raise ChangeError(f"{len(years)} years for {len(maps)} maps; give one year per map, in the same order")
    read = [read_binary_map(m) for m in maps]
    dated = []
    for i, m in enumerate(read):
        year = years[i] if years is not None else m.year
        if year is None:
            raise ChangeError(f"{m.path}: no year found (no summary.json year, no year in its name); give the years "
                              "of all maps in order (--years 2016,2018,...)")
        dated.append((int(year), m))
    dated.sort(key=lambda pair: pair[0])
    seen = [y for y, _ in dated]
    twice = sorted({y for y in seen if seen.count(y) > 1})
    if twice:
        raise ChangeError(f"more than one map for {', '.join(map(str, twice))}; give one map per year")
    return dated


def _grid_of_all(maps: Sequence[BinaryMap]) -> Grid:
    """The common grid of many maps: pairwise, each further map narrowing the overlap."""
    grid = common_grid(maps[0], maps[1])
    for m in maps[2:]:
        shape = (grid.height, grid.width)
        view = BinaryMap(Path(f"<grid of {maps[0].path.name}>"), np.broadcast_to(np.uint8(0), shape), grid.crs,
                         grid.transform)
        grid = common_grid(view, m)
    return grid


def map_history(
    maps: Sequence[str | Path],
    out_dir: str | Path,
    years: Sequence[int] | None = None,
    confirm: int = DEFAULT_CONFIRM,
    zones: str | Path | gpd.GeoDataFrame | None = None,
    zone_field: str | None = None,
    min_area_ha: float = 0.0,
    figures: bool = True,
    reference: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = True,
) -> HistoryResult:
    """The mining history of many dated maps, and the change between the first and the last.

    Args:
        maps: two or more binary mine maps (``smallmines map`` folders, ``mines.tif`` or 0/1 rasters),
            any order, any grids.
        out_dir: output folder (created).
        years: year of each map, in the order of ``maps``; None reads each map's ``summary.json`` or name.
        confirm: consecutive maps a run of mining needs to count (see the module docstring); 1 keeps
            every map as mapped.
        zones: polygons for zonal statistics of the first-to-last change (see :func:`compare_maps`).
        zone_field: attribute naming the zones.
        min_area_ha: smallest change polygon kept in ``change.gpkg``.
        figures: also write ``figures/history`` (and the change figures) as PNG and PDF.
        reference: a labelled sample of the first-to-last change map (see :func:`compare_maps`).
        progress: ``progress(done, total)`` after each map is aligned.
        overwrite: replace the outputs of an earlier run in ``out_dir`` (the command line refuses by
            default, ``--overwrite``).

    Returns:
        The :class:`HistoryResult`.

    Raises:
        MapNotFoundError: a map does not exist.
        DataFormatError: a map is not binary or has no CRS.
        ChangeError: fewer than two maps, a map without a year, two maps of one year, maps that do
            not overlap, or ``confirm`` below 1.

    .. versionadded:: 0.2
    """
    from smallmines.analysis.change import compare_maps

    out = Path(out_dir)
    refuse_overwrite([out / "summary.json", out / "change.tif", out / "history.csv"], overwrite)
    if confirm < 1:
        raise ChangeError(f"confirm {confirm} must be 1 or more (1 keeps every map as it is)")
    dated = _dated(maps, years)
    year_list = [y for y, _ in dated]
    grid = _grid_of_all([m for _, m in dated])
    stack = np.empty((len(dated), grid.height, grid.width), np.uint8)
    for t, (_, m) in enumerate(dated):
        stack[t] = align(m, grid)
        if progress is not None:
            progress(t + 1, len(dated))
    valid = (stack != MAP_NODATA).all(axis=0)
    if not valid.any():
        raise ChangeError(f"the {len(dated)} maps share no pixel that is valid in all of them")
    raw = (stack == 1) & valid
    del stack
    kept, unconfirmed = confirm_runs(raw, confirm)
    table = history_table(raw, kept, unconfirmed, year_list, grid.pixel_area_m2)
    first, last = first_last_year(kept, year_list, valid)
    logger.info("history of %d maps (%s) on %d x %d pixels; confirm=%d dropped %.1f ha of flickers", len(dated),
                ", ".join(map(str, year_list)), grid.width, grid.height, confirm, table["flicker_ha"].sum())

    change = compare_maps(dated[0][1].path, dated[-1][1].path, out, year_list[0], year_list[-1], zones=zones,
                          zone_field=zone_field, min_area_ha=min_area_ha, figures=figures, reference=reference,
                          overwrite=True)
    tags = {"years": ",".join(map(str, year_list)), "confirm": str(confirm), "never": str(NEVER)}
    first_tif = write_cog(out / "first_year.tif", first, grid.crs, grid.transform, YEAR_NODATA, tags=tags,
                          description=f"year first mapped as mining (0 never), {year_list[0]}-{year_list[-1]}")
    last_tif = write_cog(out / "last_year.tif", last, grid.crs, grid.transform, YEAR_NODATA, tags=tags,
                         description=f"year last mapped as mining (0 never), {year_list[0]}-{year_list[-1]}")
    history_csv = _write_csv(out / "history.csv", table)
    block = _summary_block(table, year_list, confirm, valid.sum() * grid.pixel_area_m2 / SQM_PER_HA,
                           [str(m.path) for _, m in dated])
    change.summary["history"] = block
    _write_json(change.summary_json, _clean(change.summary))
    result = HistoryResult(out, year_list, confirm, table, first_tif, last_tif, history_csv, change, block)
    if figures:
        from smallmines.analysis import figures as fig

        result.figures = fig.save_figure(fig.history_figure(table, confirm), out / "figures" / "history")
        result.figures += fig.save_figure(fig.history_maps_figure(kept, year_list, grid.transform, valid),
                                          out / "figures" / "history_maps")
    return result


def _summary_block(table: pd.DataFrame, years: list[int], confirm: int, valid_ha: float,
                   inputs: list[str]) -> dict[str, Any]:
    first, last = table.iloc[0], table.iloc[-1]
    return {
        "years": years,
        "maps": inputs,
        "confirm": confirm,
        "valid_ha": valid_ha,
        "ever_mined_ha": float(last["ever_mined_ha"]),
        "flicker_ha": float(table["flicker_ha"].sum()),
        "unconfirmed_first_ha": float(first["unconfirmed_ha"]),
        "unconfirmed_last_ha": float(last["unconfirmed_ha"]),
        "per_year": table.to_dict(orient="records"),
        **growth(float(first["mined_ha"]), float(last["mined_ha"]), years[0], years[-1]),
    }
