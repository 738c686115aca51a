"""Static figures of change (matplotlib): change maps, area bars, zones and tile growth, and the figure style.

Every function returns a :class:`matplotlib.figure.Figure` without showing it; :func:`save_figure`
writes PNG and PDF for papers. Figures are built on ``Figure`` objects, not ``pyplot``, so library
code keeps no global figure state and runs headless. Colours come from :mod:`smallmines.legend`, the
single source for the change raster's colour table, the web map and these figures.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import BoundaryNorm, LinearSegmentedColormap, ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from smallmines.legend import CHANGE_COLOURS, CHANGE_NODATA, CLASS_KEYS, TILE_STATUS, YEAR_COLOURS, ChangeClass

if TYPE_CHECKING:
    import geopandas as gpd
    from rasterio.transform import Affine

logger = logging.getLogger(__name__)


GROWTH_CMAP = LinearSegmentedColormap.from_list(
    "smallmines_growth", [CHANGE_COLOURS[ChangeClass.CEASED], "#f7f7f7", CHANGE_COLOURS[ChangeClass.NEW]]
)
"""Diverging colours of growth: blue where mining shrank, red where it grew (the change colours)."""

_RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "figure.dpi": 100,
    "pdf.fonttype": 42,
    "svg.fonttype": "none",
}


@contextmanager
def style() -> Iterator[None]:
    """The smallmines figure style (applied while figures are built)."""
    with mpl.rc_context(_RC):
        yield


def change_cmap() -> tuple[ListedColormap, BoundaryNorm]:
    """Colormap and norm that draw change codes 0-3 in the scheme's colours."""
    cmap = ListedColormap([CHANGE_COLOURS[c] for c in ChangeClass])
    cmap = cmap.with_extremes(bad=(0, 0, 0, 0))
    return cmap, BoundaryNorm(np.arange(-0.5, len(ChangeClass) + 0.5), cmap.N)


# --------------------------------------------------------------------------------------------
# pure array helpers


CHANGE_PRIORITY = np.array([1, 4, 2, 3], np.uint8)
"""Rank of each change class when pixels are merged for display: new > ceased > persistent > none."""


def downsample_classes(change: np.ndarray, factor: int) -> np.ndarray:
    """Shrink a change raster by an integer factor, keeping the most important class of each block.

    A small new mine stays visible on an overview instead of vanishing under nearest neighbour:
    new mining wins over ceased, ceased over persistent, any class over no mining, and a block is
    nodata only when all of it is.
    """
    if factor <= 1:
        return change
    h, w = (change.shape[0] // factor) * factor, (change.shape[1] // factor) * factor
    rank = np.zeros(change.shape, np.uint8)
    valid = change != CHANGE_NODATA
    rank[valid] = CHANGE_PRIORITY[change[valid]]
    blocks = rank[:h, :w].reshape(h // factor, factor, w // factor, factor).max(axis=(1, 3))
    inverse = np.full(5, CHANGE_NODATA, np.uint8)
    inverse[CHANGE_PRIORITY] = np.arange(len(CHANGE_PRIORITY), dtype=np.uint8)
    return inverse[blocks]

# --------------------------------------------------------------------------------------------
# saving


def save_figure(fig: Figure, stem: str | Path, formats: Sequence[str] = ("png", "pdf"), dpi: int = 200) -> list[Path]:
    """Save a figure as ``stem.png``, ``stem.pdf`` ... atomically; returns the paths written."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{fmt}", dir=path.parent)
        os.close(fd)
        try:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", facecolor="white")
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        written.append(path)
    logger.debug("figure written: %s", ", ".join(str(p) for p in written))
    return written


# --------------------------------------------------------------------------------------------
# change figures


def _fmt_ha(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    sign = "+" if signed else ""
    return f"{value:{sign},.0f} ha" if abs(value) >= 100 else f"{value:{sign},.1f} ha"


def _fmt_pct(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.1f} %" if signed else f"{value:.1f} %"


def _scale_bar(ax: Any, extent_km: float) -> None:
    """A round-length scale bar in the lower left (axes in km)."""
    target = extent_km / 5
    if target <= 0:
        return
    magnitude = 10 ** math.floor(math.log10(target))
    length = max(s * magnitude for s in (1, 2, 5) if s * magnitude <= target) if target >= magnitude else magnitude
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    x, y = x0 + 0.05 * (x1 - x0), y0 + 0.06 * (y1 - y0)
    ax.plot([x, x + length], [y, y], color="black", lw=3, solid_capstyle="butt")
    ax.plot([x, x + length], [y, y], color="white", lw=1.2, solid_capstyle="butt")
    label = f"{length:g} km" if length >= 1 else f"{length * 1000:g} m"
    ax.text(x + length / 2, y + 0.02 * (y1 - y0), label, ha="center", va="bottom", fontsize=8,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})


def change_map_figure(
    change: np.ndarray,
    transform: Affine,
    year_a: int,
    year_b: int,
    summary: Mapping[str, Any] | None = None,
    max_pixels: int = 1600,
) -> Figure:
    """Map of the change classes with a legend (areas when ``summary`` is given) and a scale bar.

    Args:
        change: change codes (0-3, 255 nodata).
        transform: affine transform of ``change`` (projected, metres).
        year_a: first year.
        year_b: second year.
        summary: the ``summary`` of :func:`smallmines.analysis.change.compare_maps` (adds hectares to the legend).
        max_pixels: larger rasters are reduced (keeping the most important class per block).
    """
    factor = max(1, math.ceil(max(change.shape) / max_pixels))
    shown = downsample_classes(change, factor)
    h, w = change.shape
    left, top = transform.c / 1000, transform.f / 1000
    right, bottom = left + w * transform.a / 1000, top + h * transform.e / 1000
    cmap, norm = change_cmap()
    with style():
        aspect = h / max(w, 1)
        fig = Figure(figsize=(7.2, max(3.5, min(9.0, 5.6 * aspect + 0.8))), layout="constrained")
        ax = fig.add_subplot()
        ax.set_facecolor("white")
        ax.imshow(np.ma.masked_equal(shown, CHANGE_NODATA), cmap=cmap, norm=norm, interpolation="nearest",
                  extent=(left, right, bottom, top))
        ax.set_xlabel("Easting (km)")
        ax.set_ylabel("Northing (km)")
        ax.set_title(f"Mining change {year_a}\u2013{year_b}", loc="left")
        handles = []
        for c in (ChangeClass.NEW, ChangeClass.PERSISTENT, ChangeClass.CEASED, ChangeClass.NO_MINING):
            label = c.label
            if summary:
                cls = summary["classes"][CLASS_KEYS[c]]
                label = f"{label}  {_fmt_ha(cls['area_ha'])} ({_fmt_pct(cls['pct_valid'])})"
            handles.append(Patch(facecolor=CHANGE_COLOURS[c], edgecolor="#555555", linewidth=0.4, label=label))
        if (change == CHANGE_NODATA).any():
            handles.append(Patch(facecolor="white", edgecolor="#555555", linewidth=0.4, label="nodata"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="class  area (% of valid)",
                  title_fontsize=8, alignment="left")
        if summary:
            note = (f"net growth {_fmt_ha(summary.get('net_growth_ha'), True)} "
                    f"({_fmt_pct(summary.get('net_growth_pct'), True)})\n"
                    f"annual growth rate {_fmt_pct(summary.get('annual_growth_rate_pct'), True)} per year")
            ax.text(1.03, 0.0, note, transform=ax.transAxes, va="bottom", ha="left", fontsize=8)
        _scale_bar(ax, right - left)
    return fig


def growth_figure(summary: Mapping[str, Any], title: str | None = None) -> Figure:
    """Mined area in each year, split into the change classes, with net and annual growth.

    The first bar stacks persistent and ceased mining (all mining of the first year), the second
    persistent and new (all mining of the second year), so the chart shows where growth came from.

    Args:
        summary: ``summary`` of :func:`~smallmines.analysis.change.compare_maps` or
            :func:`~smallmines.analysis.tiles.dataset_change` (``classes``, ``year_a``, ``year_b``, growth).
        title: figure title (default: "Mined area").
    """
    ya, yb = summary["year_a"], summary["year_b"]
    area = {c: float(summary["classes"][CLASS_KEYS[c]]["area_ha"]) for c in ChangeClass}
    with style():
        fig = Figure(figsize=(5.2, 3.6), layout="constrained")
        ax = fig.add_subplot()
        x = np.array([0.0, 1.0])
        persistent = np.array([area[ChangeClass.PERSISTENT]] * 2)
        top_part = np.array([area[ChangeClass.CEASED], area[ChangeClass.NEW]])
        ax.bar(x, persistent, width=0.55, color=CHANGE_COLOURS[ChangeClass.PERSISTENT], label="persistent mining",
               edgecolor="white", linewidth=0.6)
        ax.bar(x[0], top_part[0], bottom=persistent[0], width=0.55, color=CHANGE_COLOURS[ChangeClass.CEASED],
               label=f"ceased by {yb}", edgecolor="white", linewidth=0.6)
        ax.bar(x[1], top_part[1], bottom=persistent[1], width=0.55, color=CHANGE_COLOURS[ChangeClass.NEW],
               label=f"new since {ya}", edgecolor="white", linewidth=0.6)
        totals = persistent + top_part
        for xi, total in zip(x, totals, strict=True):
            ax.text(xi, total, _fmt_ha(total), ha="center", va="bottom", fontsize=9, fontweight="bold")
        ax.set_xticks(x, [str(ya), str(yb)])
        ax.set_ylabel("mined area (ha)")
        ax.set_xlim(-0.6, 2.4)
        ax.set_ylim(0, max(totals.max(), 1e-9) * 1.18)
        ax.legend(loc="upper right", bbox_to_anchor=(1.0, 0.62))
        note = (f"net {_fmt_ha(summary.get('net_growth_ha'), True)}\n"
                f"{_fmt_pct(summary.get('net_growth_pct'), True)} in {yb - ya} years\n"
                f"{_fmt_pct(summary.get('annual_growth_rate_pct'), True)} per year")
        ax.text(1.0, 1.0, note, transform=ax.transAxes, ha="right", va="top", fontsize=9,
                bbox={"boxstyle": "round,pad=0.4", "fc": "#f4f4f4", "ec": "none"})
        ax.set_title(title or "Mined area", loc="left")
    return fig


def zones_figure(zones: pd.DataFrame, year_a: int, year_b: int, max_zones: int = 25) -> Figure:
    """Dumbbell chart: mined area per zone in each year, sorted by the second year.

    Zones only partly covered by the maps are starred with their covered share; zones outside the
    maps are listed in a note.
    """
    col_a, col_b = f"mining_{year_a}_ha", f"mining_{year_b}_ha"
    inside = zones[zones["coverage"] != "outside"].copy()
    inside = inside.sort_values(col_b, ascending=True).tail(max_zones)
    outside = zones.loc[zones["coverage"] == "outside", "zone"].astype(str).tolist()
    with style():
        fig = Figure(figsize=(6.4, 1.2 + 0.32 * max(len(inside), 1)), layout="constrained")
        ax = fig.add_subplot()
        y = np.arange(len(inside))
        a = inside[col_a].astype(float).to_numpy()
        b = inside[col_b].astype(float).to_numpy()
        for yi, ai, bi in zip(y, a, b, strict=True):
            colour = CHANGE_COLOURS[ChangeClass.NEW] if bi > ai else CHANGE_COLOURS[ChangeClass.CEASED]
            ax.annotate("", xy=(bi, yi), xytext=(ai, yi),
                        arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.4, "shrinkA": 4, "shrinkB": 4})
        ax.scatter(a, y, color=YEAR_COLOURS[0], zorder=3, s=28, label=str(year_a))
        ax.scatter(b, y, color=YEAR_COLOURS[1], zorder=3, s=28, label=str(year_b))
        labels = []
        for _, row in inside.iterrows():
            label = str(row["zone"])
            if row["coverage"] == "partial":
                label += f" *{100 * row['covered_fraction']:.0f}%"
            labels.append(label)
        ax.set_yticks(y, labels)
        xmax = max(float(np.nanmax(np.r_[a, b, 0])), 1e-9)
        for yi, row in zip(y, inside.itertuples(), strict=True):
            rate = row.annual_growth_rate_pct
            text = _fmt_ha(row.net_growth_ha, True)
            if rate is not None and not (isinstance(rate, float) and math.isnan(rate)):
                text += f", {rate:+.1f} %/yr"
            ax.text(xmax * 1.04, yi, text, va="center", fontsize=7.5, color="#444444")
        ax.set_xlim(0, xmax * 1.45)
        ax.set_xlabel("mined area (ha)")
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, borderaxespad=0.2)
        ax.set_title("Mined area per zone", loc="left")
        notes = []
        if (inside["coverage"] == "partial").any():
            notes.append("* share of the zone covered by valid pixels of both maps")
        if outside:
            notes.append("outside the maps: " + ", ".join(outside[:8]) + (" ..." if len(outside) > 8 else ""))
        if notes:
            fig.text(0.01, 0.0, "\n".join(notes), fontsize=7, color="#555555", va="bottom")
            fig.get_layout_engine().set(h_pad=0.25)
    return fig


def tile_growth_figure(tiles: gpd.GeoDataFrame, year_a: int, year_b: int) -> Figure:
    """Tile footprints coloured by the change of their labelled mining share, plus counts by status.

    Args:
        tiles: footprints from :func:`smallmines.analysis.tiles.tiles_frame` (``growth_pp``, ``status``).
        year_a: first year.
        year_b: second year.
    """
    geographic = tiles.crs is not None and tiles.crs.is_geographic
    scale = 1.0 if geographic else 1000.0
    with style():
        fig = Figure(figsize=(9.0, 4.8), layout="constrained")
        grid = fig.add_gridspec(1, 2, width_ratios=(2.3, 1))
        ax = fig.add_subplot(grid[0])
        bars = fig.add_subplot(grid[1])
        growth_pp = tiles["growth_pp"].astype(float).to_numpy()
        limit = float(np.nanpercentile(np.abs(growth_pp), 98)) if np.isfinite(growth_pp).any() else 1.0
        limit = max(limit, 1.0)
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
        none = (tiles["status"] == "no mining").to_numpy()
        bounds = tiles.bounds.to_numpy() / scale
        from matplotlib.collections import PatchCollection
        from matplotlib.patches import Rectangle

        def rects(sel: np.ndarray) -> list[Rectangle]:
            return [Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1]) for b in bounds[sel]]

        extent = max(np.ptp(bounds[:, [0, 2]]), np.ptp(bounds[:, [1, 3]]), 1e-9)
        tile = float(np.median(bounds[:, 2] - bounds[:, 0]))
        values = np.clip(growth_pp[~none], -limit, limit)
        if tile / extent >= 0.025:  # footprints are large enough to read
            ax.add_collection(PatchCollection(rects(none), facecolor="#d9d9d9", edgecolor="#bdbdbd", linewidth=0.3))
            coll = PatchCollection(rects(~none), cmap=GROWTH_CMAP, norm=norm, edgecolor="#555555", linewidth=0.3)
            coll.set_array(values)
            ax.add_collection(coll)
        else:  # tiles far apart: one square marker per tile, drawn at a readable size
            cx, cy = (bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2
            ax.scatter(cx[none], cy[none], marker="s", s=22, c="#d9d9d9", edgecolors="#9e9e9e", linewidths=0.4)
            order = np.argsort(np.abs(values))  # strongest change drawn on top
            coll = ax.scatter(cx[~none][order], cy[~none][order], marker="s", s=30, c=values[order], cmap=GROWTH_CMAP,
                              norm=norm, edgecolors="#444444", linewidths=0.4)
            ax.text(0.0, -0.13, "tiles drawn enlarged (squares) for legibility", transform=ax.transAxes, fontsize=7,
                    color="#666666")
        pad = 0.03 * extent
        ax.set_xlim(bounds[:, 0].min() - pad, bounds[:, 2].max() + pad)
        ax.set_ylim(bounds[:, 1].min() - pad, bounds[:, 3].max() + pad)
        ax.set_aspect("equal")
        ax.set_xlabel("longitude" if geographic else "Easting (km)")
        ax.set_ylabel("latitude" if geographic else "Northing (km)")
        ax.set_title(f"Labelled mining per tile, {year_a}\u2192{year_b}", loc="left")
        cbar = fig.colorbar(coll, ax=ax, shrink=0.8, extend="both")
        cbar.set_label("change in mining share (percentage points)")
        counts = tiles["status"].value_counts()
        order = [s for s in TILE_STATUS if s != "no mining"]
        colours = {"appeared": CHANGE_COLOURS[ChangeClass.NEW], "grew": "#f4a582", "unchanged": "#bdbdbd",
                   "shrank": "#92c5de", "vanished": CHANGE_COLOURS[ChangeClass.CEASED]}
        values = [int(counts.get(s, 0)) for s in order]
        bars.barh(order[::-1], values[::-1], color=[colours[s] for s in order[::-1]])
        for yi, v in enumerate(values[::-1]):
            bars.text(v, yi, f" {v}", va="center", fontsize=8)
        bars.set_xlabel("tiles")
        bars.set_title(f"{len(tiles)} tiles ({int(counts.get('no mining', 0))} without mining)", loc="left")
        bars.set_xlim(0, max(values + [1]) * 1.25)
    return fig




# --------------------------------------------------------------------------------------------
# multi-year history


RESUMED_COLOUR = "#f4a582"
"""Mining that resumed where it had stopped (between new red and the grey of no mining)."""


def history_figure(history: pd.DataFrame, confirm: int | None = None, title: str | None = None) -> Figure:
    """Mined area in every year, split into continuing, resumed and new mining, with the area as mapped.

    Args:
        history: the table of :func:`smallmines.analysis.history.history_table` (``year``, ``mined_ha``,
            ``new_ha``, ``resumed_ha``, ``mapped_ha``, ``unconfirmed_ha``: hatched).
        confirm: the consecutive maps a run needed (named in the note).
        title: figure title (default: "Mining history").
    """
    years = history["year"].astype(int).to_numpy()
    mined = history["mined_ha"].astype(float).to_numpy()
    new = history["new_ha"].astype(float).fillna(0.0).to_numpy()
    resumed = history["resumed_ha"].astype(float).fillna(0.0).to_numpy()
    continuing = mined - new - resumed
    x = np.arange(len(years), dtype=float)
    with style():
        fig = Figure(figsize=(max(5.2, 0.9 * len(years) + 2.4), 3.8), layout="constrained")
        ax = fig.add_subplot()
        ax.bar(x, continuing, width=0.6, color=CHANGE_COLOURS[ChangeClass.PERSISTENT], label="mined before",
               edgecolor="white", linewidth=0.6)
        ax.bar(x, resumed, bottom=continuing, width=0.6, color=RESUMED_COLOUR, label="resumed",
               edgecolor="white", linewidth=0.6)
        ax.bar(x, new, bottom=continuing + resumed, width=0.6, color=CHANGE_COLOURS[ChangeClass.NEW],
               label="new (first mined)", edgecolor="white", linewidth=0.6)
        if "unconfirmed_ha" in history and history["unconfirmed_ha"].max() > 0:
            unconfirmed = history["unconfirmed_ha"].astype(float).to_numpy()
            ax.bar(x, unconfirmed, bottom=mined - unconfirmed, width=0.6, fill=False, hatch="////",
                   edgecolor="#555555", linewidth=0.0, label="unconfirmed")
        if "mapped_ha" in history and (history["mapped_ha"] - history["mined_ha"]).abs().max() > 0:
            ax.plot(x, history["mapped_ha"].astype(float), "k_", markersize=18, mew=1.2, label="as mapped")
        for xi, total in zip(x, mined, strict=True):
            ax.text(xi, total, _fmt_ha(total), ha="center", va="bottom", fontsize=8, fontweight="bold")
        ax.set_xticks(x, [str(y) for y in years])
        ax.set_ylabel("mined area (ha)")
        top = max(float(np.nanmax(np.r_[mined, history.get("mapped_ha", pd.Series([0.0])).astype(float)])), 1e-9)
        ax.set_ylim(0, top * 1.2)
        ax.legend(loc="upper left", ncols=2)
        if confirm is not None and confirm > 1:
            fig.text(0.01, 0.0, f"mining counts after {confirm} consecutive maps (one-off flickers dropped; the "
                     "runs at either end stay unconfirmed)", fontsize=7, color="#555555", va="bottom")
            fig.get_layout_engine().set(h_pad=0.25)
        ax.set_title(title or "Mining history", loc="left")
    return fig


def history_maps_figure(kept: np.ndarray, years: Sequence[int], transform: Affine, valid: np.ndarray,
                        max_pixels: int = 500, columns: int = 4) -> Figure:
    """Small multiples: every map's mining as change from the map before (new red, continuing gold, stopped blue).

    Args:
        kept: bool stack ``(T, H, W)`` of the mining that counts (after the flicker filter).
        years: the year of each map.
        transform: affine transform of the grid (projected, metres).
        valid: pixels valid in every map.
        max_pixels: larger panels are reduced (keeping the most important class per block).
        columns: panels per row.
    """
    t_count, h, w = kept.shape
    factor = max(1, math.ceil(max(h, w) / max_pixels))
    left, top = transform.c / 1000, transform.f / 1000
    extent = (left, left + w * transform.a / 1000, top + h * transform.e / 1000, top)
    cmap, norm = change_cmap()
    cols = min(columns, t_count)
    rows = math.ceil(t_count / cols)
    with style():
        fig = Figure(figsize=(2.6 * cols + 0.4, 2.6 * rows * max(h / max(w, 1), 0.4) + 0.9), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
        for t, ax in enumerate(axes.ravel()):
            if t >= t_count:
                ax.set_axis_off()
                continue
            codes = np.full((h, w), ChangeClass.NO_MINING, np.uint8)
            if t == 0:
                codes[kept[0]] = ChangeClass.PERSISTENT
                title = f"{years[0]}"
            else:
                codes[kept[t] & kept[t - 1]] = ChangeClass.PERSISTENT
                codes[kept[t] & ~kept[t - 1]] = ChangeClass.NEW
                codes[~kept[t] & kept[t - 1]] = ChangeClass.CEASED
                title = f"{years[t]} (vs {years[t - 1]})"
            codes[~valid] = CHANGE_NODATA
            shown = downsample_classes(codes, factor)
            ax.imshow(np.ma.masked_equal(shown, CHANGE_NODATA), cmap=cmap, norm=norm, interpolation="nearest",
                      extent=extent)
            ax.set_title(title, loc="left", fontsize=9)
            ax.tick_params(labelsize=7)
        handles = [Patch(facecolor=CHANGE_COLOURS[c], edgecolor="#555555", linewidth=0.4, label=label)
                   for c, label in ((ChangeClass.NEW, "started"), (ChangeClass.PERSISTENT, "mining"),
                                    (ChangeClass.CEASED, "stopped"))]
        fig.legend(handles=handles, loc="outside lower center", ncols=3)
        fig.suptitle("Mining in every map", x=0.01, ha="left", fontweight="bold", fontsize=10)
    return fig
