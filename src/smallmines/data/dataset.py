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

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from smallmines.bands import IGNORE_INDEX, RGB_BANDS, compute_channels, parse_bands
from smallmines.data.io import load_image, load_mask, merge_nodata, mining_share, read_patch
from smallmines.data.layout import DatasetLayout, PatchKey, discover, read_text
from smallmines.data.pack import PackedSource, is_pack
from smallmines.data.splits import (
    SPLIT_METHODS,
    SPLIT_NAMES,
    carve_validation,
    official_split,
    read_split_csv,
    summarize,
    write_split_csv,
)
from smallmines.data.stats import BandStats, RunningStats
from smallmines.errors import BandError, ConfigError, DataFormatError, SplitError

logger = logging.getLogger(__name__)


class PatchSource:
    """Patches of a dataset, from files or a pack: keys, footprints, mining shares and raw reads.

    ``keys`` and ``ids`` list every image/mask pair found. For files, the first use of ``shares``,
    ``centers`` or ``bad`` reads every patch once (a *scan*) and remembers which ones cannot be used
    (corrupt, wrong format, no valid pixel); ``usable`` lists the others. A pack only holds usable
    patches (the ones skipped while packing are in ``pack.header.skipped``).

    Args:
        path: ``SmallMinesDS.zip``, a folder holding ``SmallMinesDS/``, or a ``.smpack`` file.
        splits_dir: folder holding ``train_test_splits_{YEAR}.csv`` when not beside the data.
        progress: called as ``progress(done, total)`` during the scan of a file dataset.
    """

    def __init__(
        self,
        path: str | Path,
        splits_dir: str | Path | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.splits_dir = splits_dir
        self.progress = progress
        self.pack: PackedSource | None = None
        self.layout: DatasetLayout | None = None
        if is_pack(self.path):
            self.pack = PackedSource(self.path)
            self.keys: list[PatchKey] = list(self.pack.header.keys)
        else:
            self.layout = discover(self.path)
            self.keys = [p.key for p in self.layout.patches]
        self.ids = [k.id for k in self.keys]

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(13, H, W)`` float32 image with NaN nodata and uint8 mask with 255 nodata.

        Raises:
            DataFormatError: (files only) the patch cannot be used; the message names the file.
        """
        if self.pack is not None:
            return self.pack.read(i)
        return read_patch(self._layout.patches[i])

    @property
    def _layout(self) -> DatasetLayout:
        if self.layout is None:  # pragma: no cover - only packs lack a layout
            raise ConfigError(f"{self.path} is a pack; it has no file layout")
        return self.layout

    @cached_property
    def _scan(self) -> tuple[dict[str, float], dict[str, tuple[float, float]], dict[str, str]]:
        """Read every file patch once: (shares, centres, unusable id -> reason)."""
        shares: dict[str, float] = {}
        centers: dict[str, tuple[float, float]] = {}
        bad: dict[str, str] = {}
        refs = self._layout.patches
        logger.info("reading %d patches of %s once (a pack, `smallmines data pack`, skips this)",
                    len(refs), self.path)
        for i, ref in enumerate(refs):
            try:
                image, info = load_image(ref.image)
                mask = merge_nodata(image, load_mask(ref.mask)[0])
                if (mask == IGNORE_INDEX).all():
                    raise DataFormatError(ref.image, "every pixel is nodata (-9999 in the image or 255 in the mask)")
            except DataFormatError as exc:
                logger.warning("leaving out patch %s: %s", ref.id, exc)
                bad[ref.id] = str(exc)
            else:
                shares[ref.id] = mining_share(mask)
                b = info.bounds
                centers[ref.id] = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
            if self.progress:
                self.progress(i + 1, len(refs))
        return shares, centers, bad

    @property
    def shares(self) -> dict[str, float]:
        """Mining percentage of every usable patch."""
        if self.pack is not None:
            return dict(zip(self.ids, self.pack.header.shares, strict=True))
        return dict(self._scan[0])

    @property
    def centers(self) -> dict[str, tuple[float, float]]:
        """Tile centre (x, y) of every usable patch, in the tile's CRS."""
        if self.pack is not None:
            return dict(zip(self.ids, self.pack.header.centers, strict=True))
        return dict(self._scan[1])

    @property
    def bad(self) -> dict[str, str]:
        """Patches that cannot be used: id -> reason naming the file (always empty for a pack)."""
        if self.pack is not None:
            return {}
        return dict(self._scan[2])

    @property
    def usable(self) -> list[int]:
        """Indices of the patches that can be read."""
        bad = self.bad
        return [i for i, pid in enumerate(self.ids) if pid not in bad]

    def official(self) -> dict[str, str]:
        """The official split (train/test) of the usable patches."""
        if self.pack is not None:
            split = self.pack.official_split()
        else:
            split = official_split(self._layout, self.splits_dir)[0]
        bad = self.bad
        return {pid: name for pid, name in split.items() if pid not in bad}


def _method_options(method: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` checked against what split method ``method`` accepts (None values dropped)."""
    given = {k: v for k, v in options.items() if v is not None}
    accepted = set(inspect.signature(SPLIT_METHODS[method]).parameters) - {"keys", "shares", "centers", "seed"}
    unknown = sorted(set(given) - accepted)
    if unknown:
        raise ConfigError(f"split method {method!r} takes no option {', '.join(unknown)}; "
                          f"it accepts {', '.join(sorted(accepted))}")
    return given


def resolve_split(
    source: PatchSource,
    method: str | Path | Mapping[str, str] = "official",
    seed: int = 0,
    val_fraction: float = 0.1,
    **options: Any,
) -> dict[str, str]:
    """Assign every usable patch of ``source`` to train/val/test.

    Args:
        source: the patches.
        method: ``"official"`` (published files, validation carved from train), ``"random"``,
            ``"year"``, ``"spatial"``, ``"country"`` (with ``test_countries``), ``"country:CI"`` (test
            on CI, train on the other countries) or ``"country:GH,BF>CI"``, a path to a split CSV, or a
            ready mapping id -> split.
        seed: seed for every random choice.
        val_fraction: share of train moved to validation (official split and CSVs without ``val``);
            whole sites move, so no place is in both train and validation.
        options: extra arguments of the generated methods (``test_fraction``, ``block_size``,
            ``train_years``, ``test_years``); an option the method does not take is an error.

    Returns:
        patch id -> ``"train"``, ``"val"`` or ``"test"``. Patches the method leaves out (absent
        from a split file, or of a year the ``year`` method does not use) are not in it.

    Raises:
        SplitError: an unknown method, a missing split file, or a mapping naming unknown patches.
        ConfigError: an option the method does not take, or fractions out of range.
    """
    usable = source.usable
    keys = {source.ids[i]: source.keys[i] for i in usable}
    name = None if isinstance(method, Mapping) else str(method)
    if isinstance(method, Mapping):
        split = dict(method)
        unknown = set(split) - set(keys)
        if unknown:
            raise SplitError(f"split names {len(unknown)} patches that are not usable patches of {source.path}, "
                             f"e.g. {sorted(unknown)[0]}")
    elif name == "official":
        _method_options_none(name, options)
        split = carve_validation(source.official(), source.shares, val_fraction, seed, keys=keys)
    elif name is not None and name.lower().startswith("country:"):  # country:TEST or country:TRAIN>TEST
        train, _, test = name.split(":", 1)[1].rpartition(">")
        kwargs = _method_options("country", {**options, "train_countries": train.split(",") if train else None,
                                             "test_countries": test.split(",")})
        split = SPLIT_METHODS["country"](keys, source.shares, seed=seed, val_fraction=val_fraction, **kwargs)
    elif name in SPLIT_METHODS:
        kwargs = _method_options(name, options)
        if name == "spatial":
            kwargs["centers"] = source.centers
        split = SPLIT_METHODS[name](keys, source.shares, seed=seed, val_fraction=val_fraction, **kwargs)
    else:
        path = Path(str(method))
        if not path.is_file():
            raise SplitError(f"split {name!r} is neither a method (official, {', '.join(SPLIT_METHODS)}) "
                             "nor an existing CSV file")
        _method_options_none(name, options)
        split, unmatched = read_split_csv(read_text(path), str(path), keys)
        if unmatched:
            logger.warning("%s: %d names match no usable patch, e.g. %s", path, len(unmatched), unmatched[0])
        if "val" not in split.values():
            split = carve_validation(split, source.shares, val_fraction, seed, keys=keys)
    left_out = len(keys) - len(split)
    if left_out:
        logger.info("split %s leaves out %d of %d usable patches", name or "mapping", left_out, len(keys))
    return split


def _method_options_none(name: str | None, options: Mapping[str, Any]) -> None:
    given = sorted(k for k, v in options.items() if v is not None)
    if given:
        raise ConfigError(f"split {name!r} takes no option {', '.join(given)} (only the generated methods "
                          f"{', '.join(SPLIT_METHODS)} do)")


def export_split(
    root: str | Path | PatchSource,
    out: str | Path,
    method: str | Path = "official",
    seed: int = 0,
    val_fraction: float = 0.1,
    splits_dir: str | Path | None = None,
    **options: Any,
) -> tuple[dict[str, str], dict[int, dict[str, int]]]:
    """Resolve a split of a dataset and write it as a CSV in the official format, plus ``val``.

    The CSV (``patch_name,class_percentage,bin,split``, names are patch ids such as
    ``GH_0001_2016``) reads back with ``splits=out`` to exactly the same split.

    Returns:
        (patch id -> split, counts per year and split from :func:`~smallmines.data.splits.summarize`).
    """
    source = root if isinstance(root, PatchSource) else PatchSource(root, splits_dir)
    split = resolve_split(source, method, seed, val_fraction, **options)
    write_split_csv(out, split, source.shares)
    keys = dict(zip(source.ids, source.keys, strict=True))
    return split, summarize(split, keys)


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

    Patches that cannot be used (corrupt file, wrong format, no valid pixel) are left out with a
    logged warning; ``self.source.bad`` says why, and ``smallmines data check`` reports them all.

    Raises:
        ConfigError: (a ValueError) for an unknown split name, naming the valid ones.
        BandError, SplitError, DatasetNotFoundError: as their names say.
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
        usable = self.source.usable
        if split is None:
            chosen = usable
            self.assignment: dict[str, str] = {}
        else:
            self.assignment = resolve_split(self.source, splits, seed, val_fraction)
            chosen = [i for i in usable if self.assignment.get(self.source.ids[i]) == split]
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
        """Patch ids of this dataset, in sample order."""
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

    def compute_stats(self, progress: Callable[[int, int], None] | None = None) -> BandStats:
        """Statistics of this dataset's channels in raw units (call it on the training split).

        Nodata pixels (NaN in any input of a channel) are left out. ``progress(done, total)`` is
        called after every patch.

        Raises:
            DataFormatError: when the dataset is empty or a channel has no valid pixel.
        """
        if not len(self):
            raise DataFormatError(self.source.path, f"split {self.split!r} holds no patch to compute statistics on")
        running = RunningStats(self.channels)
        for i in range(len(self)):
            running.update(self.raw(i)[0])
            if progress:
                progress(i + 1, len(self))
        return running.result(f"{self.source.path} split={self.split} n={len(self)}")

    def plot(self, sample: dict[str, Any], show_titles: bool = True, suptitle: str | None = None):
        """Plot RGB (percentile stretch), mask and, when present, ``sample["prediction"]``.

        Returns:
            a matplotlib Figure (not shown).

        Raises:
            BandError: the selection lacks red, green or blue.
        """
        from matplotlib.figure import Figure

        if not all(b in self.channels for b in self.rgb_bands):
            raise BandError(f"plot needs {self.rgb_bands}; this dataset has {self.channels}")
        rgb = np.asarray(sample["image"])[[self.channels.index(b) for b in self.rgb_bands]].transpose(1, 2, 0)
        lo, hi = np.percentile(rgb, (2, 98))
        rgb = np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1)
        panels = [("Image", rgb, {}), ("Mask", np.asarray(sample["mask"]), {"vmin": 0, "vmax": 1, "cmap": "magma"})]
        if "prediction" in sample:
            panels.append(("Prediction", np.asarray(sample["prediction"]), {"vmin": 0, "vmax": 1, "cmap": "magma"}))
        fig = Figure(figsize=(4 * len(panels), 4), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
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
