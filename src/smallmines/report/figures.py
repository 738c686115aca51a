"""Static figures of training and data (matplotlib): curves, confusion, samples, dataset overview, tile pairs.

Every function returns a :class:`matplotlib.figure.Figure` without showing it. The change figures
(:mod:`smallmines.analysis.figures`) and the colours (:mod:`smallmines.legend`) are re-exported here,
so this module offers every figure of the project.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from smallmines.analysis.figures import (
    GROWTH_CMAP,
    change_cmap,
    change_map_figure,
    downsample_classes,
    growth_figure,
    save_figure,
    style,
    tile_growth_figure,
    zones_figure,
)
from smallmines.legend import (
    CHANGE_COLOURS,
    CHANGE_NODATA,
    ERROR_COLOURS,
    MINING_COLOUR,
    NODATA_COLOUR,
    PROBABILITY_CMAP,
    YEAR_COLOURS,
    hex_to_rgba,
)

__all__ = [
    "CHANGE_COLOURS", "ERROR_COLOURS", "GROWTH_CMAP", "MINING_COLOUR", "NODATA_COLOUR", "PROBABILITY_CMAP",
    "YEAR_COLOURS", "change_cmap", "change_map_figure", "confusion_figure", "dataset_overview_figure",
    "downsample_classes", "error_image", "growth_figure", "hex_to_rgba", "rgb_stretch", "samples_figure",
    "save_figure", "style", "tile_growth_figure", "tile_pairs_figure", "training_curves_figure", "zones_figure",
]

logger = logging.getLogger(__name__)


def rgb_stretch(rgb: np.ndarray, percentiles: tuple[float, float] = (2, 98), gamma: float = 1.0) -> np.ndarray:
    """Stretch a ``(3, H, W)`` raw image (NaN nodata) to ``(H, W, 3)`` floats in 0-1.

    One pair of percentiles over all three bands keeps the colour balance. NaN becomes 0 (black).
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    finite = rgb[np.isfinite(rgb)]
    if finite.size == 0:
        return np.zeros((*rgb.shape[1:], 3), np.float32)
    lo, hi = np.percentile(finite, percentiles)
    out = np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1)
    if gamma != 1.0:
        out = out ** (1.0 / gamma)
    out = np.where(np.isfinite(out), out, 0)
    return np.moveaxis(out, 0, -1).astype(np.float32)


def _mask_overlay(rgb: np.ndarray | None, mask: np.ndarray, colour: str = MINING_COLOUR) -> np.ndarray:
    """RGB image dimmed to grey with mining pixels in ``colour`` and nodata in grey."""
    h, w = mask.shape
    base = np.full((h, w, 3), 0.12, np.float32) if rgb is None else 0.25 + 0.35 * rgb.mean(axis=2, keepdims=True)
    out = np.broadcast_to(base, (h, w, 3)).copy()
    out[mask == 1] = to_rgba(colour)[:3]
    out[mask == CHANGE_NODATA] = to_rgba(NODATA_COLOUR)[:3]
    return out


def error_image(rgb: np.ndarray | None, truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Errors over a dimmed image: TP white, FP magenta, FN cyan; nodata (truth 255) grey."""
    h, w = truth.shape
    base = np.full((h, w, 3), 0.1, np.float32) if rgb is None else 0.15 + 0.3 * rgb.mean(axis=2, keepdims=True)
    out = np.broadcast_to(base, (h, w, 3)).copy()
    valid = truth != CHANGE_NODATA
    out[valid & (truth == 1) & (prediction == 1)] = to_rgba(ERROR_COLOURS["tp"])[:3]
    out[valid & (truth == 0) & (prediction == 1)] = to_rgba(ERROR_COLOURS["fp"])[:3]
    out[valid & (truth == 1) & (prediction != 1)] = to_rgba(ERROR_COLOURS["fn"])[:3]
    out[~valid] = to_rgba(NODATA_COLOUR)[:3]
    return out


# --------------------------------------------------------------------------------------------
# training and evaluation figures


def _epoch_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Lightning CSVLogger rows (NaN-padded, per step or per epoch) -> one row per epoch."""
    if "epoch" not in metrics.columns:
        raise ValueError(f"metrics table has no 'epoch' column (columns: {', '.join(metrics.columns)})")
    numeric = metrics.drop(columns=[c for c in ("step",) if c in metrics.columns]).apply(pd.to_numeric,
                                                                                          errors="coerce")
    table = numeric.groupby("epoch").mean(numeric_only=True)
    # prefer epoch aggregates over step values: train_loss_epoch -> train_loss
    for col in list(table.columns):
        if col.endswith("_epoch"):
            table[col[: -len("_epoch")]] = table[col]
    return table[[c for c in table.columns if not c.endswith(("_step", "_epoch"))]]


def training_curves_figure(metrics: pd.DataFrame, monitor: str = "val_iou_mining") -> Figure:
    """Loss and validation scores per epoch from a Lightning ``metrics.csv``.

    Args:
        metrics: the CSV as a DataFrame (``epoch``, ``train_loss``, ``val_loss``, ``val_*``).
        monitor: the score whose best epoch is marked.
    """
    table = _epoch_table(metrics)
    losses = [c for c in table.columns if c.endswith("loss") and table[c].notna().any()]
    scores = [c for c in table.columns if c.startswith("val_") and not c.endswith("loss")
              and table[c].notna().any()]
    preferred = ["val_iou_mining", "val_miou", "val_f1_mining", "val_precision_mining", "val_recall_mining"]
    scores = [c for c in preferred if c in scores] or scores[:5]
    with style():
        fig = Figure(figsize=(8.4, 3.2), layout="constrained")
        ax_loss, ax_score = fig.subplots(1, 2)
        palette = ["#1b1b1b", "#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00"]
        for i, col in enumerate(losses):
            series = table[col].dropna()
            ax_loss.plot(series.index, series.values, marker="o" if len(series) < 30 else None, ms=3,
                         color=palette[i % len(palette)], label=col.replace("_", " "))
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("loss")
        ax_loss.set_title("Loss", loc="left")
        if losses:
            ax_loss.legend()
        for i, col in enumerate(scores):
            series = table[col].dropna()
            ax_score.plot(series.index, series.values, marker="o" if len(series) < 30 else None, ms=3,
                          color=palette[(i + 1) % len(palette)], label=col.removeprefix("val_").replace("_", " "))
        if monitor in table.columns and table[monitor].notna().any():
            best = table[monitor].idxmax()
            ax_score.axvline(best, color="#888888", lw=0.8, ls="--")
            ax_score.text(best, ax_score.get_ylim()[0], f" best epoch {best}", fontsize=7.5, color="#555555",
                          va="bottom")
        ax_score.set_xlabel("epoch")
        ax_score.set_ylabel("score")
        ax_score.set_title("Validation", loc="left")
        if scores:
            ax_score.legend()
    return fig


def confusion_figure(confusion: Sequence[Sequence[float]], title: str = "Confusion matrix") -> Figure:
    """2 x 2 confusion matrix ``[[TN, FP], [FN, TP]]`` with pixel counts and the share of each true class."""
    matrix = np.asarray(confusion, dtype=float)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    with style():
        fig = Figure(figsize=(3.6, 3.2), layout="constrained")
        ax = fig.add_subplot()
        ax.imshow(share, cmap="Greys", vmin=0, vmax=1.4)
        names = ["background", "mining"]
        for i in range(2):
            for j in range(2):
                ax.text(j, i, f"{share[i, j]:.1%}\n{matrix[i, j]:,.0f} px", ha="center", va="center", fontsize=9,
                        color="white" if share[i, j] > 0.75 else "black")
        ax.set_xticks([0, 1], names)
        ax.set_yticks([0, 1], names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.spines[:].set_visible(False)
        ax.set_title(title, loc="left")
    return fig


def samples_figure(samples: Sequence[Mapping[str, Any]]) -> Figure:
    """Rows of RGB | truth | prediction | errors for sample patches.

    Args:
        samples: dicts with ``rgb`` (H, W, 3 floats 0-1, or None), ``truth`` (H, W: 0/1/255),
            ``prediction`` (H, W: 0/1) and optionally ``title`` (left of the row).
    """
    n = max(len(samples), 1)
    with style():
        fig = Figure(figsize=(8.4, 2.15 * n + 0.5), layout="constrained")
        axes = np.atleast_2d(fig.subplots(n, 4))
        heads = ["true colour", "ground truth", "prediction", "errors"]
        for r, sample in enumerate(samples):
            rgb = sample.get("rgb")
            truth = np.asarray(sample["truth"])
            pred = np.asarray(sample["prediction"])
            pred_shown = np.where(truth == CHANGE_NODATA, CHANGE_NODATA, pred)
            panels = [rgb if rgb is not None else np.zeros((*truth.shape, 3)), _mask_overlay(rgb, truth),
                      _mask_overlay(rgb, pred_shown), error_image(rgb, truth, pred)]
            for c, (ax, panel) in enumerate(zip(axes[r], panels, strict=True)):
                ax.imshow(panel, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.spines[:].set_visible(False)
                if r == 0:
                    ax.set_title(heads[c])
            if sample.get("title"):
                axes[r][0].set_ylabel(sample["title"], fontsize=8)
        handles = [Patch(color=MINING_COLOUR, label="mining"), Patch(color=ERROR_COLOURS["tp"], label="true positive",
                                                                     ec="#999999"),
                   Patch(color=ERROR_COLOURS["fp"], label="false positive"),
                   Patch(color=ERROR_COLOURS["fn"], label="false negative"),
                   Patch(color=NODATA_COLOUR, label="nodata")]
        fig.legend(handles=handles, loc="outside lower center", ncols=5)
    return fig


# --------------------------------------------------------------------------------------------
# dataset figures

SHARE_BIN_LABELS = ("0", "0-1", "1-5", "5-10", "10-25", "25-50", ">50")


def dataset_overview_figure(shares: pd.DataFrame) -> Figure:
    """Patches per mining-share bin and year, and the mining share of each year.

    Args:
        shares: one row per patch with ``year`` and ``share`` (percent mining of valid pixels) and
            optionally ``mining_px`` and ``valid_px`` (for the pixel-weighted share).
    """
    from smallmines.data.splits import share_bin

    years = sorted(shares["year"].unique())
    colours = {y: YEAR_COLOURS[i % 2] if len(years) <= 2 else mpl.colormaps["viridis"](i / max(len(years) - 1, 1))
               for i, y in enumerate(years)}
    with style():
        fig = Figure(figsize=(8.4, 3.0), layout="constrained")
        ax_bins, ax_share = fig.subplots(1, 2, width_ratios=(2, 1))
        width = 0.8 / max(len(years), 1)
        for i, year in enumerate(years):
            sel = shares[shares["year"] == year]
            counts = np.bincount([share_bin(s) for s in sel["share"]], minlength=len(SHARE_BIN_LABELS))
            x = np.arange(len(SHARE_BIN_LABELS)) + (i - (len(years) - 1) / 2) * width
            ax_bins.bar(x, counts, width=width, color=colours[year], label=str(year))
        ax_bins.set_xticks(np.arange(len(SHARE_BIN_LABELS)), SHARE_BIN_LABELS)
        ax_bins.set_xlabel("mining share of the patch (%)")
        ax_bins.set_ylabel("patches")
        ax_bins.legend()
        ax_bins.set_title("Patches by mining share", loc="left")
        values = []
        for year in years:
            sel = shares[shares["year"] == year]
            if {"mining_px", "valid_px"} <= set(sel.columns) and sel["valid_px"].sum() > 0:
                values.append(100.0 * sel["mining_px"].sum() / sel["valid_px"].sum())
            else:
                values.append(float(sel["share"].mean()))
        bars = ax_share.bar([str(y) for y in years], values, color=[colours[y] for y in years], width=0.6)
        for bar, v in zip(bars, values, strict=True):
            ax_share.text(bar.get_x() + bar.get_width() / 2, v, f"{v:.1f} %", ha="center", va="bottom")
        ax_share.set_ylim(0, max(values + [1e-9]) * 1.2)
        ax_share.set_ylabel("mining (% of valid pixels)")
        ax_share.set_title("Mining share", loc="left")
    return fig


def tile_pairs_figure(pairs: Sequence[Mapping[str, Any]], year_a: int, year_b: int, columns: int = 2) -> Figure:
    """The same tiles in two years, true colour with the labelled mining outlined.

    Args:
        pairs: dicts with ``title``, ``rgb_a``/``rgb_b`` (H, W, 3 floats 0-1) and ``mask_a``/``mask_b``
            (H, W: 0/1/255).
        year_a: first year.
        year_b: second year.
        columns: tile pairs per row.
    """
    n = max(len(pairs), 1)
    rows = math.ceil(n / columns)
    with style():
        fig = Figure(figsize=(2.1 * 2 * columns, 2.35 * rows + 0.3), layout="constrained")
        axes = np.atleast_2d(fig.subplots(rows, 2 * columns))
        for ax in axes.ravel():
            ax.axis("off")
        fill = ListedColormap([(0, 0, 0, 0), to_rgba(MINING_COLOUR, 0.35)])
        for i, pair in enumerate(pairs):
            r, c = divmod(i, columns)
            for k, (suffix, year) in enumerate((("a", year_a), ("b", year_b))):
                ax = axes[r][2 * c + k]
                ax.imshow(pair[f"rgb_{suffix}"], interpolation="nearest")
                mask = np.asarray(pair[f"mask_{suffix}"])
                mining = (mask == 1).astype(float)
                ax.imshow(mining, cmap=fill, vmin=0, vmax=1, interpolation="nearest")
                if mining.any() and not mining.all():
                    ax.contour(mining, levels=[0.5], colors=[MINING_COLOUR], linewidths=0.9)
                ax.set_title(f"{pair.get('title', '')} {year}".strip() if k == 0 else str(year), fontsize=8,
                             fontweight="normal", loc="left")
                ax.axis("on")
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(True)
                    spine.set_color(YEAR_COLOURS[k])
                    spine.set_linewidth(1.5)
            if pair.get("caption"):
                axes[r][2 * c + 1].text(1.0, -0.02, pair["caption"], transform=axes[r][2 * c + 1].transAxes,
                                        ha="right", va="top", fontsize=7.5)
    return fig
