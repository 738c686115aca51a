"""``merge_datasets``: several SmallMinesDS-format datasets (zip or folder) into one, ids kept unique.

Patches are copied byte for byte. A source's tiles keep their numbers unless an earlier
source already holds a tile of the same country and number; then every tile of that source and
country, in every year, is renumbered by one offset (the next power of ten above the numbers in use,
so ``GH_0001`` becomes ``GH_10001``): tiles still pair across years and a built dataset's numbering
arithmetic (row x columns + column + 1) is kept, shifted. The split files
are merged per year (patch names renamed with their tiles); the renumbering is recorded in
``merge.json``, footprints of every patch go to ``tiles.gpkg`` (EPSG:4326, since sources may lie in
different UTM zones) and a card to ``README.md``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from smallmines.data.build.card import CARD, markdown_table
from smallmines.data.build.writer import FOOTPRINT_LAYER, FOOTPRINTS, STAGING_PREFIX, write_json, write_text
from smallmines.data.io import mining_share, read_info, read_mask
from smallmines.data.layout import (
    DATASET_DIR,
    SPLITS_DIR,
    DatasetLayout,
    PatchRef,
    _split_vsizip,
    discover,
    find_split_files,
    image_name,
    mask_name,
    read_text,
    split_csv_name,
)
from smallmines.data.splits import parse_patch_name, read_split_csv, write_split_csv
from smallmines.errors import ConfigError
from smallmines.folders import refuse_overwrite

logger = logging.getLogger(__name__)

MERGE_RECORD = "merge.json"
Progress = Callable[[int, int], None]


@dataclass
class MergeResult:
    """What :func:`merge_datasets` wrote.

    Attributes:
        out: the merged dataset folder.
        patches: patch ids written, by source.
        renamed: source -> {old patch id: new patch id} for renumbered sites.
        unassigned: patch ids that no split file of their source names.
        counts: (country, year) -> patches.

    """

    out: Path
    patches: dict[str, list[str]] = field(default_factory=dict)
    renamed: dict[str, dict[str, str]] = field(default_factory=dict)
    unassigned: list[str] = field(default_factory=list)
    counts: dict[tuple[str, int], int] = field(default_factory=dict)


def _read_bytes(location: str) -> bytes:
    if location.startswith("/vsizip/"):
        archive, member = _split_vsizip(location)
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    return Path(location).read_bytes()


def _offset(used: set[int]) -> int:
    """Next power of ten above every number in use (at least 10000, past the published 4 digits)."""
    top = max(used, default=0)
    offset = 10000
    while offset <= top:
        offset *= 10
    return offset


def _source_split(layout: DatasetLayout) -> tuple[dict[str, str], dict[str, float]]:
    """Official split and mining shares of a source, from its split files (years without one: none)."""
    split: dict[str, str] = {}
    shares: dict[str, float] = {}
    keys = {p.id: p.key for p in layout.patches}
    for year, location in find_split_files(layout).items():
        text = read_text(location)
        year_keys = {pid: k for pid, k in keys.items() if k.year == year}
        split.update(read_split_csv(text, location, year_keys)[0])
        by_tile = {(int(k.tile), k.country): pid for pid, k in year_keys.items()}
        for row in csv.DictReader(io.StringIO(text)):
            key = parse_patch_name(row.get("patch_name") or "")
            if key is None or key.year != year or not row.get("class_percentage"):
                continue
            pid = by_tile.get((int(key.tile), key.country)) or by_tile.get((int(key.tile), ""))
            if pid is None and not key.country:
                found = [p for (n, _), p in by_tile.items() if n == int(key.tile)]
                pid = found[0] if len(found) == 1 else None
            if pid is not None:
                shares[pid] = float(row["class_percentage"])
    return split, shares


def merge_datasets(sources: Sequence[str | Path], out: str | Path, country: str | None = None,
                   progress: Progress | None = None, overwrite: bool = True) -> MergeResult:
    """Merge datasets in the SmallMinesDS layout into one folder.

    Args:
        sources: datasets (``SmallMinesDS.zip``, a folder holding ``SmallMinesDS/``, a built dataset).
        out: the folder to write (its ``SmallMinesDS/`` and ``data_splits/`` are replaced).
        country: country code for patches whose names carry none (the published variant without a
            code); required when a source has such names.
        progress: called as ``progress(done, total)`` after each patch.
        overwrite: replace a dataset already in ``out`` (the command line refuses by default, ``--overwrite``).

    Returns:
        What was written.

    Raises:
        ConfigError: fewer than two sources, ``out`` among them, or names without country code and no ``country``.
        DatasetNotFoundError: a source holds no SmallMinesDS patch.

    """
    if len(sources) < 2:
        raise ConfigError(f"give at least two datasets to merge (got {len(sources)})")
    out = Path(out)
    refuse_overwrite([out / DATASET_DIR], overwrite)
    resolved = [Path(s).resolve() for s in sources]
    for source, path in zip(sources, resolved, strict=True):
        if path == out.resolve() or path in out.resolve().parents:
            raise ConfigError(f"{source}: the output folder {out} is or lies inside this source, which would then "
                              "read the merge as its own patches; write the merge to a folder outside every source")
        inner = [str(s) for s, other in zip(sources, resolved, strict=True) if other != path and path in other.parents]
        if inner:
            raise ConfigError(f"{source} holds another source ({inner[0]}); its patches would be merged twice. Give "
                              "datasets that lie side by side")
    layouts = [discover(s) for s in sources]
    if any(not p.key.country for lay in layouts for p in lay.patches) and not country:
        raise ConfigError("a source has file names without country code (IMG_0001_2016.tif); pass --country CC so "
                          "the merged names say where each patch lies")
    result = MergeResult(out)
    used: dict[str, set[int]] = {}  # country -> tile numbers taken
    plan: list[tuple[PatchRef, str, str, int]] = []  # ref, country, new tile, source index
    split: dict[str, str] = {}
    shares: dict[str, float] = {}
    for index, (source, layout) in enumerate(zip(sources, layouts, strict=True)):
        name = str(source)
        source_split, source_shares = _source_split(layout)
        renamed: dict[str, str] = {}
        mine: dict[str, set[int]] = {}
        for ref in layout.patches:
            mine.setdefault(ref.key.country or str(country).upper(), set()).add(int(ref.key.tile))
        offsets = {cc: _offset(used[cc]) if nums & used.get(cc, set()) else 0 for cc, nums in mine.items()}
        for ref in layout.patches:
            cc = ref.key.country or str(country).upper()
            number = int(ref.key.tile) + offsets[cc]
            tile = f"{number:04d}"
            new_id = f"{cc}_{tile}_{ref.year}"
            if new_id != ref.id:
                renamed[ref.id] = new_id
            if ref.id in source_split:
                split[new_id] = source_split[ref.id]
            else:
                result.unassigned.append(new_id)
            shares[new_id] = (source_shares[ref.id] if ref.id in source_shares
                              else mining_share(read_mask(ref.mask)))
            plan.append((ref, cc, tile, index))
            result.patches.setdefault(name, []).append(new_id)
        for _ref, cc, tile, i in plan:
            if i == index:
                used.setdefault(cc, set()).add(int(tile))
        result.renamed[name] = renamed
    _write(out, plan, split, shares, result, [str(s) for s in sources], progress)
    return result


def _write(out: Path, plan: list[tuple[PatchRef, str, str, int]], split: dict[str, str], shares: dict[str, float],
           result: MergeResult, sources: list[str], progress: Progress | None) -> None:
    import geopandas as gpd
    from rasterio.crs import CRS
    from rasterio.warp import transform_geom
    from shapely.geometry import box, mapping, shape

    out.mkdir(parents=True, exist_ok=True)
    footprints = []
    with tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}merge-", dir=out) as scratch:
        staged = Path(scratch)
        for done, (ref, cc, tile, index) in enumerate(plan, start=1):
            year = ref.year
            folder = staged / DATASET_DIR / str(year)
            for kind, location, target in (("IMAGE", ref.image, image_name(tile, year, cc)),
                                           ("MASK", ref.mask, mask_name(tile, year, cc))):
                path = folder / kind / target
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_read_bytes(location))
            info = read_info(ref.image)
            pid = f"{cc}_{tile}_{year}"
            geometry = box(*info.bounds)
            if info.crs:
                geometry = shape(transform_geom(CRS.from_user_input(info.crs), "EPSG:4326", mapping(geometry)))
            footprints.append({"id": pid, "site": f"{cc}_{tile}", "tile": tile, "year": year, "country": cc,
                               "split": split.get(pid), "mining_share": shares.get(pid), "source": sources[index],
                               "geometry": geometry})
            result.counts[(cc, year)] = result.counts.get((cc, year), 0) + 1
            if progress:
                progress(done, len(plan))
        for year in sorted({ref.year for ref, *_ in plan}):
            year_split = {pid: s for pid, s in split.items() if pid.endswith(f"_{year}")}
            if year_split:
                write_split_csv(staged / SPLITS_DIR / split_csv_name(year), year_split, shares,
                                names={pid: f"IMG_{pid}.tif" for pid in year_split})
        for folder in (DATASET_DIR, SPLITS_DIR):
            if (out / folder).exists():
                shutil.rmtree(out / folder)
            if (staged / folder).exists():
                os.replace(staged / folder, out / folder)
    frame = gpd.GeoDataFrame(footprints, geometry="geometry", crs="EPSG:4326")
    tmp = out / f".{FOOTPRINTS}.tmp.gpkg"
    tmp.unlink(missing_ok=True)
    frame.to_file(tmp, layer=FOOTPRINT_LAYER, driver="GPKG")
    os.replace(tmp, out / FOOTPRINTS)
    write_json(out / MERGE_RECORD, {"sources": sources, "renamed": result.renamed, "unassigned": result.unassigned})
    write_text(out / CARD, _card(result, sources))
    logger.debug("%s: merged %d patches from %d datasets", out, len(plan), len(sources))


def _card(result: MergeResult, sources: list[str]) -> str:
    rows: list[list[Any]] = [[cc, year, n] for (cc, year), n in sorted(result.counts.items())]
    renamed = sum(len(r) for r in result.renamed.values())
    listed = "\n".join(f"- `{PurePosixPath(s).name}` ({len(result.patches.get(s, []))} patches)" for s in sources)
    return f"""# Merged SmallMinesDS-format dataset

Merged with `smallmines data merge` from:

{listed}

{markdown_table(["country", "year", "patches"], rows)}

Files are copied byte for byte; {renamed} patches were renumbered to keep ids unique (old -> new ids in
`merge.json`). Split files are those of the sources, merged per year; {len(result.unassigned)} patches
had no split. Footprints (EPSG:4326) with `id`, `country`, `year`, `split`, `mining_share`, `source` are
in `tiles.gpkg`. Licences, authors and citations are those of each source: see their cards.
"""
