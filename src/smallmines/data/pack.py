"""A packed cache: the whole dataset in one memory-mapped file.

Reading 4,270 small GeoTIFFs costs far more than their 3.6 GB of pixels; the pack stores the same
raw values (float32 with NaN for nodata, uint8 masks with 255 nodata) contiguously, so an epoch costs
about as much as reading the bytes, and the whole array can be moved to a GPU in one copy.

File layout (``.smpack``): 8-byte magic ``SMPACK01``, 8-byte little-endian header length, a UTF-8
JSON header (patch keys, footprints, mining shares, official split, offsets), zero padding to
4096 bytes, then the images block ``(N, 13, H, W) float32`` and the masks block ``(N, H, W) uint8``.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smallmines.bands import BAND_NAMES, MASK_NODATA
from smallmines.data.io import PATCH_SIZE, mining_share, read_info, read_patch
from smallmines.data.layout import DatasetLayout, PatchKey, discover
from smallmines.errors import CorruptFileError, SplitError

MAGIC = b"SMPACK01"
ALIGN = 4096


@dataclass
class PackHeader:
    """What a pack knows about its patches besides the pixels."""

    keys: list[PatchKey]
    centers: list[tuple[float, float]]
    shares: list[float]
    crs: list[str | None]
    official: dict[str, str]
    source: str
    size: int
    images_offset: int
    masks_offset: int

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "bands": list(BAND_NAMES),
            "keys": [[k.tile, k.year, k.country] for k in self.keys],
            "centers": self.centers,
            "shares": self.shares,
            "crs": self.crs,
            "official": self.official,
            "source": self.source,
            "size": self.size,
            "images_offset": self.images_offset,
            "masks_offset": self.masks_offset,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PackHeader:
        return cls(
            [PatchKey(t, int(y), c) for t, y, c in data["keys"]],
            [tuple(c) for c in data["centers"]],
            list(data["shares"]),
            list(data["crs"]),
            dict(data["official"]),
            data["source"],
            int(data["size"]),
            int(data["images_offset"]),
            int(data["masks_offset"]),
        )


def _header_bytes(header: PackHeader) -> bytes:
    return json.dumps(header.to_json()).encode("utf-8")


def pack_dataset(
    layout: DatasetLayout | str | Path,
    out: str | Path,
    official: dict[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write every valid patch of a dataset into one ``.smpack`` file (atomically).

    Args:
        layout: a discovered layout or a dataset path.
        out: the pack file to write.
        official: the official split (patch id -> split), stored so a pack alone can reproduce it.
        progress: called as ``progress(done, total)``.
    """
    layout = layout if isinstance(layout, DatasetLayout) else discover(layout)
    refs = layout.patches
    n, size = len(refs), PATCH_SIZE
    infos = [read_info(r.image) for r in refs]
    centers = [((i.bounds[0] + i.bounds[2]) / 2, (i.bounds[1] + i.bounds[3]) / 2) for i in infos]
    # Reserve a header big enough for the final JSON: shares are filled after the pixels are read.
    draft = PackHeader([r.key for r in refs], centers, [100.0] * n, [i.crs for i in infos],
                       official or {}, str(layout.root), size, 0, 0)
    header_len = len(_header_bytes(draft)) + 64 * n + 1024
    images_offset = -(-(16 + header_len) // ALIGN) * ALIGN
    masks_offset = images_offset + n * len(BAND_NAMES) * size * size * 4
    total = masks_offset + n * size * size

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.truncate(total)
    images = np.memmap(tmp, np.float32, "r+", images_offset, (n, len(BAND_NAMES), size, size))
    masks = np.memmap(tmp, np.uint8, "r+", masks_offset, (n, size, size))
    shares = []
    for i, ref in enumerate(refs):
        image, mask = read_patch(ref, size)
        images[i], masks[i] = image, mask
        shares.append(mining_share(mask))
        if progress:
            progress(i + 1, n)
    images.flush()
    masks.flush()
    del images, masks
    header = PackHeader(draft.keys, centers, shares, draft.crs, draft.official, draft.source, size,
                        images_offset, masks_offset)
    blob = _header_bytes(header)
    if 16 + len(blob) > images_offset:  # cannot happen with the reserve above, but never corrupt a pack
        raise CorruptFileError(out, "pack header outgrew its reserved space")
    with open(tmp, "r+b") as fh:
        fh.write(MAGIC + struct.pack("<Q", len(blob)) + blob)
    os.replace(tmp, out)
    return out


class PackedSource:
    """Read-only view of a ``.smpack`` file: memory-mapped images and masks plus the header."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as fh:
                magic = fh.read(8)
                if magic != MAGIC:
                    raise CorruptFileError(self.path, f"is not a smallmines pack (magic {magic!r}, expected {MAGIC!r})")
                (length,) = struct.unpack("<Q", fh.read(8))
                self.header = PackHeader.from_json(json.loads(fh.read(length)))
        except (OSError, ValueError, KeyError, struct.error) as exc:
            raise CorruptFileError(self.path, f"cannot be read as a smallmines pack ({exc})") from exc
        h, n, size = self.header, len(self.header.keys), self.header.size
        expected = h.masks_offset + n * size * size
        if self.path.stat().st_size < expected:
            raise CorruptFileError(self.path, f"is truncated: {self.path.stat().st_size} bytes, expected {expected}")
        self.images = np.memmap(self.path, np.float32, "r", h.images_offset, (n, len(BAND_NAMES), size, size))
        self.masks = np.memmap(self.path, np.uint8, "r", h.masks_offset, (n, size, size))

    def __len__(self) -> int:
        return len(self.header.keys)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw image (NaN nodata) and mask (255 nodata) of patch ``i``, as in :func:`read_patch`."""
        return np.array(self.images[i]), np.array(self.masks[i])

    def official_split(self) -> dict[str, str]:
        if not self.header.official:
            raise SplitError(f"{self.path}: the pack holds no official split (the dataset had no split files "
                             "when it was packed); choose another split method")
        return dict(self.header.official)


def valid_fraction(mask: np.ndarray) -> float:
    """Fraction of pixels that are not nodata."""
    return float((mask != MASK_NODATA).mean())
