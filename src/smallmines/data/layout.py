"""Find the SmallMinesDS files: published zip or extracted folder, both naming variants.

The published archive ``SmallMinesDS.zip`` holds::

    SmallMinesDS/{YEAR}/IMAGE/IMG_GH_TTTT_YYYY.tif     13 x 128 x 128 float32, nodata -9999
    SmallMinesDS/{YEAR}/MASK/MASK_GH_TTTT_YYYY.tif     1 x 128 x 128 uint8, 0/1, nodata 255
    data_splits/train_test_splits_{YEAR}.csv           patch_name,class_percentage,bin,split

Some copies drop the country code (``IMG_TTTT_YYYY.tif``); other years and country codes are accepted
so the dataset can grow. Images and masks are paired by (country, tile, year); files that have no
partner are reported as orphans, never silently dropped. A zip is read in place through GDAL's
``/vsizip/`` with no extraction.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from smallmines.errors import CorruptFileError, DatasetNotFoundError

logger = logging.getLogger(__name__)

DATASET_DIR = "SmallMinesDS"
SPLITS_DIR = "data_splits"
SPLIT_FILE = re.compile(r"train_test_splits_(\d{4})\.csv", re.IGNORECASE)
_NAME = re.compile(
    r"^(?P<kind>IMG|MASK)_(?:(?P<country>[A-Za-z]{2,3})_)?(?P<tile>\d+)_(?P<year>\d{4})\.tiff?$",
    re.IGNORECASE,
)


def image_name(tile: int | str, year: int, country: str | None = "GH") -> str:
    """Published image file name, e.g. ``IMG_GH_0001_2016.tif`` (``IMG_0001_2016.tif`` without country)."""
    return _file_name("IMG", tile, year, country)


def mask_name(tile: int | str, year: int, country: str | None = "GH") -> str:
    """Published mask file name, e.g. ``MASK_GH_0001_2016.tif``."""
    return _file_name("MASK", tile, year, country)


def _file_name(kind: str, tile: int | str, year: int, country: str | None) -> str:
    tile_str = f"{int(tile):04d}" if isinstance(tile, int) else str(tile)
    middle = f"{country}_" if country else ""
    return f"{kind}_{middle}{tile_str}_{int(year)}.tif"


def split_csv_name(year: int) -> str:
    """Official split file name for ``year``: ``train_test_splits_2016.csv``."""
    return f"train_test_splits_{int(year)}.csv"


@dataclass(frozen=True, order=True)
class PatchKey:
    """Identity of a patch: tile id and year (and the country code when the file names carry one)."""

    tile: str
    year: int
    country: str = ""

    @property
    def id(self) -> str:
        """Stable patch id, ``GH_0001_2016`` (or ``0001_2016`` without country)."""
        prefix = f"{self.country}_" if self.country else ""
        return f"{prefix}{self.tile}_{self.year}"

    @property
    def site(self) -> str:
        """The place, independent of year: ``GH_0001``. The same site exists in several years."""
        return f"{self.country}_{self.tile}" if self.country else self.tile


def parse_name(name: str) -> tuple[str, PatchKey] | None:
    """Parse ``IMG_GH_0001_2016.tif`` into ``("IMG", PatchKey("0001", 2016, "GH"))``; None if not a patch."""
    match = _NAME.match(PurePosixPath(name).name)
    if match is None:
        return None
    key = PatchKey(match["tile"], int(match["year"]), (match["country"] or "").upper())
    return match["kind"].upper(), key


@dataclass(frozen=True)
class PatchRef:
    """One image/mask pair: paths are GDAL paths (``/vsizip/...`` inside a zip)."""

    key: PatchKey
    image: str
    mask: str

    @property
    def id(self) -> str:
        """Patch id, ``GH_0001_2016``."""
        return self.key.id

    @property
    def year(self) -> int:
        """Acquisition year."""
        return self.key.year


@dataclass
class DatasetLayout:
    """What :func:`discover` found at a path.

    Attributes:
        root: the path given to :func:`discover`.
        is_zip: whether ``root`` is a zip archive (read in place through ``/vsizip/``).
        patches: image/mask pairs, sorted by year, country and tile number.
        orphans: images without a mask and masks without an image (GDAL paths).
        split_files: year -> official split CSV found inside the dataset.
        ignored: ``.tif`` files whose names are not SmallMinesDS patch names.
        duplicates: patch files shadowed by another file with the same (kind, country, tile, year),
            e.g. ``.tif`` beside ``.tiff`` or a second copy in another folder; the first in sorted
            order is used.
    """

    root: Path
    is_zip: bool
    patches: list[PatchRef]
    orphans: list[str] = field(default_factory=list)
    split_files: dict[int, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    @property
    def years(self) -> list[int]:
        """Years that have at least one complete patch, sorted."""
        return sorted({p.year for p in self.patches})

    def by_id(self) -> dict[str, PatchRef]:
        """Patches by id."""
        return {p.id: p for p in self.patches}


def _gdal_path(root: Path, member: str, is_zip: bool) -> str:
    return f"/vsizip/{root.resolve()}/{member}" if is_zip else str(root / member)


def _list_members(root: Path) -> tuple[list[str], bool]:
    """Relative POSIX paths of every file under ``root`` (a folder or a zip), sorted."""
    if root.is_file():
        try:
            with zipfile.ZipFile(root) as archive:
                return sorted(n for n in archive.namelist() if not n.endswith("/")), True
        except (zipfile.BadZipFile, OSError) as exc:
            raise CorruptFileError(
                root, f"is not a readable zip archive ({exc}); give SmallMinesDS.zip, the folder that holds "
                "SmallMinesDS/, or a .smpack file"
            ) from exc
    return [p.relative_to(root).as_posix() for p in sorted(root.rglob("*")) if p.is_file()], False


def _sort_key(ref: PatchRef) -> tuple[int, str, int, str]:
    """Year, country, then tile by number (``0009`` before ``0010`` before ``10000``)."""
    return ref.key.year, ref.key.country, int(ref.key.tile), ref.key.tile


def discover(path: str | Path) -> DatasetLayout:
    """Find every patch, its mask and the split files under ``path``.

    Args:
        path: ``SmallMinesDS.zip``, a folder holding ``SmallMinesDS/`` (and ``data_splits/``), or the
            ``SmallMinesDS`` folder itself.

    Returns:
        The layout, with patches sorted by year then tile, orphans listed.

    Raises:
        DatasetNotFoundError: when ``path`` does not exist or holds no SmallMinesDS patch.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetNotFoundError(
            f"{root}: no such file or folder; give SmallMinesDS.zip or the folder that holds "
            "SmallMinesDS/{YEAR}/IMAGE (create a synthetic one with `smallmines data synth`)"
        )
    members, is_zip = _list_members(root)
    images: dict[PatchKey, str] = {}
    masks: dict[PatchKey, str] = {}
    splits: dict[int, str] = {}
    ignored: list[str] = []
    duplicates: list[str] = []
    strays: list[PurePosixPath] = []
    patch_folders: set[PurePosixPath] = set()
    for member in members:
        posix = PurePosixPath(member)
        if any(part.startswith(".") for part in posix.parts) or "__MACOSX" in posix.parts:
            continue  # hidden files and folders (a killed run's scratch folder, macOS resource forks)
        split_match = SPLIT_FILE.fullmatch(posix.name)
        if split_match:
            splits.setdefault(int(split_match[1]), _gdal_path(root, member, is_zip))
            continue
        parsed = parse_name(posix.name)
        if parsed is None:
            if posix.suffix.lower() in {".tif", ".tiff"}:
                strays.append(posix)
            continue
        patch_folders.add(posix.parent)
        kind, key = parsed
        target = images if kind == "IMG" else masks
        if key in target:
            duplicates.append(_gdal_path(root, member, is_zip))
            continue
        target[key] = _gdal_path(root, member, is_zip)
    # a misnamed patch sits among patches; other rasters (scenes beside the dataset, say) are not reported
    ignored = [_gdal_path(root, str(p), is_zip) for p in strays if p.parent in patch_folders or not patch_folders]
    if not images and not masks:
        zips = sorted(root.glob("*.zip")) if root.is_dir() else []
        hint = f"; did you mean {zips[0]}?" if zips else ""
        raise DatasetNotFoundError(
            f"{root}: no SmallMinesDS patches found (expected SmallMinesDS/YEAR/IMAGE/IMG_GH_TTTT_YYYY.tif "
            f"and SmallMinesDS/YEAR/MASK/MASK_GH_TTTT_YYYY.tif){hint}"
        )
    patches = [PatchRef(k, images[k], masks[k]) for k in images.keys() & masks.keys()]
    patches.sort(key=_sort_key)
    orphans = sorted(images[k] for k in images.keys() - masks.keys())
    orphans += sorted(masks[k] for k in masks.keys() - images.keys())
    if orphans:
        logger.warning("%s: %d patch files have no partner (image without mask or mask without image), "
                       "e.g. %s", root, len(orphans), orphans[0])
    logger.debug("%s: %d patches, years %s, %d split files", root, len(patches),
                 sorted({p.year for p in patches}), len(splits))
    return DatasetLayout(root, is_zip, patches, orphans, splits, ignored, duplicates)


def _split_vsizip(location: str) -> tuple[Path, str]:
    """``/vsizip//data/x.zip/a/b.csv`` -> (``/data/x.zip``, ``a/b.csv``): the longest prefix that is a file."""
    parts = PurePosixPath(location[len("/vsizip/") :]).parts
    for cut in range(len(parts) - 1, 0, -1):
        archive = Path(*parts[:cut])
        if archive.is_file():
            return archive, "/".join(parts[cut:])
    raise DatasetNotFoundError(f"{location}: no zip archive found in this path")


def read_text(location: str | Path) -> str:
    """Read a small text file (a split CSV) from disk or from inside a zip (``/vsizip/ZIP/member``).

    A UTF-8 byte-order mark (spreadsheet exports) is dropped.

    Raises:
        DatasetNotFoundError: the file (or the zip member) does not exist.
        CorruptFileError: the file cannot be read or decoded as UTF-8 text.
    """
    location = str(location)
    try:
        if location.startswith("/vsizip/"):
            archive_path, member = _split_vsizip(location)
            with zipfile.ZipFile(archive_path) as archive:
                raw = archive.read(member)
        else:
            raw = Path(location).read_bytes()
        return raw.decode("utf-8-sig")
    except (FileNotFoundError, KeyError) as exc:
        raise DatasetNotFoundError(f"{location}: no such file") from exc
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise CorruptFileError(location, f"cannot be read as UTF-8 text ({exc})") from exc


def find_split_files(layout: DatasetLayout, extra_dirs: Iterable[str | Path] = ()) -> dict[int, str]:
    """Split files found in the dataset, plus ``data_splits`` beside a zip or in ``extra_dirs``."""
    found = dict(layout.split_files)
    candidates = [Path(d) for d in extra_dirs]
    for folder in candidates:
        if not folder.is_dir():
            raise DatasetNotFoundError(f"{folder}: split folder not found (--splits-dir / data.splits_dir); give "
                                       "the folder that holds train_test_splits_{YEAR}.csv")
    base = layout.root.parent if layout.is_zip else layout.root
    candidates += [base / SPLITS_DIR, base.parent / SPLITS_DIR]
    for folder in candidates:
        for csv in sorted(folder.iterdir()) if folder.is_dir() else []:
            match = SPLIT_FILE.fullmatch(csv.name)
            if match and csv.is_file():
                found.setdefault(int(match[1]), str(csv))
    return found
