"""``build_dataset``: scene rasters and mine polygons to a dataset in the published SmallMinesDS layout.

The steps, for one year:

1. **Scene**: the inputs are opened and aligned on the 10 m grid by :func:`smallmines.data.scene.open_scene`
   and read by :class:`~smallmines.data.scene.SceneReader`, the code path ``smallmines map`` uses.
2. **Tile grid** (:mod:`~smallmines.data.build.tiles`): a new grid anchored at the scene's top-left pixel,
   or the grid of an earlier build (``like=``, or ``out`` when it already holds one) so that a second
   year gets the same tiles under the same ids; the scene is then read onto that grid.
3. **Labels** (:mod:`~smallmines.data.build.labels`): polygons reprojected, repaired and rasterised tile by
   tile; unknown areas and imagery nodata become 255.
4. **Selection** (:mod:`~smallmines.data.build.blocks`, block by block, here or on Dask workers):
   tiles above ``max_nodata``, mining-free tiles not drawn by ``keep_empty`` (a draw per tile number
   and seed, the same in every year) and tiles with a mining share below ``min_share`` are skipped;
   a tile that another year of the dataset holds is kept whatever the sampling (only nodata skips
   it), so years pair up. Rebuilding the first year after the second pairs the tiles the sampling
   dropped from the first year but the second year kept.
5. **Writing** (:mod:`~smallmines.data.build.writer`): patches staged and swapped in as one folder; the
   split file of the year (sites already assigned in other years keep their split; new sites are
   split by :func:`smallmines.data.splits.random_split`, stratified on mining share); tile footprints;
   ``build.json``; the dataset card (:mod:`~smallmines.data.build.card`).
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from smallmines import __version__
from smallmines.bands import BAND_NAMES, parse_bands
from smallmines.data.build.blocks import TileJob, run_blocks
from smallmines.data.build.card import write_card
from smallmines.data.build.labels import UNKNOWN_VALUES, read_labels
from smallmines.data.build.tiles import TILE, TileGrid
from smallmines.data.build.writer import (
    BUILD_RECORD,
    FOOTPRINTS,
    STAGING_PREFIX,
    clear_stale,
    read_record,
    read_split_rows,
    swap_in,
    write_bytes,
    write_footprints,
    write_json,
)
from smallmines.data.layout import DATASET_DIR, SPLITS_DIR, PatchKey, image_name, mask_name, split_csv_name
from smallmines.data.scene import Scene, open_scene, parse_scale
from smallmines.data.splits import random_split, write_split_csv
from smallmines.errors import BandError, ConfigError
from smallmines.folders import refuse_overwrite

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
_COUNTRY = re.compile(r"^[A-Za-z]{2,3}$")
PROVENANCE = "fetch.json"
"""Provenance record of a scene from ``smallmines fetch``, looked for beside the scene's files."""


@dataclass
class BuildResult:
    """What :func:`build_dataset` wrote.

    Attributes:
        out: the dataset folder.
        year: the year built.
        grid: the tile grid.
        patches: patch ids written.
        skipped: reason -> number of tiles skipped (``nodata``, ``empty_not_drawn``, ``below_min_share``).
        shares: patch id -> mining percentage.
        split: patch id -> ``train`` or ``test``.
        labels: the label reports (features used, repaired, skipped).
        unpaired: ids of this year's patches whose tile no other year of the dataset holds, and of
            other years' patches whose tile this year lacks (empty for a dataset of one year).
        footprints: the GeoPackage of tile footprints.
        card: the dataset card.

    """

    out: Path
    year: int
    grid: TileGrid
    patches: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    shares: dict[str, float] = field(default_factory=dict)
    split: dict[str, str] = field(default_factory=dict)
    labels: list[dict[str, Any]] = field(default_factory=list)
    unpaired: list[str] = field(default_factory=list)
    footprints: Path | None = None
    card: Path | None = None

    @property
    def mining_share(self) -> float:
        """Mean mining percentage over the patches written."""
        return float(np.mean(list(self.shares.values()))) if self.shares else 0.0


def _check_options(country: str, year: int, max_nodata: float, keep_empty: float, min_share: float,
                   test_fraction: float) -> str:
    if not _COUNTRY.match(country or ""):
        raise ConfigError(f"country code {country!r}: give 2 or 3 letters (ISO 3166, e.g. GH, CIV, PER); it "
                          "names the files IMG_{CC}_TTTT_YYYY.tif")
    if not 1900 <= int(year) <= 2100:
        raise ConfigError(f"year {year}: give the four-digit acquisition year, e.g. 2022")
    for name, value in (("max_nodata", max_nodata), ("keep_empty", keep_empty)):
        if not 0 <= value <= 1:
            raise ConfigError(f"{name}={value}: give a fraction between 0 and 1")
    if not 0 <= min_share < 100:
        raise ConfigError(f"min_share={min_share}: give a mining percentage in [0, 100)")
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"test_fraction={test_fraction}: give a fraction in [0, 1)")
    return country.upper()


def _reference(out: Path, like: str | Path | None) -> tuple[Path | None, dict[str, Any] | None]:
    """Find the dataset whose grid a build reuses: ``like``, else ``out`` when it holds a build record."""
    if like is not None:
        record = read_record(Path(like))
        if record is None:
            raise ConfigError(f"--like {like}: no {BUILD_RECORD} there; give the folder of a dataset written by "
                              "`smallmines build` (it records the tile grid)")
        return Path(like), record
    record = read_record(out)
    return (out, record) if record is not None else (None, None)


def _check_out(out: Path, like: Path | None, grid: TileGrid) -> dict[str, Any]:
    """Years already recorded in ``out``; refuses an ``out`` built on another grid than ``like``'s."""
    existing = read_record(out)
    if existing is None:
        return {}
    if like is not None and like.resolve() != out.resolve():
        theirs = TileGrid.from_dict(existing.get("grid", {}), str(out / BUILD_RECORD))
        if not theirs.same_lattice(grid):
            raise ConfigError(f"{out} already holds a dataset on another tile grid than {like}; build into a new "
                              f"folder, or leave --like out to add a year on the grid of {out}")
    return dict(existing.get("years", {}))


def _tile_grid(scene: Scene, record: dict[str, Any] | None, source: Path | None, tile: int | None,
               stride: int | None) -> TileGrid:
    if record is None:
        return TileGrid.covering(scene.grid, tile or TILE, stride)
    grid = TileGrid.from_dict(record.get("grid", {}), str(source / BUILD_RECORD) if source else BUILD_RECORD)
    for name, asked, have in (("--tile-size", tile, grid.tile), ("--stride", stride, grid.stride)):
        if asked is not None and asked != have:
            raise ConfigError(f"{name} {asked} differs from {have} of the tile grid recorded in {source}; a build "
                              f"into an existing dataset (or with --like) reuses its grid: leave {name} out, or "
                              "build into a new folder")
    return grid


def _scene_extent(scene: Scene, grid: TileGrid) -> tuple[float, float, float, float]:
    bounds = scene.grid.bounds()
    src, dst = CRS.from_wkt(scene.grid.crs), CRS.from_wkt(grid.crs)
    return bounds if src == dst else transform_bounds(src, dst, *bounds)


def _provenance(scene: Scene) -> list[dict[str, Any]]:
    """``fetch.json`` records found beside the scene's files (from ``smallmines fetch``)."""
    import json

    found, seen = [], set()
    for source in scene.sources:
        path = Path(source.path).parent / PROVENANCE
        if path.is_file() and path not in seen:
            seen.add(path)
            try:
                found.append({"path": str(path), "record": json.loads(path.read_text(encoding="utf-8"))})
            except (OSError, ValueError) as exc:
                logger.warning("%s: not readable as JSON (%s); left out of the dataset card", path, exc)
    return found


def _assign_splits(out: Path, like: Path | None, year: int, shares: dict[str, float], keys: dict[str, PatchKey],
                   seed: int, test_fraction: float) -> dict[str, str]:
    """Sites assigned in another year (here or in ``like``) keep their split; new sites are split anew."""
    known: dict[str, str] = {}
    for folder in [f for f in (like, out) if f is not None]:
        for row in read_split_rows(folder).values():
            if row.key.year != year:
                known.setdefault(row.key.site, row.split)
    split = {pid: known[k.site] for pid, k in keys.items() if k.site in known}
    new = {pid: k for pid, k in keys.items() if k.site not in known}
    if new:
        split.update(random_split(new, shares, seed=seed, test_fraction=test_fraction, val_fraction=0.0))
    return split


def build_dataset(
    out: str | Path,
    labels: str | Path,
    country: str,
    year: int,
    stacked: str | Path | Sequence[str | Path] | None = None,
    s2: str | Path | Sequence[str | Path] | None = None,
    s1: str | Path | Sequence[str | Path] | None = None,
    dem: str | Path | Sequence[str | Path] | None = None,
    *,
    layer: str | None = None,
    class_field: str | None = None,
    unknown_values: Sequence[str] = UNKNOWN_VALUES,
    unknown: str | Path | None = None,
    like: str | Path | None = None,
    tile: int | None = None,
    stride: int | None = None,
    bands: str | Sequence[str] = "all",
    band_order: str | Sequence[str] | None = None,
    scale: str | float | None = None,
    max_nodata: float = 0.5,
    keep_empty: float = 1.0,
    min_share: float = 0.0,
    test_fraction: float = 0.2,
    seed: int = 0,
    cluster: Any = None,
    workers: int | None = None,
    progress: Progress | None = None,
    overwrite: bool = True,
) -> BuildResult:
    """Build (or add a year to) a dataset in the published SmallMinesDS layout.

    Writes under ``out``: ``SmallMinesDS/{YEAR}/IMAGE/IMG_{CC}_{TTTT}_{YEAR}.tif`` (float32, nodata -9999,
    band descriptions), ``SmallMinesDS/{YEAR}/MASK/MASK_{CC}_{TTTT}_{YEAR}.tif`` (uint8 0/1, 255 where the
    imagery is nodata or the label unknown), ``data_splits/train_test_splits_{YEAR}.csv``, ``tiles.gpkg``
    (footprints of every patch of every year), ``build.json`` (grid, inputs, options, counts) and
    ``README.md`` (the dataset card). Re-running with the same inputs and options rewrites identical files;
    building another year into the same ``out`` (or with ``like``) reuses the tile grid and ids.

    Args:
        out: dataset folder (created if needed).
        labels: vector file of mine polygons (any CRS).
        country: two- or three-letter country code in the file names.
        year: acquisition year of the imagery.
        stacked: stacked scene raster(s) (13 bands in the published order, or named by band descriptions).
        s2: Sentinel-2 raster(s); with ``s1`` and ``dem`` instead of ``stacked``.
        s1: Sentinel-1 VV/VH raster(s) in dB.
        dem: elevation raster(s) in metres.
        layer: layer of ``labels`` (default: the first).
        class_field: attribute of ``labels`` whose ``unknown_values`` mark unknown areas.
        unknown_values: values of ``class_field`` meaning unknown.
        unknown: a layer of ``labels`` or another vector file of unknown areas (mask 255).
        like: folder of a dataset built earlier whose tile grid and ids to reuse.
        tile: tile side in pixels (default 128, or the reused grid's).
        stride: pixels between tiles (default: the tile side, no overlap).
        bands: bands to write, in published order (default all 13; other selections are not
            SmallMinesDS-compatible).
        band_order: names of a stacked file's bands in order (as ``map --band-order``).
        scale: per-band scale on read (as ``map --scale``).
        max_nodata: skip tiles whose nodata share (imagery nodata or unknown) is above this fraction.
        keep_empty: fraction of mining-free tiles kept (seeded draw per tile number).
        min_share: skip tiles whose mining percentage is above 0 but below this.
        test_fraction: share of new sites put in the test split (stratified on mining share).
        seed: seed of the negative sampling and the split.
        cluster: Dask scheduler address or ``distributed.Client``: blocks of tiles are cut on its workers
            (which must read the scene and label files at the same paths); the files are written here.
        workers: start a local Dask cluster of this many worker processes.
        progress: called as ``progress(done, total)`` in tiles after every block.
        overwrite: replace the year if ``out`` already holds it (the command line refuses by default,
            ``--overwrite``); another year is added either way.

    Returns:
        What was written (:class:`BuildResult`).

    Raises:
        ConfigError: invalid options, or a grid record that does not match the options.
        BandError: the scene lacks a band to write.
        CorruptFileError: an unreadable scene or label file.

    """
    country = _check_options(country, year, max_nodata, keep_empty, min_share, test_fraction)
    if workers is not None and workers < 1:
        raise ConfigError(f"workers={workers}: need at least 1 (or leave it out to build in this process)")
    year = int(year)
    out = Path(out)
    refuse_overwrite([out / DATASET_DIR / str(year)], overwrite)
    out.mkdir(parents=True, exist_ok=True)
    clear_stale(out)
    parsed = parse_bands(bands)
    if any(b not in BAND_NAMES for b in parsed):
        raise BandError(f"--bands {bands!r}: only bands can be written, not indices "
                        f"({', '.join(b for b in parsed if b not in BAND_NAMES)})")
    wanted = tuple(b for b in BAND_NAMES if b in parsed)
    scene = open_scene(stacked, s2, s1, dem, band_order).with_scale(parse_scale(scale))
    scene.require(wanted)
    reference, record = _reference(out, like)
    grid = _tile_grid(scene, record, reference, tile, stride)
    years = _check_out(out, Path(like) if like else None, grid)
    extent = _scene_extent(scene, grid)
    if record is not None:
        scene = scene.on_grid(grid.grid)
    polygons = read_labels(labels, grid.crs, extent, layer, class_field, unknown_values, unknown)
    result = BuildResult(out, year, grid, skipped=dict.fromkeys(("nodata", "empty_not_drawn", "below_min_share"), 0),
                         labels=[r.to_dict() for r in polygons.reports])
    nodata_share: dict[str, float] = {}
    others = {pid: row for folder in {out, Path(like) if like else out}
              for pid, row in read_split_rows(folder).items() if row.key.year != year}
    partners = {int(row.key.tile) for row in others.values()}
    keys: dict[str, PatchKey] = {}
    total = grid.rows * grid.columns
    job = TileJob(scene, grid, wanted, max_nodata, keep_empty, min_share, seed, frozenset(partners))
    with tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}{year}-", dir=out) as scratch:
        staged = Path(scratch) / str(year)
        (staged / "IMAGE").mkdir(parents=True)
        (staged / "MASK").mkdir(parents=True)
        done = 0
        for outcomes in run_blocks(job, polygons, cluster, workers):
            for tile in outcomes:
                if tile.reason is not None:
                    result.skipped[tile.reason] += 1
                    continue
                name = grid.name(tile.number)
                key = PatchKey(name, year, country)
                write_bytes(staged / "IMAGE" / image_name(name, year, country), tile.image or b"")
                write_bytes(staged / "MASK" / mask_name(name, year, country), tile.mask or b"")
                keys[key.id] = key
                result.shares[key.id] = tile.share
                nodata_share[key.id] = 100.0 * tile.missing
            done += len(outcomes)
            if progress:
                progress(done, total)
        if not keys:
            raise ConfigError(f"no tile of the scene was kept ({result.skipped}); check that the scene has valid "
                              "pixels, or loosen --max-nodata / --keep-empty / --min-share")
        swap_in(staged, out / DATASET_DIR / str(year))
    result.patches = sorted(keys)
    if others:
        written = {int(k.tile) for k in keys.values()}
        result.unpaired = sorted([pid for pid, k in keys.items() if int(k.tile) not in partners]
                                 + [pid for pid, row in others.items() if int(row.key.tile) not in written])
        if result.unpaired:
            logger.warning("%d patches have no partner in another year (e.g. %s): a tile skipped in one year "
                           "(nodata, sampling) but kept in another; rebuilding the other year pairs the tiles "
                           "it has data for", len(result.unpaired), result.unpaired[0])
    result.split = _assign_splits(out, like and Path(like), year, result.shares, keys, seed, test_fraction)
    write_split_csv(out / SPLITS_DIR / split_csv_name(year), result.split, result.shares,
                    names={pid: image_name(k.tile, year, country) for pid, k in keys.items()})
    options = {"tile": grid.tile, "stride": grid.stride, "bands": list(wanted), "max_nodata": max_nodata,
               "keep_empty": keep_empty, "min_share": min_share, "test_fraction": test_fraction, "seed": seed,
               "scale": dict(scene.scale), "like": str(like) if like else None,
               "workers": workers, "cluster": str(cluster) if cluster else None}
    years[str(year)] = {
        "country": country, "scene": scene.describe(), "provenance": _provenance(scene), "labels": result.labels,
        "options": options, "patches": len(keys), "skipped": result.skipped,
        "mining_share": result.mining_share, "nodata_share": nodata_share, "unpaired": result.unpaired,
        "split": {name: sum(1 for s in result.split.values() if s == name) for name in ("train", "test")},
    }
    record = {"smallmines": __version__, "grid": grid.to_dict(), "bands": list(wanted),
              "years": dict(sorted(years.items()))}
    write_json(out / BUILD_RECORD, record)
    nodata_all = {pid: v for y in record["years"].values() for pid, v in y.get("nodata_share", {}).items()}
    result.footprints = write_footprints(out / FOOTPRINTS, grid, read_split_rows(out), nodata_all)
    result.card = write_card(out, record, read_split_rows(out))
    logger.debug("%s: %d patches of %d written (%s skipped)", out, len(keys), year, result.skipped)
    return result
