"""Labelled growth in the dataset itself: tile by tile, the SmallMinesDS masks of two years compared.

Every tile present in both years gets its mining in each year, the change classes and a status
(:data:`smallmines.legend.TILE_STATUS`); footprints go to a GeoPackage.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from smallmines.errors import ChangeError, DataFormatError
from smallmines.folders import refuse_overwrite
from smallmines.legend import CLASS_KEYS, TILE_STATUS, ChangeClass

if TYPE_CHECKING:
    import geopandas as gpd

from smallmines.analysis.areas import (
    MAP_NODATA,
    SQM_PER_HA,
    _stats_row,
    area_table,
    change_classes,
    class_pixels,
    growth,
)
from smallmines.analysis.writers import _clean, _write_csv, _write_gpkg, _write_json

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# the labelled dataset: tile-by-tile growth between the two years

DEFAULT_PIXEL_SIZE = 10.0
"""Pixel size in metres assumed for packed datasets, whose header stores tile centres only."""


@dataclass
class DatasetChangeResult:
    """What :func:`dataset_change` wrote and computed.

    Attributes:
        out_dir: the output folder.
        tiles: one row per tile present in both years (see :func:`tile_growth`).
        summary: totals over the paired tiles, growth, tile counts by status, unpaired ids.
        tiles_csv: ``tiles.csv``.
        tiles_gpkg: ``tiles.gpkg`` (layer ``tiles``: footprints with every column of ``tiles``).
        areas_csv: ``areas.csv``, the area table summed over paired tiles.
        summary_json: ``summary.json``.
        figures: PNG/PDF figures written.
    """

    out_dir: Path
    tiles: pd.DataFrame
    summary: dict[str, Any]
    tiles_csv: Path
    tiles_gpkg: Path
    areas_csv: Path
    summary_json: Path
    figures: list[Path] = field(default_factory=list)


def _tile_status(a_px: int, b_px: int) -> str:
    if a_px == 0 and b_px == 0:
        return "no mining"
    if a_px == 0:
        return "appeared"
    if b_px == 0:
        return "vanished"
    return "grew" if b_px > a_px else "shrank" if b_px < a_px else "unchanged"


def _footprints(source: Any, indices: Sequence[int]) -> list[tuple[tuple[float, float, float, float], str | None]]:
    """Bounds and CRS of the given patches of a :class:`~smallmines.data.dataset.PatchSource`."""
    from smallmines.data.io import read_info

    out = []
    for i in indices:
        if source.pack is not None:
            x, y = source.pack.header.centers[i]
            half = source.pack.header.size * DEFAULT_PIXEL_SIZE / 2
            out.append(((x - half, y - half, x + half, y + half), source.pack.header.crs[i]))
        else:
            info = read_info(source.layout.patches[i].image)
            out.append((tuple(info.bounds), info.crs))
    return out


def tile_growth(
    path: str | Path | Any,
    year_a: int | None = None,
    year_b: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    masks: Mapping[int, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Compare the labelled masks of the same tiles in two years.

    Tiles are paired by site (country and tile id). Pixels count only where both years are valid
    (mask not 255 and no image band nodata), so a cloud gap in one year never reads as change.

    Args:
        path: a SmallMinesDS zip, folder or ``.smpack``, or an open
            :class:`~smallmines.data.dataset.PatchSource`.
        year_a: first year (default: the earliest in the dataset).
        year_b: second year (default: the latest).
        progress: called as ``progress(done, total)`` after every tile pair.
        masks: masks already read (source index -> uint8 mask with image nodata as 255); the others
            are read from ``path``.

    Returns:
        (tiles, summary). ``tiles`` has one row per paired site: ``site``, ``id_a``, ``id_b``,
        footprint ``minx``/``miny``/``maxx``/``maxy``, ``crs``, ``valid_ha``, ``mining_a_ha``,
        ``mining_b_ha``, ``mining_a_pct``, ``mining_b_pct``, ``new_ha``, ``persistent_ha``,
        ``ceased_ha``, ``net_growth_ha``, ``growth_pp`` (percentage points of the tile's valid area)
        and ``status`` (one of :data:`TILE_STATUS`). ``summary`` holds totals and growth over the
        paired tiles, counts by status and the ids of tiles without a partner year.

    Raises:
        DatasetNotFoundError: no dataset at ``path``.
        ChangeError: the dataset has fewer than two years, or no tile exists in both.
    """
    from smallmines.data.dataset import PatchSource

    source = path if isinstance(path, PatchSource) else PatchSource(path)
    path = source.path
    masks = masks or {}

    def mask_of(i: int) -> np.ndarray:
        return masks[i] if i in masks else source.read(i)[1]

    years = sorted({k.year for k in source.keys})
    if len(years) < 2 and (year_a is None or year_b is None):
        raise ChangeError(f"{path}: holds only the years {years}; tile growth needs two years of the same tiles")
    year_a = years[0] if year_a is None else int(year_a)
    year_b = years[-1] if year_b is None else int(year_b)
    if year_b <= year_a:
        raise ChangeError(f"year_b ({year_b}) must be after year_a ({year_a})")
    by_site: dict[int, dict[str, int]] = {year_a: {}, year_b: {}}
    for i, key in enumerate(source.keys):
        if key.year in by_site:
            by_site[key.year][key.site] = i
    sites = sorted(by_site[year_a].keys() & by_site[year_b].keys())
    unpaired = sorted(source.ids[i] for y in (year_a, year_b) for s, i in by_site[y].items() if s not in sites)
    if not sites:
        raise ChangeError(f"{path}: no tile exists in both {year_a} and {year_b} (tiles are paired by id)")
    if unpaired:
        logger.warning("%d tiles exist in only one of %d and %d and are left out, e.g. %s", len(unpaired),
                       year_a, year_b, unpaired[0])
    idx_a = [by_site[year_a][s] for s in sites]
    idx_b = [by_site[year_b][s] for s in sites]
    foot_a = _footprints(source, idx_a)
    foot_b = _footprints(source, idx_b)
    rows = []
    totals = dict.fromkeys(ChangeClass, 0)
    total_area = 0.0
    misaligned = []
    for n, (site, ia, ib, (bounds, crs), (bounds_b, _)) in enumerate(
        zip(sites, idx_a, idx_b, foot_a, foot_b, strict=True), start=1
    ):
        mask_a, mask_b = mask_of(ia), mask_of(ib)
        if mask_a.shape != mask_b.shape:
            raise DataFormatError(source.ids[ib], f"is {mask_b.shape}, its {year_a} partner is {mask_a.shape}")
        pixel_m2 = (bounds[2] - bounds[0]) * (bounds[3] - bounds[1]) / mask_a.size
        if max(abs(u - v) for u, v in zip(bounds, bounds_b, strict=True)) > math.sqrt(pixel_m2):
            misaligned.append(site)
        change = change_classes(mask_a, mask_b, MAP_NODATA)
        px = class_pixels(change)
        for c in ChangeClass:
            totals[c] += px[c]
        total_area += sum(px.values()) * pixel_m2
        ha = pixel_m2 / SQM_PER_HA
        valid = sum(px.values())
        a_px = px[ChangeClass.PERSISTENT] + px[ChangeClass.CEASED]
        b_px = px[ChangeClass.PERSISTENT] + px[ChangeClass.NEW]
        rows.append({
            "site": site, "id_a": source.ids[ia], "id_b": source.ids[ib],
            "minx": bounds[0], "miny": bounds[1], "maxx": bounds[2], "maxy": bounds[3], "crs": crs,
            "valid_ha": valid * ha,
            "mining_a_ha": a_px * ha, "mining_b_ha": b_px * ha,
            "mining_a_pct": 100.0 * a_px / valid if valid else float("nan"),
            "mining_b_pct": 100.0 * b_px / valid if valid else float("nan"),
            "new_ha": px[ChangeClass.NEW] * ha, "persistent_ha": px[ChangeClass.PERSISTENT] * ha,
            "ceased_ha": px[ChangeClass.CEASED] * ha,
            "net_growth_ha": (b_px - a_px) * ha,
            "growth_pp": 100.0 * (b_px - a_px) / valid if valid else float("nan"),
            "status": _tile_status(a_px, b_px),
        })
        if progress is not None:
            progress(n, len(sites))
    if misaligned:
        logger.warning("%d tile pairs have footprints that differ by more than a pixel between %d and %d, e.g. %s",
                       len(misaligned), year_a, year_b, misaligned[0])
    tiles = pd.DataFrame(rows)
    valid_px = sum(totals.values())
    pixel_area = total_area / valid_px if valid_px else DEFAULT_PIXEL_SIZE**2
    row = _stats_row(totals, pixel_area, year_a, year_b)
    counts = tiles["status"].value_counts()
    summary: dict[str, Any] = {
        "dataset": str(path),
        "year_a": year_a,
        "year_b": year_b,
        "tiles_paired": len(sites),
        "tiles_unpaired": len(unpaired),
        "unpaired_ids": unpaired,
        "misaligned_sites": misaligned,
        "pixel_area_m2": pixel_area,
        "pixels": {CLASS_KEYS[c]: totals[c] for c in ChangeClass},
        "valid_ha": row["valid_ha"],
        "classes": {CLASS_KEYS[c]: {"code": int(c), "label": c.label, "pixels": totals[c],
                                    "area_ha": row[f"{CLASS_KEYS[c]}_ha"], "pct_valid": row[f"{CLASS_KEYS[c]}_pct"]}
                    for c in ChangeClass},
        "mining_a_ha": row[f"mining_{year_a}_ha"],
        "mining_b_ha": row[f"mining_{year_b}_ha"],
        "mining_a_pct": row[f"mining_{year_a}_pct"],
        "mining_b_pct": row[f"mining_{year_b}_pct"],
        **growth(row[f"mining_{year_a}_ha"], row[f"mining_{year_b}_ha"], year_a, year_b),
        "tiles_by_status": {s: int(counts.get(s, 0)) for s in TILE_STATUS},
        "tiles_with_mining_a": int((tiles["mining_a_ha"] > 0).sum()),
        "tiles_with_mining_b": int((tiles["mining_b_ha"] > 0).sum()),
        "mean_tile_share_a_pct": float(tiles["mining_a_pct"].mean()),
        "mean_tile_share_b_pct": float(tiles["mining_b_pct"].mean()),
        "top_growth": tiles.nlargest(10, "net_growth_ha")[["site", "net_growth_ha", "growth_pp"]]
        .to_dict(orient="records"),
    }
    logger.info("%d tiles in %d and %d: labelled mining %.0f ha -> %.0f ha", len(sites), year_a, year_b,
                summary["mining_a_ha"], summary["mining_b_ha"])
    return tiles, summary


def tiles_frame(tiles: pd.DataFrame) -> gpd.GeoDataFrame:
    """Tile table as footprint polygons; mixed CRSs are brought to EPSG:4326."""
    import geopandas as gpd
    from shapely.geometry import box

    crss = [c for c in tiles["crs"].dropna().unique()]
    geoms = [box(r.minx, r.miny, r.maxx, r.maxy) for r in tiles.itertuples()]
    if len(crss) <= 1:
        return gpd.GeoDataFrame(tiles.copy(), geometry=geoms, crs=crss[0] if crss else None)
    parts = []
    for crs in crss:
        sel = (tiles["crs"] == crs).to_numpy()
        part = gpd.GeoDataFrame(tiles[sel].copy(), geometry=[g for g, k in zip(geoms, sel, strict=True) if k], crs=crs)
        parts.append(part.to_crs("EPSG:4326"))
    logger.info("tiles are in %d CRSs; footprints are written in EPSG:4326", len(crss))
    return gpd.GeoDataFrame(pd.concat(parts).loc[tiles.index], crs="EPSG:4326")


def dataset_change(
    path: str | Path,
    out_dir: str | Path,
    year_a: int | None = None,
    year_b: int | None = None,
    figures: bool = True,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = True,
) -> DatasetChangeResult:
    """How much the labelled mining of SmallMinesDS grew, per tile and overall.

    Writes ``tiles.csv``, ``tiles.gpkg`` (footprints, layer ``tiles``), ``areas.csv`` (the area
    table over all paired tiles), ``summary.json`` and, with ``figures``, ``figures/tile_growth``
    (footprints coloured by growth) and ``figures/areas`` as PNG and PDF.

    Args:
        path: a SmallMinesDS zip, folder or ``.smpack``.
        out_dir: output folder (created).
        year_a: first year (default: the earliest in the dataset).
        year_b: second year (default: the latest).
        figures: write the figures.
        progress: called as ``progress(done, total)`` while tiles are read.
        overwrite: replace the outputs of an earlier run in ``out_dir`` (the command line refuses by
            default, ``--overwrite``).

    Returns:
        The :class:`DatasetChangeResult`.

    Raises:
        DatasetNotFoundError: no dataset at ``path``.
        ChangeError: fewer than two years, or no tile present in both.

    .. versionadded:: 0.1
    """
    out = Path(out_dir)
    refuse_overwrite([out / "summary.json", out / "tiles.csv"], overwrite)
    tiles, summary = tile_growth(path, year_a, year_b, progress)
    ya, yb = summary["year_a"], summary["year_b"]
    px = {c: summary["pixels"][CLASS_KEYS[c]] for c in ChangeClass}
    table = area_table(px, summary["pixel_area_m2"], ya, yb)
    frame = tiles_frame(tiles)
    result = DatasetChangeResult(
        out, tiles, summary,
        tiles_csv=_write_csv(out / "tiles.csv", tiles),
        tiles_gpkg=_write_gpkg(out / "tiles.gpkg", frame, "tiles"),
        areas_csv=_write_csv(out / "areas.csv", table),
        summary_json=out / "summary.json",
    )
    if figures:
        from smallmines.analysis import figures as fig

        result.figures = fig.save_figure(fig.tile_growth_figure(frame, ya, yb), out / "figures" / "tile_growth")
        result.figures += fig.save_figure(fig.growth_figure(summary, title="Labelled mining, paired tiles"),
                                          out / "figures" / "areas")
    _write_json(result.summary_json, _clean(summary))
    return result
