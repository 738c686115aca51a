"""SmallMinesDS as a PyTorch dataset.

SmallMinesDS: A Multi-Modal Dataset for Mapping Artisanal and Small-Scale Gold Mines (IEEE Geoscience
and Remote Sensing Letters, 2025), released under CC-BY-SA-4.0. 4,270 patches of 128 x 128 pixels at
10 m over five districts of south-western Ghana, January 2016 and January 2022, each with 13 bands
(Sentinel-2 L2A x10, Sentinel-1 RTC VV/VH, Copernicus DEM; order in :mod:`smallmines.bands`) and a
binary mining mask. Please cite the paper when you use the data.

The dataset reads either the published files (zip or folder, see :mod:`smallmines.data.layout`) or a
packed cache (:mod:`smallmines.data.pack`) and returns identical samples from both::

    {"image": float32 (C, H, W), "mask": int64 (H, W), "id": "GH_0001_2016", "year": 2016}

Channels are the band selection (bands and spectral indices, computed from raw values), z-scored
with statistics from the training split; image nodata becomes 0 after normalisation and the
corresponding mask pixels become the ignore index 255.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from smallmines.bands import IGNORE_INDEX, RGB_BANDS, compute_channels, parse_bands
from smallmines.data.io import mining_share, read_info, read_patch
from smallmines.data.layout import DatasetLayout, PatchKey, discover
from smallmines.data.pack import MAGIC, PackedSource
from smallmines.data.splits import SPLIT_METHODS, SPLIT_NAMES, carve_validation, official_split, read_split_csv
from smallmines.data.stats import BandStats, RunningStats
from smallmines.errors import BandError, ConfigError, SplitError


class PatchSource:
    """Patches of a dataset, from files or a pack: keys, footprints, mining shares and raw reads."""

    def __init__(self, path: str | Path, splits_dir: str | Path | None = None) -> None:
        self.path = Path(path)
        self.splits_dir = splits_dir
        self.pack: PackedSource | None = None
        self.layout: DatasetLayout | None = None
        if self.path.is_file() and _is_pack(self.path):
            self.pack = PackedSource(self.path)
            self.keys: list[PatchKey] = list(self.pack.header.keys)
        else:
            self.layout = discover(self.path)
            self.keys = [p.key for p in self.layout.patches]
        self.ids = [k.id for k in self.keys]

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(13, H, W)`` float32 image with NaN nodata and uint8 mask with 255 nodata."""
        if self.pack is not None:
            return self.pack.read(i)
        assert self.layout is not None
        return read_patch(self.layout.patches[i])

    @cached_property
    def shares(self) -> dict[str, float]:
        """Mining percentage of every patch (reads every mask once for file sources)."""
        if self.pack is not None:
            return dict(zip(self.ids, self.pack.header.shares, strict=True))
        return {pid: mining_share(self.read(i)[1]) for i, pid in enumerate(self.ids)}

    @cached_property
    def centers(self) -> dict[str, tuple[float, float]]:
        """Tile centre (x, y) in the tile's CRS."""
        if self.pack is not None:
            return dict(zip(self.ids, self.pack.header.centers, strict=True))
        assert self.layout is not None
        out = {}
        for ref in self.layout.patches:
            b = read_info(ref.image).bounds
            out[ref.id] = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
        return out

    def official(self) -> dict[str, str]:
        if self.pack is not None:
            return self.pack.official_split()
        assert self.layout is not None
        return official_split(self.layout, self.splits_dir)[0]


def _is_pack(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(MAGIC)) == MAGIC


def resolve_split(
    source: PatchSource,
    method: str | Path | Mapping[str, str] = "official",
    seed: int = 0,
    val_fraction: float = 0.1,
    **options: Any,
) -> dict[str, str]:
    """Assign every patch of ``source`` to train/val/test.

    Args:
        method: ``"official"`` (published files, validation carved from train), ``"random"``,
            ``"year"``, ``"spatial"``, a path to a split CSV, or a ready mapping id -> split.
        seed: seed for every random choice.
        val_fraction: share of train moved to validation (official split and CSVs without ``val``).
        options: extra arguments of the generated methods (``test_fraction``, ``block_size``,
            ``train_years``, ``test_years``).
    """
    keys = dict(zip(source.ids, source.keys, strict=True))
    if isinstance(method, Mapping):
        split = dict(method)
    elif str(method) == "official":
        split = carve_validation(source.official(), source.shares, val_fraction, seed)
    elif str(method) in SPLIT_METHODS:
        kwargs = dict(options)
        if method == "spatial":
            kwargs["centers"] = source.centers
        split = SPLIT_METHODS[str(method)](keys, source.shares, seed=seed, val_fraction=val_fraction, **kwargs)
    else:
        path = Path(method)
        if not path.is_file():
            raise SplitError(f"split {str(method)!r} is neither a method (official, {', '.join(SPLIT_METHODS)}) "
                             "nor an existing CSV file")
        split, _ = read_split_csv(path.read_text(encoding="utf-8"), str(path), keys)
        if "val" not in split.values():
            split = carve_validation(split, source.shares, val_fraction, seed)
    unknown = set(split) - set(keys)
    if unknown:
        raise SplitError(f"split names {len(unknown)} patches that are not in {source.path}, e.g. {sorted(unknown)[0]}")
    return split


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Joint random flip and 90 degree rotation of an image ``(C, H, W)`` and its mask ``(H, W)``."""
    k = int(rng.integers(4))
    image, mask = np.rot90(image, k, axes=(1, 2)), np.rot90(mask, k, axes=(0, 1))
    if rng.random() < 0.5:
        image, mask = image[:, :, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


class SmallMinesDS(Dataset):
    """SmallMinesDS patches as sample dicts ``{"image", "mask", "id", "year"}``.

    Args:
        root: ``SmallMinesDS.zip``, the folder holding ``SmallMinesDS/``, or a ``.smpack`` cache.
        split: ``"train"``, ``"val"``, ``"test"`` or None for every patch.
        bands: band selection (see :func:`smallmines.bands.parse_bands`), e.g. ``"official6"`` or
            ``"s2,s1,dem,ndvi"``.
        splits: split method or CSV (see :func:`resolve_split`).
        years: keep only these years.
        stats: normalisation statistics (or a JSON path); None returns raw values.
        augment: random flips and 90 degree rotations (use for training only).
        seed: split seed (augmentation draws from torch's per-worker seed).
        val_fraction: validation share carved from train.
        splits_dir: folder holding ``train_test_splits_{YEAR}.csv`` when not beside the data.
        transforms: callable applied to the sample dict last.

    Raises:
        ValueError: for an unknown split name; BandError, SplitError, DatasetNotFoundError as named.
    """

    rgb_bands = RGB_BANDS

    def __init__(
        self,
        root: str | Path | PatchSource,
        split: str | None = "train",
        bands: str | Sequence[str] = "all",
        splits: str | Path | Mapping[str, str] = "official",
        years: Sequence[int] | None = None,
        stats: BandStats | str | Path | None = None,
        augment: bool = False,
        seed: int = 0,
        val_fraction: float = 0.1,
        splits_dir: str | Path | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        if split is not None and split not in SPLIT_NAMES:
            raise ConfigError(f"split {split!r} is not one of {SPLIT_NAMES} (or None for all patches)")
        self.source = root if isinstance(root, PatchSource) else PatchSource(root, splits_dir)
        self.channels = parse_bands(bands)
        self.split = split
        if split is None:
            chosen = list(range(len(self.source)))
            self.assignment: dict[str, str] = {}
        else:
            self.assignment = resolve_split(self.source, splits, seed, val_fraction)
            chosen = [i for i, pid in enumerate(self.source.ids) if self.assignment.get(pid) == split]
        if years is not None:
            wanted = {int(y) for y in years}
            chosen = [i for i in chosen if self.source.keys[i].year in wanted]
        self.indices = chosen
        if isinstance(stats, (str, Path)):
            stats = BandStats.load(stats)
        self.stats = stats.subset(self.channels) if stats is not None else None
        self._norm = self.stats.arrays() if self.stats is not None else None
        self.augment = augment
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def ids(self) -> list[str]:
        return [self.source.ids[i] for i in self.indices]

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Selected channels in raw units (NaN nodata) and the uint8 mask, before normalisation."""
        image, mask = self.source.read(self.indices[index])
        return compute_channels(image, self.channels), mask

    def __getitem__(self, index: int) -> dict[str, Any]:
        channels, mask = self.raw(index)
        invalid = np.isnan(channels).any(axis=0)
        if self._norm is not None:
            mean, std = self._norm
            channels = (channels - mean) / std
        channels = np.where(np.isnan(channels), np.float32(0), channels).astype(np.float32, copy=False)
        mask = np.where(invalid, np.uint8(IGNORE_INDEX), mask)
        if self.augment:
            rng = np.random.default_rng(torch.randint(0, 2**31 - 1, ()).item())
            channels, mask = augment(channels, mask, rng)
        key = self.source.keys[self.indices[index]]
        sample = {
            "image": torch.from_numpy(channels),
            "mask": torch.from_numpy(mask.astype(np.int64)),
            "id": key.id,
            "year": key.year,
        }
        return self.transforms(sample) if self.transforms else sample

    def compute_stats(self) -> BandStats:
        """Statistics of this dataset's channels in raw units (call it on the training split)."""
        running = RunningStats(self.channels)
        for i in range(len(self)):
            running.update(self.raw(i)[0])
        return running.result(f"{self.source.path} split={self.split} n={len(self)}")

    def plot(self, sample: dict[str, Any], show_titles: bool = True, suptitle: str | None = None):
        """Plot RGB (percentile stretch), mask and, when present, ``sample["prediction"]``.

        Returns:
            a matplotlib Figure (not shown).

        Raises:
            BandError: the selection lacks red, green or blue.
        """
        import matplotlib.pyplot as plt

        if not all(b in self.channels for b in self.rgb_bands):
            raise BandError(f"plot needs {self.rgb_bands}; this dataset has {self.channels}")
        rgb = sample["image"][[self.channels.index(b) for b in self.rgb_bands]].numpy().transpose(1, 2, 0)
        lo, hi = np.percentile(rgb, (2, 98))
        rgb = np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1)
        panels = [("Image", rgb, {}), ("Mask", sample["mask"].numpy(), {"vmin": 0, "vmax": 1, "cmap": "magma"})]
        if "prediction" in sample:
            panels.append(("Prediction", np.asarray(sample["prediction"]), {"vmin": 0, "vmax": 1, "cmap": "magma"}))
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
        for ax, (title, data, kw) in zip(axes, panels, strict=True):
            if data.ndim == 2:
                data = np.ma.masked_equal(data, IGNORE_INDEX)
            ax.imshow(data, **kw)
            ax.axis("off")
            if show_titles:
                ax.set_title(title)
        if suptitle:
            fig.suptitle(suptitle)
        return fig
