"""Check a SmallMinesDS dataset (zip, folder or pack) and report every problem, file by file.

:func:`check_dataset` reads every patch once and never stops at the first bad file: each problem
becomes a :class:`Problem` naming its file, and the report adds counts per year and split, the
mining share per year and the value range of every band. Problems come in two levels:

* ``error``: the data is broken or incomplete: a file that cannot be read (corrupt or truncated,
  not a TIFF), the wrong band count, shape or dtype, mask values outside {0, 1, 255}, an image
  without its mask or a mask without its image, an image and mask on different CRSs or footprints,
  a missing or malformed split file, no patch at all. :attr:`CheckReport.ok` is False.
* ``warning``: usable data with something worth knowing: a patch with no valid pixel (it is left
  out of training), split names matching no patch, patches absent from the split files, a missing
  CRS or tiles on different CRSs, duplicate or unrecognised files.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smallmines.bands import BAND_NAMES, IMAGE_NODATA, MASK_NODATA
from smallmines.data.io import PATCH_SIZE, RasterInfo, load_image, load_mask, merge_nodata
from smallmines.data.layout import (
    SPLITS_DIR,
    DatasetLayout,
    PatchKey,
    PatchRef,
    discover,
    find_split_files,
    image_name,
    mask_name,
    parse_name,
    read_text,
    split_csv_name,
)
from smallmines.data.pack import PackedSource, is_pack
from smallmines.data.splits import read_split_csv
from smallmines.errors import DataFormatError, SmallminesError

logger = logging.getLogger(__name__)

ERROR = "error"
WARNING = "warning"
LEVELS = (ERROR, WARNING)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file."""

    path: str
    message: str
    level: str = ERROR

    def __str__(self) -> str:
        return f"{self.level}: {self.path}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        """``{"level", "path", "message"}``."""
        return {"level": self.level, "path": self.path, "message": self.message}


@dataclass
class _Range:
    """Running min, max and mean of one band's valid pixels."""

    lo: float = np.inf
    hi: float = -np.inf
    total: float = 0.0
    count: int = 0

    def update(self, values: np.ndarray) -> None:
        valid = values[np.isfinite(values)]
        if valid.size:
            self.lo = min(self.lo, float(valid.min()))
            self.hi = max(self.hi, float(valid.max()))
            self.total += float(valid.sum(dtype=np.float64))
            self.count += int(valid.size)

    def to_dict(self) -> dict[str, float | int | None]:
        if not self.count:
            return {"min": None, "max": None, "mean": None, "count": 0}
        return {"min": self.lo, "max": self.hi, "mean": self.total / self.count, "count": self.count}


@dataclass
class CheckReport:
    """What :func:`check_dataset` found.

    Attributes:
        root: the checked path.
        kind: ``"zip"``, ``"folder"`` or ``"pack"``.
        patches: image/mask pairs found.
        usable: pairs that read without error and hold at least one valid pixel.
        counts: year -> ``{"patches", "usable", "train", "val", "test", "unassigned"}``; the split
            columns count patches by the official split files (``unassigned``: in none of them).
        shares: year -> percentage of valid pixels that are mining (usable patches).
        band_ranges: band -> ``{"min", "max", "mean", "count"}`` over valid pixels of usable patches.
        problems: every problem found, in the order found.
    """

    root: str
    kind: str = "folder"
    patches: int = 0
    usable: int = 0
    counts: dict[int, dict[str, int]] = field(default_factory=dict)
    shares: dict[int, float] = field(default_factory=dict)
    band_ranges: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        """Error-level problems: the data is broken or incomplete."""
        return [p for p in self.problems if p.level == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        """Warning-level problems: usable, but worth knowing."""
        return [p for p in self.problems if p.level == WARNING]

    @property
    def ok(self) -> bool:
        """True when no error-level problem was found (warnings do not count)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (years become string keys)."""
        return {
            "root": self.root,
            "kind": self.kind,
            "ok": self.ok,
            "patches": self.patches,
            "usable": self.usable,
            "counts": {str(y): dict(c) for y, c in self.counts.items()},
            "shares": {str(y): s for y, s in self.shares.items()},
            "band_ranges": {b: dict(r) for b, r in self.band_ranges.items()},
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "problems": [p.to_dict() for p in self.problems],
        }


class _Tally:
    """Accumulates counts, mining pixels and band ranges over usable patches."""

    def __init__(self) -> None:
        self.counts: dict[int, dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(("patches", "usable", "train", "val", "test", "unassigned"), 0))
        self.mining: Counter[int] = Counter()
        self.valid: Counter[int] = Counter()
        self.ranges = {b: _Range() for b in BAND_NAMES}

    def add(self, year: int, image: np.ndarray, mask: np.ndarray) -> None:
        self.counts[year]["usable"] += 1
        self.mining[year] += int((mask == 1).sum())
        self.valid[year] += int((mask != MASK_NODATA).sum())
        for band, plane in zip(BAND_NAMES, image, strict=True):
            self.ranges[band].update(plane)

    def fill(self, report: CheckReport) -> None:
        report.counts = {y: dict(c) for y, c in sorted(self.counts.items())}
        report.usable = sum(c["usable"] for c in self.counts.values())
        report.shares = {y: 100.0 * self.mining[y] / self.valid[y] if self.valid[y] else 0.0
                         for y in sorted(self.counts)}
        report.band_ranges = {b: r.to_dict() for b, r in self.ranges.items()}


def check_dataset(
    path: str | Path,
    splits_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """Check every file of a dataset and collect every problem; never raises on bad data.

    Args:
        path: ``SmallMinesDS.zip``, a folder holding ``SmallMinesDS/`` (or that folder itself), or a
            ``.smpack`` pack.
        splits_dir: folder holding ``train_test_splits_{YEAR}.csv`` when not beside the data.
        progress: called as ``progress(done, total)`` after every patch.

    Returns:
        The report; ``report.ok`` is False when any error-level problem was found.
    """
    path = Path(path).expanduser()
    report = CheckReport(str(path))
    try:
        if is_pack(path):
            report.kind = "pack"
            _check_pack(path, report, progress)
            return report
        layout = discover(path)
    except SmallminesError as exc:
        message = getattr(exc, "problem", str(exc))
        message = message.removeprefix(f"{path}: ")  # the line names the path once
        report.problems.append(Problem(getattr(exc, "path", str(path)), message))
        return report
    report.kind = "zip" if layout.is_zip else "folder"
    _check_files(layout, report)
    tally = _Tally()
    usable = _check_patches(layout, report, tally, progress)
    _check_crs(usable, report)
    _check_splits(layout, splits_dir, report, tally)
    tally.fill(report)
    report.patches = len(layout.patches)
    if not layout.patches:
        report.problems.append(Problem(str(path), "holds no complete image/mask pair"))
    logger.debug("checked %s: %d patches, %d usable, %d problems", path, report.patches, report.usable,
                 len(report.problems))
    return report


def _partner(orphan: str) -> str:
    """What an orphan lacks: the mask name for an image, the image name for a mask."""
    parsed = parse_name(orphan)
    if parsed is None:  # pragma: no cover - discover only lists parsed names as orphans
        return "its partner"
    kind, key = parsed
    country = key.country or None
    tile = key.tile
    return (f"no mask {mask_name(tile, key.year, country)}" if kind == "IMG"
            else f"no image {image_name(tile, key.year, country)}")


def _check_files(layout: DatasetLayout, report: CheckReport) -> None:
    for orphan in layout.orphans:
        report.problems.append(Problem(orphan, f"has {_partner(orphan)}; the patch cannot be used"))
    for dup in layout.duplicates:
        report.problems.append(Problem(dup, "duplicates a patch file found earlier (same kind, tile and year); "
                                            "this copy is ignored", WARNING))
    for name in layout.ignored:
        report.problems.append(Problem(name, "is not named like a SmallMinesDS patch (IMG_GH_TTTT_YYYY.tif or "
                                             "MASK_GH_TTTT_YYYY.tif); ignored", WARNING))


def _check_patches(
    layout: DatasetLayout,
    report: CheckReport,
    tally: _Tally,
    progress: Callable[[int, int], None] | None,
) -> list[tuple[PatchRef, RasterInfo]]:
    """Read every pair; returns the usable ones with their image header."""
    usable: list[tuple[PatchRef, RasterInfo]] = []
    total = len(layout.patches)
    for done, ref in enumerate(layout.patches, start=1):
        tally.counts[ref.year]["patches"] += 1
        found = _check_pair(ref, report)
        if found is not None:
            image, info, mask = found
            tally.add(ref.year, image, mask)
            usable.append((ref, info))
        if progress:
            progress(done, total)
    return usable


def _check_pair(ref: PatchRef, report: CheckReport) -> tuple[np.ndarray, RasterInfo, np.ndarray] | None:
    """Problems of one image/mask pair; the image, its header and the merged mask when usable."""
    image = mask = info = minfo = None
    try:
        image, info = load_image(ref.image)
    except DataFormatError as exc:
        report.problems.append(Problem(exc.path, exc.problem))
    try:
        mask, minfo = load_mask(ref.mask)
    except DataFormatError as exc:
        report.problems.append(Problem(exc.path, exc.problem))
    if image is None or mask is None or info is None or minfo is None:
        return None
    if info.nodata is not None and info.nodata != IMAGE_NODATA:
        report.problems.append(Problem(ref.image, f"declares nodata {info.nodata}; SmallMinesDS images use "
                                                  f"{IMAGE_NODATA:g} (only {IMAGE_NODATA:g} is treated as nodata)",
                                       WARNING))
    if minfo.dtype != "uint8":
        report.problems.append(Problem(ref.mask, f"has dtype {minfo.dtype}; SmallMinesDS masks are uint8", WARNING))
    if info.crs is None:
        report.problems.append(Problem(ref.image, "has no CRS; its footprint cannot be placed (spatial splits "
                                                  "and maps need one)", WARNING))
    if minfo.crs is None:
        report.problems.append(Problem(ref.mask, "has no CRS", WARNING))
    if (info.height, info.width) != (minfo.height, minfo.width):
        report.problems.append(Problem(ref.image, f"is {info.height} x {info.width} pixels but its mask {ref.mask} "
                                                  f"is {minfo.height} x {minfo.width}; they must match"))
        return None
    if (info.height, info.width) != (PATCH_SIZE, PATCH_SIZE):
        report.problems.append(Problem(ref.image, f"is an edge patch of {info.height} x {info.width} pixels; it is "
                                                  f"padded with nodata to {PATCH_SIZE} x {PATCH_SIZE} and used",
                                       WARNING))
    if info.crs and minfo.crs and info.crs != minfo.crs:
        report.problems.append(Problem(ref.mask, f"is on CRS {minfo.crs} but its image {ref.image} is on "
                                                 f"{info.crs}; they must match"))
        return None
    if not np.allclose(info.bounds, minfo.bounds, rtol=0, atol=1e-3):
        report.problems.append(Problem(ref.mask, f"covers {_fmt_bounds(minfo.bounds)} but its image {ref.image} "
                                                 f"covers {_fmt_bounds(info.bounds)}; they must match"))
        return None
    merged = merge_nodata(image, mask)
    if (merged == MASK_NODATA).all():
        report.problems.append(Problem(ref.image, "every pixel is nodata (-9999 in the image or 255 in the mask); "
                                                  "the patch is left out", WARNING))
        return None
    return image, info, merged


def _fmt_bounds(bounds: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in bounds) + ")"


def _check_crs(usable: list[tuple[PatchRef, RasterInfo]], report: CheckReport) -> None:
    """Warn about tiles whose CRS differs from the CRS most tiles use."""
    crs_counts = Counter(info.crs for _, info in usable if info.crs)
    if len(crs_counts) < 2:
        return
    (majority, n), = crs_counts.most_common(1)
    for ref, info in usable:
        if info.crs and info.crs != majority:
            report.problems.append(Problem(ref.image, f"is on CRS {info.crs} while {n} of {len(usable)} tiles are "
                                                      f"on {majority}", WARNING))


def _check_splits(
    layout: DatasetLayout,
    splits_dir: str | Path | None,
    report: CheckReport,
    tally: _Tally,
) -> None:
    """Official split files: one per year, well formed, naming existing patches, covering all."""
    if splits_dir is not None and not Path(splits_dir).is_dir():
        report.problems.append(Problem(str(splits_dir), "split folder does not exist"))
    files = find_split_files(layout, [splits_dir] if splits_dir else [])
    by_year: dict[int, dict[str, PatchKey]] = defaultdict(dict)
    refs = {p.id: p for p in layout.patches}
    for ref in layout.patches:
        by_year[ref.year][ref.id] = ref.key
    base = Path(splits_dir) if splits_dir else (layout.root.parent if layout.is_zip else layout.root) / SPLITS_DIR
    for year in sorted(by_year):
        keys = by_year[year]
        if year not in files:
            report.problems.append(Problem(str(base / split_csv_name(year)),
                                           f"is missing: no official split for the {len(keys)} patches of {year} "
                                           "(pass the folder that holds it with --splits-dir, or use a generated "
                                           "split: random, year, spatial)"))
            tally.counts[year]["unassigned"] += len(keys)
            continue
        try:
            split, unmatched = read_split_csv(read_text(files[year]), files[year], keys)
        except SmallminesError as exc:
            report.problems.append(Problem(files[year], str(exc).removeprefix(f"{files[year]}").lstrip(":, ")))
            tally.counts[year]["unassigned"] += len(keys)
            continue
        if unmatched:
            shown = ", ".join(unmatched[:5]) + (", ..." if len(unmatched) > 5 else "")
            report.problems.append(Problem(files[year], f"{len(unmatched)} patch names match no patch of {year} "
                                                        f"in the dataset: {shown}", WARNING))
        for name in split.values():
            tally.counts[year][name] += 1
        for pid in sorted(keys.keys() - split.keys(), key=lambda p: refs[p].image):
            tally.counts[year]["unassigned"] += 1
            report.problems.append(Problem(refs[pid].image, f"is absent from the split file {files[year]}; "
                                                            "the official split leaves it out", WARNING))


def _check_pack(path: Path, report: CheckReport, progress: Callable[[int, int], None] | None) -> None:
    """A pack: its header and every stored patch; files skipped while packing become warnings."""
    pack = PackedSource(path)
    tally = _Tally()
    official = pack.header.official
    for image_path, reason in pack.header.skipped.items():
        report.problems.append(Problem(image_path, f"was left out of the pack: {reason}", WARNING))
    for i, key in enumerate(pack.header.keys):
        image, mask = pack.read(i)
        counts = tally.counts[key.year]
        counts["patches"] += 1
        counts[official.get(key.id, "unassigned")] += 1
        if (mask == MASK_NODATA).all():
            report.problems.append(Problem(f"{path}[{key.id}]", "every pixel is nodata", WARNING))
        else:
            tally.add(key.year, image, mask)
        if progress:
            progress(i + 1, len(pack))
    if not official:
        report.problems.append(Problem(str(path), "holds no official split (the dataset had no split files when "
                                                  "it was packed); use a generated split", WARNING))
    tally.fill(report)
    report.patches = len(pack)
