"""A packed cache: the whole dataset in one memory-mapped file.

Reading 4,270 small GeoTIFFs costs far more than their 3.6 GB of pixels; the pack stores the same
raw values (float32 with NaN for nodata, uint8 masks with 255 nodata) contiguously, so an epoch costs
about as much as reading the bytes, and the whole array can be moved to a GPU in one copy.

File layout (``.smpack``, version 2)::

    bytes 0-7     magic  b"SMPACK02"
    bytes 8-15    little-endian uint64: offset of the JSON header
    bytes 16-23   little-endian uint64: length of the JSON header
    4096 ...      images  (N, 13, H, W) float32, NaN = nodata
    ...           masks   (N, H, W) uint8, 255 = nodata
    header offset UTF-8 JSON: patch keys, footprints, CRS, mining shares, official split, skipped files

The header comes last, so patches that turn out to be unreadable while packing are left out (and
listed under ``skipped``) without reserving space in advance. Version 1 packs (``SMPACK01``: the
header right after a length at byte 8) are still read.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smallmines.bands import BAND_NAMES, MASK_NODATA
from smallmines.data.io import PATCH_SIZE, load_image, load_mask, merge_nodata, mining_share
from smallmines.data.layout import DatasetLayout, PatchKey, PatchRef, discover, find_split_files
from smallmines.errors import CorruptFileError, DataFormatError, SmallminesError, SplitError
from smallmines.folders import free_space_check, refuse_overwrite

logger = logging.getLogger(__name__)

MAGIC = b"SMPACK02"
MAGIC_V1 = b"SMPACK01"
MAGICS = (MAGIC, MAGIC_V1)
ALIGN = 4096


@dataclass
class PackHeader:
    """What a pack knows about its patches besides the pixels.

    ``skipped`` maps the image path of every patch left out while packing to the reason.
    """

    keys: list[PatchKey]
    centers: list[tuple[float, float]]
    shares: list[float]
    crs: list[str | None]
    official: dict[str, str]
    source: str
    size: int
    images_offset: int
    masks_offset: int
    skipped: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON header (version 2)."""
        return {
            "version": 2,
            "bands": list(BAND_NAMES),
            "keys": [[k.tile, k.year, k.country] for k in self.keys],
            "centers": [list(c) for c in self.centers],
            "shares": self.shares,
            "crs": self.crs,
            "official": self.official,
            "source": self.source,
            "size": self.size,
            "images_offset": self.images_offset,
            "masks_offset": self.masks_offset,
            "skipped": self.skipped,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PackHeader:
        """Parse a JSON header (version 1 or 2)."""
        return cls(
            [PatchKey(str(t), int(y), str(c)) for t, y, c in data["keys"]],
            [(float(c[0]), float(c[1])) for c in data["centers"]],
            [float(s) for s in data["shares"]],
            list(data["crs"]),
            dict(data["official"]),
            str(data["source"]),
            int(data["size"]),
            int(data["images_offset"]),
            int(data["masks_offset"]),
            dict(data.get("skipped", {})),
        )


def _read_official(layout: DatasetLayout, splits_dir: str | Path | None) -> dict[str, str]:
    """The official split when split files exist for every year; {} (logged) otherwise."""
    from smallmines.data.splits import official_split

    if not find_split_files(layout, [splits_dir] if splits_dir else []):
        logger.info("%s has no official split files; the pack stores no official split", layout.root)
        return {}
    try:
        return official_split(layout, splits_dir)[0]
    except SmallminesError as exc:
        logger.warning("the pack stores no official split: %s", exc)
        return {}


def pack_dataset(
    layout: DatasetLayout | str | Path,
    out: str | Path,
    official: dict[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    splits_dir: str | Path | None = None,
    overwrite: bool = True,
) -> Path:
    """Write every usable patch of a dataset into one ``.smpack`` file (atomically).

    A patch that fails to read (corrupt file, wrong bands, shape or dtype, bad mask values, no valid
    pixel) is left out with a logged warning and recorded in the header's ``skipped`` map, so one bad
    file does not cost the whole pack; ``smallmines data check`` explains each.

    Args:
        layout: a discovered layout or a dataset path.
        out: the pack file to write.
        official: the official split (patch id -> split) to store; by default it is read from the
            dataset's split files when they exist (nothing is stored otherwise).
        progress: called as ``progress(done, total)``.
        splits_dir: folder holding ``train_test_splits_{YEAR}.csv`` when not beside the data.
        overwrite: replace an existing pack (the command line refuses by default, ``--overwrite``).

    Returns:
        The pack path.

    Raises:
        DataFormatError: when no patch at all can be read.
        ConfigError: ``out`` exists and ``overwrite`` is False, or its disk has too little free space
            (checked first: a memory-mapped write into a full disk dies with SIGBUS).
    """
    refuse_overwrite([out], overwrite)
    layout = layout if isinstance(layout, DatasetLayout) else discover(layout)
    if official is None:
        official = _read_official(layout, splits_dir)
    refs = layout.patches
    n, size, bands = len(refs), PATCH_SIZE, len(BAND_NAMES)
    if n == 0:
        raise DataFormatError(layout.root, "holds no complete patch (every image lacks its mask or the reverse)")
    images_offset = ALIGN
    masks_offset = images_offset + n * bands * size * size * 4  # room for all; trimmed below

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    free_space_check(out.parent, masks_offset + n * size * size, f"the pack {out}")
    kept: list[PatchRef] = []
    centers: list[tuple[float, float]] = []
    crs: list[str | None] = []
    shares: list[float] = []
    skipped: dict[str, str] = {}
    try:
        with open(tmp, "wb") as fh:
            fh.truncate(masks_offset + n * size * size)
        images = np.memmap(tmp, np.float32, "r+", images_offset, (n, bands, size, size))
        masks = np.memmap(tmp, np.uint8, "r+", masks_offset, (n, size, size))
        for i, ref in enumerate(refs):
            try:
                image, info = load_image(ref.image, size)
                mask = merge_nodata(image, load_mask(ref.mask, size)[0])
                if (mask == MASK_NODATA).all():
                    raise DataFormatError(ref.image, "every pixel is nodata (-9999 in the image or 255 in the mask)")
            except DataFormatError as exc:
                logger.warning("skipping patch %s: %s", ref.id, exc)
                skipped[ref.image] = str(exc)
            else:
                j = len(kept)
                images[j], masks[j] = image, mask
                kept.append(ref)
                b = info.bounds
                centers.append(((b[0] + b[2]) / 2, (b[1] + b[3]) / 2))
                crs.append(info.crs)
                shares.append(mining_share(mask))
            if progress:
                progress(i + 1, n)
        images.flush()
        masks.flush()
        del images, masks
        if not kept:
            raise DataFormatError(layout.root, f"none of its {n} patches can be read; run `smallmines data check "
                                               f"{layout.root}` to see why")
        m = len(kept)
        if m < n:  # move the masks block up against the kept images and trim the file
            _move_masks(tmp, masks_offset, images_offset + m * bands * size * size * 4, m * size * size)
            masks_offset = images_offset + m * bands * size * size * 4
        ids = {r.id for r in kept}
        header = PackHeader([r.key for r in kept], centers, shares, crs,
                            {k: v for k, v in official.items() if k in ids}, str(layout.root), size,
                            images_offset, masks_offset, skipped)
        blob = json.dumps(header.to_json()).encode("utf-8")
        header_offset = masks_offset + m * size * size
        with open(tmp, "r+b") as fh:
            fh.truncate(header_offset)
            fh.seek(header_offset)
            fh.write(blob)
            fh.seek(0)
            fh.write(MAGIC + struct.pack("<QQ", header_offset, len(blob)))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    if skipped:
        logger.warning("%s: packed %d of %d patches; %d skipped (listed in the header)", out, len(kept), n,
                       len(skipped))
    return out


def _move_masks(path: Path, src: int, dst: int, length: int, chunk: int = 1 << 24) -> None:
    """Copy ``length`` bytes from offset ``src`` to ``dst < src`` in place, front to back."""
    with open(path, "r+b") as fh:
        done = 0
        while done < length:
            step = min(chunk, length - done)
            fh.seek(src + done)
            data = fh.read(step)
            fh.seek(dst + done)
            fh.write(data)
            done += step


def is_pack(path: str | Path) -> bool:
    """Whether ``path`` is a file that starts with a smallmines pack magic."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        return fh.read(len(MAGIC)) in MAGICS


class PackedSource:
    """Read-only view of a ``.smpack`` file: memory-mapped images and masks plus the header.

    The memory maps are opened lazily and dropped when pickled, so a source sent to DataLoader
    workers costs a few kilobytes, not the whole array.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.header = self._read_header()
        h, n, size = self.header, len(self.header.keys), self.header.size
        expected = h.masks_offset + n * size * size
        actual = self.path.stat().st_size
        if actual < expected:
            raise CorruptFileError(self.path, f"is truncated: {actual} bytes, expected at least {expected}")
        self._maps: tuple[np.memmap, np.memmap] | None = None

    def _read_header(self) -> PackHeader:
        try:
            with open(self.path, "rb") as fh:
                magic = fh.read(8)
                if magic == MAGIC:
                    offset, length = struct.unpack("<QQ", fh.read(16))
                elif magic == MAGIC_V1:
                    (length,) = struct.unpack("<Q", fh.read(8))
                    offset = 16
                else:
                    raise CorruptFileError(self.path, f"is not a smallmines pack (magic {magic!r}, expected {MAGIC!r})")
                fh.seek(offset)
                blob = fh.read(length)
                if len(blob) != length:
                    raise CorruptFileError(self.path, f"is truncated: its header needs {length} bytes at {offset}")
                return PackHeader.from_json(json.loads(blob))
        except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
            if isinstance(exc, CorruptFileError):
                raise
            raise CorruptFileError(self.path, f"cannot be read as a smallmines pack ({exc})") from exc

    @property
    def images(self) -> np.memmap:
        """``(N, 13, H, W)`` float32 memory map (NaN nodata)."""
        return self._open()[0]

    @property
    def masks(self) -> np.memmap:
        """``(N, H, W)`` uint8 memory map (255 nodata)."""
        return self._open()[1]

    def _open(self) -> tuple[np.memmap, np.memmap]:
        if self._maps is None:
            h, n, size = self.header, len(self.header.keys), self.header.size
            images = np.memmap(self.path, np.float32, "r", h.images_offset, (n, len(BAND_NAMES), size, size))
            masks = np.memmap(self.path, np.uint8, "r", h.masks_offset, (n, size, size))
            self._maps = images, masks
        return self._maps

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_maps"] = None
        return state

    def __len__(self) -> int:
        return len(self.header.keys)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw image (NaN nodata) and mask (255 nodata) of patch ``i``, as in :func:`read_patch`."""
        images, masks = self._open()
        return np.array(images[i]), np.array(masks[i])

    def official_split(self) -> dict[str, str]:
        """The official split stored when packing.

        Raises:
            SplitError: the pack holds none.
        """
        if not self.header.official:
            raise SplitError(f"{self.path}: the pack holds no official split (the dataset had no split files "
                             "when it was packed); choose another split method")
        return dict(self.header.official)


def valid_fraction(mask: np.ndarray) -> float:
    """Fraction of pixels that are not nodata."""
    return float((mask != MASK_NODATA).mean())
