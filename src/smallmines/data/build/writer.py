"""Writing a built dataset: patch files, a year's folder swapped in whole, split rows, footprints, JSON.

Every file is written under a temporary name in its destination folder and renamed into place. A
year is first written into a staging folder inside the output folder and then swapped in with one
rename, so an interrupted build leaves either the previous year's folder or the new one, never a
half-written year under its final name (the staging folder starts with a dot and is removed by the
next build).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smallmines.data.build.tiles import TileGrid
from smallmines.data.layout import DATASET_DIR, SPLIT_FILE, SPLITS_DIR, PatchKey
from smallmines.data.splits import parse_patch_name
from smallmines.errors import CorruptFileError

STAGING_PREFIX = ".build-"
"""Staging folders of unfinished builds start with this (inside the output folder)."""
BUILD_RECORD = "build.json"
FOOTPRINTS = "tiles.gpkg"
FOOTPRINT_LAYER = "tiles"


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes atomically (a temporary name in the same folder, then a rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def swap_in(staged: Path, final: Path) -> None:
    """Put a staged folder in place of ``final`` (replacing it) with renames only."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.with_name(f"{STAGING_PREFIX}old-{final.name}")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(staged, final)
    if old.exists():
        shutil.rmtree(old)


def clear_stale(out: Path) -> None:
    """Remove staging folders left by interrupted builds."""
    for path in out.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in (out / DATASET_DIR).glob(f"{STAGING_PREFIX}*") if (out / DATASET_DIR).is_dir() else []:
        shutil.rmtree(path, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    """Write text atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_record(folder: Path) -> dict[str, Any] | None:
    """``build.json`` of a built dataset, or None when the folder has none.

    Raises:
        CorruptFileError: the file exists but is not JSON.

    """
    path = folder / BUILD_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorruptFileError(path, f"is not a readable build record ({exc}); delete it to start a new grid") from exc


@dataclass(frozen=True)
class SplitRow:
    """One row of an official split file."""

    key: PatchKey
    name: str
    share: float
    split: str


def read_split_rows(folder: Path) -> dict[str, SplitRow]:
    """Rows of every ``data_splits/train_test_splits_{YEAR}.csv`` under ``folder``, by patch id.

    Raises:
        CorruptFileError: a split file without the official columns.

    """
    rows: dict[str, SplitRow] = {}
    splits = folder / SPLITS_DIR
    for path in sorted(splits.iterdir()) if splits.is_dir() else []:
        if not SPLIT_FILE.fullmatch(path.name):
            continue
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))
        if not {"patch_name", "class_percentage", "split"} <= set(reader.fieldnames or ()):
            raise CorruptFileError(path, f"has columns {reader.fieldnames}; expected patch_name,class_percentage,"
                                         "bin,split")
        for row in reader:
            key = parse_patch_name(row["patch_name"])
            if key is not None:
                rows[key.id] = SplitRow(key, row["patch_name"], float(row["class_percentage"] or 0), row["split"])
    return rows


def write_footprints(path: Path, grid: TileGrid, rows: Mapping[str, SplitRow],
                     nodata: Mapping[str, float] | None = None) -> Path:
    """GeoPackage of tile footprints, layer ``tiles``: id, site, tile, year, country, split, mining share.

    Args:
        path: the ``.gpkg`` to write (replaced atomically).
        grid: the tile grid (footprints come from the tile numbers).
        rows: split rows by patch id (from :func:`read_split_rows`).
        nodata: patch id -> nodata percentage, where known.

    """
    import geopandas as gpd
    from rasterio.crs import CRS
    from shapely.geometry import box

    records = []
    for pid, row in sorted(rows.items(), key=lambda kv: (kv[1].key.year, kv[1].key.country, int(kv[1].key.tile))):
        cell = grid.cell(int(row.key.tile))
        records.append({"id": pid, "site": row.key.site, "tile": row.key.tile, "year": row.key.year,
                        "country": row.key.country, "split": row.split, "mining_share": row.share,
                        "nodata_share": (nodata or {}).get(pid), "geometry": box(*grid.bounds(cell))})
    frame = gpd.GeoDataFrame(records, geometry="geometry", crs=CRS.from_wkt(grid.crs))
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    tmp.unlink(missing_ok=True)
    frame.to_file(tmp, layer=FOOTPRINT_LAYER, driver="GPKG")
    os.replace(tmp, path)
    return path
