"""Train/validation/test splits: official, stratified random, by year, by country and spatially blocked.

A split is a plain ``dict`` from patch id (``GH_0001_2016``) to ``"train"``, ``"val"`` or
``"test"``. Every method is reproducible from a seed, and any split can be written to CSV in the
official format (``patch_name,class_percentage,bin,split``) and read back.

The official split files (``data_splits/train_test_splits_{YEAR}.csv``) are stratified on mining
share per year and have no validation part; :func:`carve_validation` takes one from train. Patch
names in them may carry ``GH_`` or not and may name the image or the mask; they are matched by
(tile, year).

Random and blocked splits keep every *site* (the same tile in 2016 and 2022) in one split, so a
place seen in training is never scored in test under another year.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from smallmines.data.layout import DatasetLayout, PatchKey, find_split_files, read_text
from smallmines.errors import ConfigError, SplitError

SPLIT_NAMES = ("train", "val", "test")
BIN_EDGES = (0.0, 1.0, 5.0, 10.0, 25.0, 50.0)
"""Lower edges (percent mining) of the share bins; bin 0 is exactly 0 %, bin k covers (edge_k-1, edge_k]."""
CSV_COLUMNS = ("patch_name", "class_percentage", "bin", "split")


def share_bin(percentage: float) -> int:
    """Bin of a mining share in percent: 0 for none, then (0,1], (1,5], (5,10], (10,25], (25,50], >50."""
    if percentage <= 0:
        return 0
    return int(np.searchsorted(np.asarray(BIN_EDGES[1:]), percentage, side="left")) + 1


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _stratified_take(items: Sequence[str], strata: Mapping[str, int], fraction: float, seed: int) -> set[str]:
    """Pick ``fraction`` of ``items`` within every stratum (rounded, at least one when a stratum allows)."""
    rng = _rng(seed)
    groups: dict[int, list[str]] = defaultdict(list)
    for item in sorted(items):
        groups[strata[item]].append(item)
    taken: set[str] = set()
    for stratum in sorted(groups):
        members = groups[stratum]
        rng.shuffle(members)
        n = int(round(fraction * len(members)))
        if n == 0 and fraction > 0 and len(members) > 2:
            n = 1
        taken.update(members[:n])
    return taken


def _check_fractions(test_fraction: float, val_fraction: float) -> None:
    if not (0 <= test_fraction < 1 and 0 <= val_fraction < 1 and test_fraction + val_fraction < 1):
        raise ConfigError(f"test fraction {test_fraction} and validation fraction {val_fraction} must each be "
                          "in [0, 1) and sum to less than 1, so that something is left to train on")


def _sites(ids: Mapping[str, PatchKey]) -> dict[str, list[str]]:
    sites: dict[str, list[str]] = defaultdict(list)
    for pid, key in ids.items():
        sites[key.site].append(pid)
    return sites


def _group_split(
    groups: Mapping[str, Sequence[str]],
    shares: Mapping[str, float],
    seed: int,
    test_fraction: float,
    val_fraction: float,
) -> dict[str, str]:
    """Assign whole groups (sites or blocks) to test, val and train, stratified on their largest share."""
    _check_fractions(test_fraction, val_fraction)
    strata = {g: share_bin(max(shares.get(p, 0.0) for p in pids)) for g, pids in groups.items()}
    test = _stratified_take(list(groups), strata, test_fraction, seed)
    rest = [g for g in groups if g not in test]
    val = _stratified_take(rest, strata, val_fraction / (1 - test_fraction), seed + 1)
    out = {}
    for group, pids in groups.items():
        name = "test" if group in test else "val" if group in val else "train"
        out.update(dict.fromkeys(pids, name))
    return out


def random_split(
    keys: Mapping[str, PatchKey],
    shares: Mapping[str, float],
    seed: int = 0,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
) -> dict[str, str]:
    """Stratified random split by site: all years of a tile land in the same split.

    Sites are stratified on their largest mining share (:func:`share_bin`), so each split gets
    its share of heavily mined places. The result depends only on the patch ids, shares and seed.
    """
    return _group_split(_sites(keys), shares, seed, test_fraction, val_fraction)


def year_split(
    keys: Mapping[str, PatchKey],
    shares: Mapping[str, float],
    seed: int = 0,
    train_years: Iterable[int] = (2016,),
    test_years: Iterable[int] = (2022,),
    val_fraction: float = 0.1,
) -> dict[str, str]:
    """Train on some years, test on others (temporal transfer); validation carved from train by site.

    By design a site trained on in one year is tested in another; patches of other years are left
    out. Validation takes whole sites of the training years.
    """
    train_years, test_years = {int(y) for y in train_years}, {int(y) for y in test_years}
    if train_years & test_years:
        raise SplitError(f"years {sorted(train_years & test_years)} are in both train and test")
    out = {p: "train" if k.year in train_years else "test" for p, k in keys.items()
           if k.year in train_years | test_years}
    if not out:
        present = sorted({k.year for k in keys.values()})
        raise SplitError(f"no patch of years {sorted(train_years | test_years)}; the dataset has {present}")
    return carve_validation(out, shares, val_fraction, seed, keys=keys)


def country_split(
    keys: Mapping[str, PatchKey],
    shares: Mapping[str, float],
    seed: int = 0,
    train_countries: Iterable[str] = (),
    test_countries: Iterable[str] = (),
    val_fraction: float = 0.1,
) -> dict[str, str]:
    """Train on some countries, test on others (the transfer question of every new region).

    Validation takes whole sites of the training countries. Patches of countries in neither list are
    left out; with no ``train_countries``, every country not tested on is trained on.

    Args:
        keys: patch id -> key (its country code).
        shares: patch id -> mining percentage (stratifies the validation carve-out).
        seed: seed of the validation carve-out.
        train_countries: country codes to train on (default: all but the test ones).
        test_countries: country codes to test on.
        val_fraction: share of the training sites moved to validation.

    Raises:
        SplitError: no test country, a country in both lists, or a split with no patch.

    """
    test = {c.strip().upper() for c in test_countries if c.strip()}
    present = sorted({k.country for k in keys.values()})
    train = {c.strip().upper() for c in train_countries if c.strip()} or set(present) - test
    if not test:
        raise SplitError(f"the country split needs test countries (--test-countries); the dataset has {present}")
    if train & test:
        raise SplitError(f"countries {sorted(train & test)} are in both train and test")
    out = {p: "train" if k.country in train else "test" for p, k in keys.items() if k.country in train | test}
    for name, wanted in (("train", train), ("test", test)):
        if name not in out.values():
            raise SplitError(f"no patch of {name} countries {sorted(wanted)}; the dataset has {present} (country "
                             "codes come from the file names, IMG_CC_TTTT_YYYY.tif)")
    return carve_validation(out, shares, val_fraction, seed, keys=keys)


def spatial_split(
    keys: Mapping[str, PatchKey],
    shares: Mapping[str, float],
    centers: Mapping[str, tuple[float, float]],
    seed: int = 0,
    block_size: float = 5000.0,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
) -> dict[str, str]:
    """Spatially blocked split: tiles grouped in square blocks of ``block_size`` metres.

    Whole blocks go to one split, so neighbouring tiles (which share mining sites and streams)
    never leak between train and test. Blocks are stratified on their largest mining share. A
    site is placed by the mean centre of its patches, so its years always share a block.

    Args:
        keys: patch id -> key (site and year).
        shares: patch id -> mining percentage (for stratification).
        centers: patch id -> (x, y) of the tile centre in a projected CRS (metres).
        seed: seed of the block assignment.
        block_size: side of the square blocks, metres.
        test_fraction: share of blocks in test.
        val_fraction: share of the remaining blocks in validation.
    """
    if not block_size > 0:
        raise ConfigError(f"block size {block_size} m must be positive")
    missing = [p for p in keys if p not in centers]
    if missing:
        raise SplitError(f"no footprint for {len(missing)} patches, e.g. {missing[0]}")
    blocks: dict[str, list[str]] = defaultdict(list)
    for _site, pids in sorted(_sites(keys).items()):
        x = float(np.mean([centers[p][0] for p in pids]))
        y = float(np.mean([centers[p][1] for p in pids]))
        blocks[block_id(x, y, block_size)].extend(pids)
    return _group_split(blocks, shares, seed, test_fraction, val_fraction)


def block_id(x: float, y: float, block_size: float) -> str:
    """Name of the ``block_size`` square holding point (x, y): ``"col_row"`` (floor division)."""
    return f"{int(np.floor(x / block_size))}_{int(np.floor(y / block_size))}"


def carve_validation(
    split: Mapping[str, str],
    shares: Mapping[str, float],
    fraction: float = 0.1,
    seed: int = 0,
    keys: Mapping[str, PatchKey] | None = None,
) -> dict[str, str]:
    """Move ``fraction`` of the train patches (stratified on mining share) to ``val``; test untouched.

    Args:
        split: patch id -> ``train`` or ``test``.
        shares: patch id -> mining percentage (for stratification).
        fraction: share of the train patches (or sites) moved to validation.
        seed: seed of the choice.
        keys: patch id -> key; when given, whole sites move together (every train patch of a site
            goes to validation or none does), so validation never scores a place seen in training.
    """
    if not 0 <= fraction < 1:
        raise ConfigError(f"validation fraction {fraction} must be in [0, 1)")
    out = dict(split)
    if fraction <= 0:
        return out
    train = [p for p, s in split.items() if s == "train"]
    if keys is None:
        groups = {p: [p] for p in train}
    else:
        groups = _sites({p: keys[p] for p in train})
    strata = {g: share_bin(max(shares.get(p, 0.0) for p in pids)) for g, pids in groups.items()}
    for group in _stratified_take(list(groups), strata, fraction, seed):
        out.update(dict.fromkeys(groups[group], "val"))
    return out


_SPLIT_NAME = re.compile(
    r"^(?:(?:IMG|MASK)_)?(?:(?P<country>[A-Za-z]{2,3})_)?(?P<tile>\d+)_(?P<year>\d{4})(?:\.tiff?)?$",
    re.IGNORECASE,
)


def parse_patch_name(name: str) -> PatchKey | None:
    """Key of a ``patch_name`` in a split file; None when it is not a patch name.

    Accepts image or mask names, with or without country code and extension: ``IMG_GH_0001_2016.tif``,
    ``MASK_0001_2016``, ``GH_0001_2016`` (a patch id) and ``0001_2016``. A path is reduced to its name.
    """
    match = _SPLIT_NAME.match(PurePosixPath(name.strip().replace("\\", "/")).name)
    if match is None:
        return None
    return PatchKey(match["tile"], int(match["year"]), (match["country"] or "").upper())


def _key_of_name(name: str, known: Mapping[tuple[int, int], list[PatchKey]]) -> PatchKey | None:
    key = parse_patch_name(name)
    if key is None:
        return None
    candidates = known.get((int(key.tile), key.year), [])
    if key.country:
        candidates = [c for c in candidates if c.country in ("", key.country)]
    return candidates[0] if len(candidates) == 1 else None


def read_split_csv(text: str, source: str, keys: Mapping[str, PatchKey]) -> tuple[dict[str, str], list[str]]:
    """Parse split CSV text; returns (patch id -> split, names that match no patch).

    Raises:
        SplitError: a missing column or an unknown split value, naming ``source``.
    """
    reader = csv.DictReader(io.StringIO(text))
    columns = set(reader.fieldnames or ())
    if not {"patch_name", "split"} <= columns:
        raise SplitError(f"{source}: columns {sorted(columns)}; expected at least patch_name and split "
                         f"(official: {', '.join(CSV_COLUMNS)})")
    known: dict[tuple[int, int], list[PatchKey]] = defaultdict(list)
    for key in keys.values():
        known[(int(key.tile), key.year)].append(key)
    out: dict[str, str] = {}
    unmatched: list[str] = []
    for line, row in enumerate(reader, start=2):
        split = (row.get("split") or "").strip().lower()
        split = {"validation": "val", "valid": "val"}.get(split, split)
        if split not in SPLIT_NAMES:
            raise SplitError(f"{source}, line {line}: split {row.get('split')!r}; expected one of {SPLIT_NAMES}")
        name = (row.get("patch_name") or "").strip()
        key = _key_of_name(name, known)
        if key is None:
            unmatched.append(name)
        elif out.get(key.id, split) != split:
            raise SplitError(f"{source}, line {line}: {name} is in {split!r} here and in {out[key.id]!r} "
                             "on an earlier line; a patch belongs to one split")
        else:
            out[key.id] = split
    return out, unmatched


def official_split(
    layout: DatasetLayout,
    splits_dir: str | Path | None = None,
    years: Iterable[int] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Read the official per-year split files of a dataset.

    Returns:
        (patch id -> "train"/"test", names in the files that match no patch in the dataset).

    Raises:
        SplitError: a year has no split file (the message says where it was looked for), or no
            name in the files matches a patch.
    """
    keys = {p.id: p.key for p in layout.patches}
    wanted = sorted(set(years) if years else set(layout.years))
    files = find_split_files(layout, [splits_dir] if splits_dir else [])
    out: dict[str, str] = {}
    unmatched: list[str] = []
    for year in wanted:
        if year not in files:
            raise SplitError(
                f"no split file train_test_splits_{year}.csv for {layout.root} (looked in the dataset, in "
                f"data_splits/ beside it{' and in ' + str(splits_dir) if splits_dir else ''}); "
                "pass the folder that holds it (splits_dir=..., --splits-dir DIR) or choose another split "
                "method (random, year, spatial)"
            )
        year_keys = {p: k for p, k in keys.items() if k.year == year}
        split, missing = read_split_csv(read_text(files[year]), files[year], year_keys)
        out.update(split)
        unmatched += missing
    if not out:
        raise SplitError(f"no patch name in the split files of {layout.root} matches a patch of the dataset")
    return out, unmatched


def write_split_csv(path: str | Path, split: Mapping[str, str], shares: Mapping[str, float],
                    names: Mapping[str, str] | None = None) -> Path:
    """Write a split in the official format (atomically).

    Args:
        path: the CSV to write.
        split: patch id -> split name.
        shares: patch id -> mining percentage.
        names: patch id -> patch_name to write (default: the id).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for pid in sorted(split):
            share = float(shares.get(pid, 0.0))
            writer.writerow([(names or {}).get(pid, pid), f"{share:.4f}", share_bin(share), split[pid]])
    os.replace(tmp, path)
    return path


def write_official_split(path: str | Path, shares: Mapping[str, float], seed: int,
                         test_fraction: float = 0.2) -> Path:
    """Write an official-style split file for one year: train/test stratified on mining share.

    Args:
        path: the CSV to write.
        shares: patch name (as it will appear in ``patch_name``) -> mining percentage.
        seed: seed of the stratified choice.
        test_fraction: share of patches in test.
    """
    strata = {name: share_bin(share) for name, share in shares.items()}
    test = _stratified_take(list(shares), strata, test_fraction, seed)
    split = {name: "test" if name in test else "train" for name in shares}
    return write_split_csv(path, split, shares)


SPLIT_METHODS: dict[str, Callable[..., dict[str, str]]] = {
    "random": random_split,
    "year": year_split,
    "spatial": spatial_split,
    "country": country_split,
}
"""Generated split methods by name; ``official`` reads the published files instead."""


def summarize(split: Mapping[str, str], keys: Mapping[str, PatchKey]) -> dict[int, dict[str, int]]:
    """Counts per year and split name: ``{2016: {"train": n, "val": n, "test": n}, ...}``."""
    table: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLIT_NAMES, 0))
    for pid, name in split.items():
        table[keys[pid].year][name] += 1
    return {year: dict(row) for year, row in sorted(table.items())}
