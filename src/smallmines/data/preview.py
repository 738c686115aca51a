"""A grid of patches for a first look at a dataset, in the style of the SmallMinesDS paper figure.

One row per patch: Sentinel-2 true colour (2-98 percentile stretch), Sentinel-1 VV backscatter
(grey), the DEM (terrain colours) and the mask (mining highlighted, nodata hatched grey). Each row
is titled with the patch id and its mining share. The figure is returned, never shown; it is built
without pyplot, so it works in any thread and on machines without a display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from smallmines.bands import BAND_NAMES, MASK_NODATA, RGB_BANDS
from smallmines.data.dataset import PatchSource, SmallMinesDS
from smallmines.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MINING_COLOUR = "#e8590c"
BACKGROUND_COLOUR = "#f3efe0"
NODATA_COLOUR = "#b0b0b0"
COLUMNS = ("Sentinel-2 true colour", "Sentinel-1 VV (dB)", "DEM (m)", "Mask")


def _stretch(values: np.ndarray, lo: float = 2, hi: float = 98) -> tuple[float, float]:
    """Percentiles of the finite values (0, 1 when there is none)."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0
    a, b = np.percentile(finite, (lo, hi))
    return float(a), float(b) if b > a else float(a) + 1e-6


def true_colour(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` RGB in 0-1 from a raw 13-band patch (NaN nodata becomes the nodata grey)."""
    rgb = image[[BAND_NAMES.index(b) for b in RGB_BANDS]].astype(np.float64)
    lo, hi = _stretch(rgb)
    out = np.clip((rgb - lo) / (hi - lo), 0, 1).transpose(1, 2, 0)
    grey = np.array([int(NODATA_COLOUR[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    out[np.isnan(rgb).any(axis=0)] = grey
    return out


def choose_patches(shares: dict[str, float], candidates: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """Pick ``n`` patch ids, two thirds with mining where possible, reproducibly; ordered by mining share.

    Args:
        shares: patch id -> mining percentage.
        candidates: the ids to choose from.
        n: how many.
        seed: seed of the draw.
    """
    rng = np.random.default_rng(seed)
    pool = sorted(candidates)
    mining = [p for p in pool if shares.get(p, 0.0) > 0]
    other = [p for p in pool if shares.get(p, 0.0) <= 0]
    want_mining = min(len(mining), max(math.ceil(2 * n / 3), n - len(other)))
    picked = list(rng.permutation(mining)[:want_mining]) if mining else []
    if other:
        picked += list(rng.permutation(other)[: n - len(picked)])
    return sorted((str(p) for p in picked), key=lambda p: (-shares.get(p, 0.0), p))


def preview_grid(
    data: str | Path | SmallMinesDS | PatchSource,
    n: int = 6,
    split: str | None = None,
    splits: str | Path = "official",
    seed: int = 0,
    splits_dir: str | Path | None = None,
    ids: Sequence[str] | None = None,
) -> Figure:
    """Draw ``n`` patches as rows of S2 true colour, S1 VV, DEM and mask.

    Args:
        data: a dataset path (zip, folder or pack), a :class:`SmallMinesDS` (its patches and split are
            used; raw bands are read whatever its band selection) or a :class:`PatchSource`.
        n: number of rows.
        split: only patches of this split (``train``, ``val``, ``test``); None for all.
        splits: split method or CSV used with ``split`` (see :func:`~smallmines.data.dataset.resolve_split`).
        seed: seed of the choice of patches.
        splits_dir: folder holding the official split files when not beside the data.
        ids: exactly these patch ids instead of a random choice.

    Returns:
        The matplotlib figure (not shown; save it with ``figure.savefig``).

    Raises:
        ConfigError: ``n`` below 1, unknown ids, or no patch to show.
    """
    if n < 1:
        raise ConfigError(f"n={n}: a preview needs at least one patch")
    if isinstance(data, SmallMinesDS):
        dataset = data
    else:
        dataset = SmallMinesDS(data, split=split, bands=list(BAND_NAMES), splits=splits, seed=seed,
                               splits_dir=splits_dir)
    source = dataset.source
    position = {source.ids[i]: i for i in dataset.indices}
    shares = source.shares
    if ids is None:
        chosen = choose_patches(shares, list(position), n, seed)
    else:
        unknown = [p for p in ids if p not in position]
        if unknown:
            raise ConfigError(f"patch ids {unknown[:5]} are not in this dataset{f' ({split})' if split else ''}")
        chosen = list(ids)
    if not chosen:
        raise ConfigError(f"{source.path}: no patch to preview{f' in split {split!r}' if split else ''}")
    return _draw([(pid, *source.read(position[pid]), shares.get(pid, 0.0)) for pid in chosen])


def _draw(rows: list[tuple[str, np.ndarray, np.ndarray, float]]) -> Figure:
    import matplotlib as mpl
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    grey = mpl.colormaps["gray"].with_extremes(bad=NODATA_COLOUR)
    # the land part of "terrain" (its lowest quarter is sea blue, which would read as water)
    terrain = ListedColormap(mpl.colormaps["terrain"](np.linspace(0.25, 1.0, 256)), "land").with_extremes(
        bad=NODATA_COLOUR)
    mask_cmap = ListedColormap([BACKGROUND_COLOUR, MINING_COLOUR]).with_extremes(bad=NODATA_COLOUR)
    vv_index, dem_index = BAND_NAMES.index("vv"), BAND_NAMES.index("dem")

    fig = Figure(figsize=(4 * 2.3, len(rows) * 2.3 + 0.7), layout="constrained")
    axes = fig.subplots(len(rows), 4, squeeze=False)
    with mpl.rc_context({"hatch.color": "#6e6e6e", "hatch.linewidth": 0.6}):
        for r, (pid, image, mask, share) in enumerate(rows):
            vv = image[vv_index]
            dem = image[dem_index]
            nodata = mask == MASK_NODATA
            ax_rgb, ax_vv, ax_dem, ax_mask = axes[r]
            ax_rgb.imshow(true_colour(image), interpolation="nearest")
            ax_vv.imshow(np.ma.masked_invalid(vv), cmap=grey, vmin=_stretch(vv)[0], vmax=_stretch(vv)[1],
                         interpolation="nearest")
            dlo, dhi = _stretch(dem, 1, 99)
            ax_dem.imshow(np.ma.masked_invalid(dem), cmap=terrain, vmin=dlo, vmax=dhi, interpolation="nearest")
            ax_dem.text(0.03, 0.04, f"{dlo:.0f}-{dhi:.0f} m", transform=ax_dem.transAxes, fontsize=7,
                        color="black", bbox={"facecolor": "white", "alpha": 0.7, "pad": 1.5, "linewidth": 0})
            ax_mask.imshow(np.ma.masked_where(nodata, mask), cmap=mask_cmap, vmin=0, vmax=1,
                           interpolation="nearest")
            if nodata.any():
                ax_mask.contourf(nodata.astype(float), levels=[0.5, 1.5], colors="none", hatches=["////"])
            ax_rgb.set_ylabel(f"{pid}\nmining {share:.1f} %", fontsize=9)
            for c, ax in enumerate(axes[r]):
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(COLUMNS[c], fontsize=10)
        legend = [Patch(facecolor=MINING_COLOUR, label="mining"),
                  Patch(facecolor=BACKGROUND_COLOUR, edgecolor="#999999", label="not mining"),
                  Patch(facecolor=NODATA_COLOUR, hatch="////", label="nodata")]
        fig.legend(handles=legend, loc="outside lower center", ncols=3, frameon=False, fontsize=9)
    return fig
