"""Where mining appeared, persisted and stopped: change maps, area tables and zonal statistics.

Two binary mine maps (``mines.tif`` from ``smallmines map``, or any raster of 0/1 with nodata) become
one change raster of four classes (:class:`ChangeClass`), polygons of each change patch, an area
table and growth figures; with zones (districts, river basins, forest reserves, concessions) the
same numbers per zone. :func:`dataset_change` does the same for the labelled SmallMinesDS masks,
tile by tile, between the two years of the benchmark.

Outputs of :func:`compare_maps` (see ``docs/run-layout.md``)::

    change.tif     COG uint8: 0 no mining, 1 new, 2 persistent, 3 ceased, 255 nodata; colour table
    change.gpkg    layer ``change``: id, class, code, area_ha (one polygon per connected patch)
    areas.csv      class, code, pixels, area_ha, pct_valid (+ rows mining_YEAR and valid)
    summary.json   grid, inputs, class areas, net growth, annual growth rate, zone coverage
    zones.csv      with zones: one row per zone (covered fraction, class areas, growth)
    zones.gpkg     the same with the zone geometries (layer ``zones``)
    accuracy.json, area_estimates.csv
                   with a labelled sample (``reference``): error matrix, accuracies and stratified
                   area estimates with 95 % intervals (:mod:`smallmines.analysis.sampling`)
    figures/       change_map and areas as PNG and PDF (``figures=True``)

Areas are computed on a projected grid: a geographic map is reprojected to its UTM zone first. Two
maps on different grids are resampled (nearest neighbour) onto one grid over their overlap, in the
CRS of the first map at the finer of the two resolutions. Only pixels valid in both maps count;
every percentage is of that valid area.

Growth is reported three ways: the net change in hectares, the net change relative to the first
year, and the compound annual growth rate ``(B / A) ** (1 / years) - 1``, which is undefined (null)
when the first year has no mining.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from smallmines.errors import ChangeError
from smallmines.folders import refuse_overwrite
from smallmines.legend import (
    CHANGE_NODATA,
    CLASS_KEYS,
    ChangeClass,
    change_categories,
    change_colormap,
    change_tags,
    write_category_names,
)

if TYPE_CHECKING:
    import geopandas as gpd

    from smallmines.analysis.sampling import AccuracyResult

from smallmines.analysis.areas import MAP_NODATA, _stats_row, area_table, change_classes, class_pixels, growth
from smallmines.analysis.maps import BinaryMap, Grid, _resolution_in, align, common_grid, read_binary_map
from smallmines.analysis.writers import _clean, _write_csv, _write_gpkg, _write_json, write_cog
from smallmines.analysis.zones import change_polygons, read_zones, zonal_stats

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# the public entry points


@dataclass
class ChangeResult:
    """What :func:`compare_maps` wrote and computed.

    Attributes:
        out_dir: the output folder.
        change_tif: the change raster (COG).
        polygons: the change polygons (GeoPackage, layer ``change``).
        areas_csv: the area table.
        summary_json: everything in :attr:`summary`.
        table: the area table (``class``, ``code``, ``pixels``, ``area_ha``, ``pct_valid``).
        summary: years, grid, inputs, class areas and growth.
        zones: per-zone table (with geometries) or None.
        zones_csv: path or None.
        zones_gpkg: path or None.
        figures: PNG/PDF figures written.
        accuracy: estimates from a labelled sample (``reference``), or None.
    """

    out_dir: Path
    change_tif: Path
    polygons: Path
    areas_csv: Path
    summary_json: Path
    table: pd.DataFrame
    summary: dict[str, Any]
    zones: gpd.GeoDataFrame | None = None
    zones_csv: Path | None = None
    zones_gpkg: Path | None = None
    figures: list[Path] = field(default_factory=list)
    accuracy: AccuracyResult | None = None


def compare_maps(
    map_a: str | Path,
    map_b: str | Path,
    out_dir: str | Path,
    year_a: int | None = 2016,
    year_b: int | None = 2022,
    zones: str | Path | gpd.GeoDataFrame | None = None,
    zone_field: str | None = None,
    min_area_ha: float = 0.0,
    figures: bool = True,
    reference: str | Path | None = None,
    overwrite: bool = True,
) -> ChangeResult:
    """Compare two mine maps: change raster, polygons, area table, growth and zonal statistics.

    Args:
        map_a: first-year map: a ``smallmines map`` folder, its ``mines.tif``, or any 0/1 raster.
        map_b: second-year map; aligned onto A's grid (CRS and pixel size may differ).
        out_dir: output folder (created).
        year_a: first year; None reads it from the map's ``summary.json`` or name, else 2016.
        year_b: second year; None reads it likewise, else 2022.
        zones: optional polygons (file or GeoDataFrame) for per-zone statistics.
        zone_field: attribute naming the zones (default ``name``, else the row number).
        min_area_ha: smallest polygon kept in ``change.gpkg`` (raster and tables keep everything).
        figures: also write ``figures/change_map`` and ``figures/areas`` as PNG and PDF.
        reference: a labelled sample of this change map (``sample.gpkg``/``sample.csv`` from
            :func:`~smallmines.analysis.sampling.draw_sample`, ``reference`` filled in): adds
            ``accuracy.json``, ``area_estimates.csv`` and ``summary["area_estimates"]``.
        overwrite: replace the outputs of an earlier comparison in ``out_dir`` (the command line
            refuses by default, ``--overwrite``).

    Returns:
        The :class:`ChangeResult` (paths, area table, summary, zones).

    Raises:
        MapNotFoundError: a map does not exist.
        DataFormatError: a map is not binary or has no CRS.
        ChangeError: the maps do not overlap, ``year_b`` is not after ``year_a``, bad zones, or a
            reference sample that does not fit this map.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 ``reference``.
    """
    out = Path(out_dir)
    refuse_overwrite([out / "summary.json", out / "change.tif"], overwrite)
    # everything that can be refused is checked before the first file is written
    zone_frame = read_zones(zones, zone_field) if zones is not None else None
    a, b = read_binary_map(map_a), read_binary_map(map_b)
    year_a = int(year_a if year_a is not None else a.year or 2016)
    year_b = int(year_b if year_b is not None else b.year or 2022)
    if year_b <= year_a:
        raise ChangeError(f"year_b ({year_b}) must be after year_a ({year_a}); swap the maps or the years")
    grid = common_grid(a, b)
    mines_a, mines_b = align(a, grid), align(b, grid)
    change = change_classes(mines_a, mines_b)
    pixels = class_pixels(change)
    valid = sum(pixels.values())
    if valid == 0:
        raise ChangeError(f"{a.path} and {b.path} overlap but share no pixel that is valid in both")
    logger.info("comparing %s (%d) with %s (%d) on %d x %d pixels of %.1f m", a.path, year_a, b.path, year_b,
                grid.width, grid.height, grid.res[0])

    change_tif = write_cog(out / "change.tif", change, grid.crs, grid.transform, CHANGE_NODATA,
                           colormap=change_colormap(), description=f"mining change {year_a}-{year_b}",
                           tags=change_tags(year_a, year_b))
    write_category_names(change_tif, change_categories())
    inputs = {"map_a": str(Path(a.path).resolve()), "map_b": str(Path(b.path).resolve()),
              "crs_a": a.crs.to_string(), "crs_b": b.crs.to_string()}
    table, summary = _describe_change(change, grid, pixels, year_a, year_b, inputs, min_area_ha, out)
    summary["overlap_fraction_a"] = _overlap(a, change, grid)
    summary["overlap_fraction_b"] = _overlap(b, change, grid)
    for key, m in (("overlap_fraction_a", a), ("overlap_fraction_b", b)):
        if summary[key] < 0.99:
            logger.warning("only %.1f%% of %s lies where both maps have data; change is computed on the overlap",
                           100 * summary[key], m.path)
    result = ChangeResult(out, change_tif, out / "change.gpkg", out / "areas.csv", out / "summary.json", table,
                          summary)
    _finish(result, change, grid, zones, zone_frame, reference, figures)
    return result


def _describe_change(change: np.ndarray, grid: Grid, pixels: dict[ChangeClass, int], year_a: int, year_b: int,
                     inputs: dict[str, Any], min_area_ha: float, out: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Write ``change.gpkg`` and ``areas.csv`` of a change raster; return the area table and the summary."""
    polygons = change_polygons(change, grid, min_area_ha)
    _write_gpkg(out / "change.gpkg", polygons, "change")
    table = area_table(pixels, grid.pixel_area_m2, year_a, year_b)
    _write_csv(out / "areas.csv", table)
    row = _stats_row(pixels, grid.pixel_area_m2, year_a, year_b)
    summary: dict[str, Any] = {
        "year_a": year_a,
        "year_b": year_b,
        "inputs": inputs,
        "grid": {"crs": grid.crs.to_string(), "resolution_m": list(grid.res), "width": grid.width,
                 "height": grid.height, "bounds": list(grid.bounds)},
        "pixel_area_m2": grid.pixel_area_m2,
        "classes": {CLASS_KEYS[c]: {"code": int(c), "label": c.label, "pixels": pixels[c],
                                    "area_ha": row[f"{CLASS_KEYS[c]}_ha"], "pct_valid": row[f"{CLASS_KEYS[c]}_pct"]}
                    for c in ChangeClass},
        "valid_ha": row["valid_ha"],
        "mining_a_ha": row[f"mining_{year_a}_ha"],
        "mining_b_ha": row[f"mining_{year_b}_ha"],
        "mining_a_pct": row[f"mining_{year_a}_pct"],
        "mining_b_pct": row[f"mining_{year_b}_pct"],
        **growth(row[f"mining_{year_a}_ha"], row[f"mining_{year_b}_ha"], year_a, year_b),
        "polygons": {"count": len(polygons), "min_area_ha": min_area_ha,
                     "by_class": {lbl: int(n) for lbl, n in polygons["class"].value_counts().items()}},
    }
    return table, summary


def _finish(result: ChangeResult, change: np.ndarray, grid: Grid, zones: Any,
            zone_frame: tuple[gpd.GeoDataFrame, str] | None, reference: str | Path | None, figures: bool) -> None:
    """Zones (read and checked before anything was written), estimates and figures; ``summary.json`` last."""
    out, summary = result.out_dir, result.summary
    year_a, year_b = summary["year_a"], summary["year_b"]
    if zone_frame is not None:
        frame, field_name = zone_frame
        per_zone = zonal_stats(change, grid, frame, field_name, year_a, year_b)
        result.zones = per_zone
        result.zones_csv = _write_csv(out / "zones.csv", pd.DataFrame(per_zone.drop(columns="geometry")))
        result.zones_gpkg = _write_gpkg(out / "zones.gpkg", per_zone, "zones")
        summary["zones"] = {
            "source": str(Path(zones).resolve()) if not hasattr(zones, "geometry") else "GeoDataFrame",
            "field": field_name,
            "count": len(per_zone),
            "partial": per_zone.loc[per_zone["coverage"] == "partial", "zone"].tolist(),
            "outside": per_zone.loc[per_zone["coverage"] == "outside", "zone"].tolist(),
        }

    if reference is not None:
        from smallmines.analysis.sampling import ChangeRaster, estimate_from_sample

        assessed = estimate_from_sample(ChangeRaster(result.change_tif, change, grid.crs, grid.transform), reference,
                                        out)
        result.accuracy = assessed
        summary["area_estimates"] = assessed.summary

    if figures:
        result.figures = _change_figures(change, grid, summary, result.zones, out / "figures")
    _write_json(result.summary_json, _clean(summary))


def _resolved(scene: str | Path | Sequence[str | Path]) -> str | list[str]:
    """Absolute path(s) of a scene, so ``summary.json`` does not depend on the working directory."""
    if isinstance(scene, (str, Path)):
        return str(Path(scene).resolve())
    return [str(Path(s).resolve()) for s in scene]


def _overlap(m: BinaryMap, change: np.ndarray, grid: Grid) -> float:
    """Share of the map's valid area where both maps have data (1.0: all of it was compared)."""
    rx, ry = _resolution_in(m, grid.crs)
    own = float((m.data != MAP_NODATA).sum()) * rx * ry
    if own == 0:
        return 0.0
    return min(1.0, float((change != CHANGE_NODATA).sum()) * grid.pixel_area_m2 / own)


def _change_figures(change: np.ndarray, grid: Grid, summary: dict[str, Any],
                    zones: gpd.GeoDataFrame | None, folder: Path) -> list[Path]:
    from smallmines.analysis import figures as fig

    written = fig.save_figure(fig.change_map_figure(change, grid.transform, summary["year_a"], summary["year_b"],
                                                    summary=summary), folder / "change_map")
    written += fig.save_figure(fig.growth_figure(summary), folder / "areas")
    if zones is not None and len(zones):
        written += fig.save_figure(fig.zones_figure(zones, summary["year_a"], summary["year_b"]), folder / "zones")
    return written


def map_change(
    model: str | Path | None,
    before: str | Path | Sequence[str | Path],
    after: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    year_a: int | None = None,
    year_b: int | None = None,
    zones: str | Path | gpd.GeoDataFrame | None = None,
    zone_field: str | None = None,
    min_area_ha: float = 0.0,
    figures: bool = True,
    overwrite: bool = True,
    **mapping: Any,
) -> ChangeResult:
    """Map change directly with a bi-temporal change model: two scenes in, a change folder out.

    The change raster comes from :func:`smallmines.mapping.bitemporal.map_change_raster` (the
    windowed engine of ``smallmines map`` run on both scenes, with the guards on each); polygons,
    the area table, zones, figures and ``summary.json`` are written as :func:`compare_maps` writes
    them, so ``smallmines report`` and ``smallmines sample`` read the folder alike.

    Args:
        model: the change model (``model.pt``, ``.ckpt``; or None with ``onnx=``).
        before: the earlier scene (stacked 13-band raster or VRT, or tiles).
        after: the later scene, on the same grid.
        out_dir: output folder.
        year_a: the earlier year (default: the scene's ``fetch.json`` or a year in its file name).
        year_b: the later year, likewise.
        zones: optional polygons for per-zone statistics.
        zone_field: attribute naming the zones.
        min_area_ha: smallest polygon kept in ``change.gpkg``.
        figures: also write ``figures/change_map`` and ``figures/areas``.
        overwrite: replace a finished change folder (the command line refuses by default, ``--overwrite``);
            an interrupted one is resumed either way.
        **mapping: options of :func:`~smallmines.mapping.bitemporal.map_change_raster` (``window``,
            ``device``, ``force``, ``aoi``...).

    Raises:
        ConfigError: a single-date model, scenes on different grids, unknown years.
        SceneMismatchError: a scene unlike the training data.

    .. versionadded:: 0.2
    """
    from rasterio.crs import CRS

    from smallmines.folders import folder_lock
    from smallmines.mapping.bitemporal import map_change_raster

    out = Path(out_dir)
    if min_area_ha < 0:
        raise ChangeError(f"min_area_ha={min_area_ha:g}: may not be negative")
    refuse_overwrite([out / "summary.json"], overwrite)
    zone_frame = read_zones(zones, zone_field) if zones is not None else None  # refused before any work
    with folder_lock(out, "another smallmines map run"):
        def start() -> None:  # summary.json is written last: its presence marks a complete folder
            (out / "summary.json").unlink(missing_ok=True)

        raster = map_change_raster(model, before, after, out, year_a=year_a, year_b=year_b, lock=False,
                                   require_years=True, on_start=start, **mapping)
        import rasterio

        with rasterio.open(raster.change_tif) as src:
            change = src.read(1)
            grid = Grid(CRS.from_user_input(src.crs), src.transform, src.width, src.height)
        if grid.crs.is_geographic:
            raise ChangeError(f"{before}: the scenes are in a geographic CRS ({grid.crs.to_string()}), so pixel "
                              "areas are not in square metres; reproject both to UTM (gdalwarp -t_srs EPSG:326xx)")
        pixels = class_pixels(change)
        inputs = {"before": _resolved(before), "after": _resolved(after), "model": raster.summary["model"]["file"],
                  "method": "bi-temporal model"}
        table, summary = _describe_change(change, grid, pixels, int(raster.year_a or 0), int(raster.year_b or 0),
                                          inputs, min_area_ha, out)
        summary["mapping"] = raster.summary
        summary["run_id"] = raster.run_id
        result = ChangeResult(out, raster.change_tif, out / "change.gpkg", out / "areas.csv", out / "summary.json",
                              table, summary)
        _finish(result, change, grid, zones, zone_frame, None, figures)
    return result
