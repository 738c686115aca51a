"""The training data path: whole splits as tensors on the device, batched normalisation and augmentation.

Reading 4,270 small GeoTIFFs per epoch (or even per-sample ``__getitem__`` from a pack) costs far more
than a training step on a modern GPU. :class:`SmallMinesDataModule` therefore loads each split once
(from files or a ``.smpack`` pack) into one tensor of raw bands ``(N, B, H, W)`` float32 (NaN = nodata)
and one mask tensor ``(N, H, W)`` uint8, and, with ``cache="device"``, moves both to the accelerator
(all 13 bands of SmallMinesDS take 3.6 GB). A batch is then an index into those tensors; spectral
indices, z-scoring and joint flips/rotations run batched on the device in
:meth:`SmallMinesDataModule.on_after_batch_transfer`.

The batch order and the augmentation of every sample are drawn at the start of each epoch from a
CPU generator seeded with ``(seed, epoch)``, so a run is reproducible on any device, and a resumed
run continues with the same sequence. Under DDP each process takes every ``world_size``-th sample of
the epoch's permutation (training) or of the split (validation); every process holds the whole split.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from smallmines.bands import BAND_NAMES, IGNORE_INDEX, compute_channels, parse_bands, required_bands
from smallmines.data.dataset import PatchSource, resolve_split
from smallmines.data.stats import BandStats, RunningStats
from smallmines.errors import ConfigError, SplitError

logger = logging.getLogger(__name__)

AUGMENT_CODES = {"none": (0,), "flips": (0, 2, 4, 6), "dihedral": tuple(range(8))}
"""Transform codes per augmentation mode: code ``k`` rotates by ``k % 4`` quarter turns, then flips
left-right when ``k >= 4`` (so 2 = rot180 = both flips, 4 = left-right flip, 6 = up-down flip)."""


@dataclass
class SplitArrays:
    """One split in memory: raw bands, masks and patch facts, aligned by row.

    Attributes:
        images: ``(N, B, H, W)`` float32 raw values of ``bands``, NaN where nodata.
        masks: ``(N, H, W)`` uint8 with 0/1 and 255 (nodata or ignore).
        bands: the raw bands held, in published order.
        ids: patch ids.
        years: acquisition year per patch.
    """

    images: torch.Tensor
    masks: torch.Tensor
    bands: tuple[str, ...]
    ids: list[str]
    years: list[int]

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str, pin: bool = False) -> SplitArrays:
        """Copy to ``device`` (``pin=True`` pins CPU memory for fast asynchronous transfers)."""
        images, masks = self.images.to(device), self.masks.to(device)
        if pin and torch.cuda.is_available() and images.device.type == "cpu":
            images, masks = images.pin_memory(), masks.pin_memory()
        return SplitArrays(images, masks, self.bands, self.ids, self.years)

    def shares(self) -> np.ndarray:
        """Mining percentage of valid pixels per patch (0 when a patch has no valid pixel)."""
        valid = (self.masks != IGNORE_INDEX).flatten(1).sum(1).double()
        mining = (self.masks == 1).flatten(1).sum(1).double()
        return (100 * mining / valid.clamp_min(1)).cpu().numpy()


def load_split(source: PatchSource, indices: Sequence[int], bands: Sequence[str] = BAND_NAMES,
               progress: Callable[[int, int], None] | None = None) -> SplitArrays:
    """Read patches of a source into one tensor pair (once; a pack is sliced without per-patch decoding).

    Args:
        source: files or pack.
        indices: positions in ``source`` to load, in order.
        bands: raw bands to keep (published order), e.g. :func:`smallmines.bands.required_bands`.
        progress: called as ``progress(done, total)``.
    """
    band_idx = [BAND_NAMES.index(b) for b in bands]
    n = len(indices)
    size = source.pack.header.size if source.pack is not None else None
    if source.pack is not None and n:
        order = np.asarray(indices)
        images = np.empty((n, len(band_idx), size, size), np.float32)
        masks = np.empty((n, size, size), np.uint8)
        step = 256
        for start in range(0, n, step):
            chunk = np.sort(order[start:start + step])
            position = np.searchsorted(chunk, order[start:start + step])
            images[start:start + step] = source.pack.images[chunk][:, band_idx][position]
            masks[start:start + step] = source.pack.masks[chunk][position]
            if progress:
                progress(min(start + step, n), n)
    else:
        images_list, masks_list = [], []
        for done, i in enumerate(indices, start=1):
            image, mask = source.read(i)
            images_list.append(image[band_idx])
            masks_list.append(mask)
            if progress:
                progress(done, n)
        images = np.stack(images_list) if images_list else np.empty((0, len(band_idx), 128, 128), np.float32)
        masks = np.stack(masks_list) if masks_list else np.empty((0, 128, 128), np.uint8)
    keys = [source.keys[i] for i in indices]
    return SplitArrays(torch.from_numpy(images), torch.from_numpy(masks), tuple(bands), [k.id for k in keys],
                       [k.year for k in keys])


def channel_stats(arrays: SplitArrays, channels: Sequence[str], source: str = "", chunk: int = 64) -> BandStats:
    """Per-channel mean/std (raw units, NaN skipped) of ``channels`` over a split (use the train split)."""
    running = RunningStats(channels)
    for start in range(0, len(arrays), chunk):
        raw = arrays.images[start:start + chunk]
        running.update(compute_channels(raw.cpu().numpy(), channels, arrays.bands))
    return running.result(source)


def normalize_batch(raw: torch.Tensor, channels: Sequence[str], source_bands: Sequence[str],
                    mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Raw bands ``(N, B, H, W)`` -> normalised channels ``(N, C, H, W)`` float32 with nodata as 0.

    Args:
        raw: raw band values, NaN where nodata.
        channels: channel names (bands and indices) to compute.
        source_bands: the bands ``raw`` holds.
        mean: ``(C,)`` channel means, on ``raw``'s device.
        std: ``(C,)`` channel standard deviations.
    """
    raw = raw.float()
    if all(c in source_bands for c in channels):  # bands only: a view or one gather, no per-plane stacking
        index = [source_bands.index(c) for c in channels]
        x = raw if index == list(range(raw.shape[1])) else raw[:, index]
    else:
        x = compute_channels(raw, channels, source_bands)
    x = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    return torch.nan_to_num_(x, nan=0.0, posinf=0.0, neginf=0.0)


def dihedral_maps(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(8, H*W)`` gather indices of the 8 dihedral transforms (codes in :data:`AUGMENT_CODES`)."""
    base = torch.arange(height * width, device=device).view(height, width)
    maps = []
    for code in range(8):
        if code % 2 and height != width:
            maps.append(base.flatten())  # quarter turns need square patches; identity otherwise
            continue
        t = torch.rot90(base, code % 4, dims=(0, 1))
        maps.append((t.flip(-1) if code >= 4 else t).flatten())
    return torch.stack(maps)


def augment_batch(image: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor,
                  maps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply per-sample dihedral transforms with one gather (no host sync, any device).

    Args:
        image: ``(N, C, H, W)``.
        mask: ``(N, H, W)``.
        codes: ``(N,)`` transform codes 0-7 (see :data:`AUGMENT_CODES`).
        maps: precomputed :func:`dihedral_maps` for this patch size.
    """
    n, c, h, w = image.shape
    if maps is None:
        maps = dihedral_maps(h, w, image.device)
    index = maps[codes.to(maps.device)]  # (N, H*W)
    image = image.flatten(2).gather(2, index[:, None, :].expand(n, c, h * w)).view(n, c, h, w)
    mask = mask.flatten(1).gather(1, index).view(n, h, w)
    return image, mask


class DeviceBatches:
    """Batches of a :class:`SplitArrays` already on its device: ``{"image": raw, "mask": uint8[, "aug"]}``.

    Args:
        arrays: the split (on the device that should serve the batches).
        batch_size: samples per batch.
        shuffle: new permutation every epoch (training).
        augment: augmentation mode; draws one transform code per sample (training).
        seed: base seed; the epoch's generator is seeded with ``(seed, epoch)``.
        epoch: callable returning the current epoch.
        rank: this process's rank and the world size (DDP sharding).
        world_size: number of processes.
        drop_last: drop a final incomplete batch (training keeps BatchNorm away from batches of 1).
    """

    def __init__(self, arrays: SplitArrays, batch_size: int, shuffle: bool = False, augment: str = "none",
                 seed: int = 0, epoch: Callable[[], int] = lambda: 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False) -> None:
        self.arrays = arrays
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.codes = torch.tensor(AUGMENT_CODES[augment])
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.drop_last = drop_last

    def _order(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = len(self.arrays)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch())
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        if self.shuffle:
            per_rank = n // self.world_size  # equal step counts on every rank
            order = order[self.rank * per_rank:(self.rank + 1) * per_rank]
        else:
            order = order[self.rank::self.world_size]
        codes = None
        if len(self.codes) > 1:
            codes = self.codes[torch.randint(len(self.codes), (len(order),), generator=generator)]
        return order, codes

    def __len__(self) -> int:
        n = len(self.arrays) // self.world_size if self.shuffle else len(range(self.rank, len(self.arrays),
                                                                               self.world_size))
        full, rest = divmod(n, self.batch_size)
        return full if self.drop_last and full else full + (rest > 0)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order, codes = self._order()
        device = self.arrays.images.device
        order = order.to(device, non_blocking=True)
        codes = codes.to(device, non_blocking=True) if codes is not None else None
        for b in range(len(self)):
            index = order[b * self.batch_size:(b + 1) * self.batch_size]
            # advanced indexing: as fast as index_select on GPUs, and far faster on CPUs
            batch = {"image": self.arrays.images[index], "mask": self.arrays.masks[index]}
            if codes is not None:
                batch["aug"] = codes[b * self.batch_size:(b + 1) * self.batch_size]
            yield batch


class SmallMinesDataModule(L.LightningDataModule):
    """SmallMinesDS splits held as device tensors, normalised and augmented on the device.

    It owns the split (resolved once from ``splits``/``split_seed``), the normalisation statistics
    (computed on the train split only, unless given) and the on-device data path.

    Args:
        root: dataset (zip, folder) or ``.smpack`` pack.
        bands: band selection.
        splits: split method or CSV (:func:`smallmines.data.dataset.resolve_split`).
        split_seed: split seed (independent of the training seed).
        val_fraction: validation share carved from train.
        years: keep only these years.
        splits_dir: folder of the official split files.
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        augment: ``none``, ``flips`` or ``dihedral``.
        seed: batch order and augmentation seed.
        stats: normalisation statistics to use instead of computing them on the train split.
        cache: ``device`` (whole split on the accelerator) or ``host`` (pinned CPU memory).
        progress: called as ``progress(done, total)`` while patches are read.
    """

    def __init__(self, root: str | Path | PatchSource, bands: str | Sequence[str] = "all",
                 splits: str | Path | Mapping[str, str] = "official", split_seed: int = 0,
                 val_fraction: float = 0.1, years: Sequence[int] | None = None, splits_dir: str | None = None,
                 batch_size: int = 32, eval_batch_size: int = 64, augment: str = "dihedral", seed: int = 0,
                 stats: BandStats | None = None, cache: str = "device",
                 progress: Callable[[int, int], None] | None = None) -> None:
        super().__init__()
        if augment not in AUGMENT_CODES:
            raise ConfigError(f"augment {augment!r}; choose one of {', '.join(AUGMENT_CODES)}")
        self.source = root if isinstance(root, PatchSource) else PatchSource(root, splits_dir)
        self.channels = parse_bands(bands)
        self.bands = required_bands(self.channels)
        self.splits, self.split_seed, self.val_fraction = splits, split_seed, val_fraction
        self.years = None if years is None else {int(y) for y in years}
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.augment, self.seed, self.cache = augment, seed, cache
        self.stats = stats.subset(self.channels) if stats is not None else None
        self.progress = progress
        self.assignment: dict[str, str] | None = None
        self.arrays: dict[str, SplitArrays] = {}
        self._device_arrays: dict[str, SplitArrays] = {}
        self._norm: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    # ------------------------------------------------------------------ splits and arrays
    def resolve(self) -> dict[str, str]:
        """The patch id -> split assignment (resolved once)."""
        if self.assignment is None:
            self.assignment = resolve_split(self.source, self.splits, self.split_seed, self.val_fraction)
        return self.assignment

    def split_indices(self, split: str) -> list[int]:
        """Positions in the source of the patches of ``split`` (after the year filter)."""
        assignment = self.resolve()
        return [i for i, (pid, key) in enumerate(zip(self.source.ids, self.source.keys, strict=True))
                if assignment.get(pid) == split and (self.years is None or key.year in self.years)]

    def split_hash(self) -> str:
        """Short hash of the assignment, to check that compared runs used the same split."""
        text = "\n".join(f"{pid},{name}" for pid, name in sorted(self.resolve().items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def load(self, split: str) -> SplitArrays:
        """The split's arrays on the host (read once)."""
        if split not in self.arrays:
            indices = self.split_indices(split)
            logger.info("loading %d %s patches (%s) from %s", len(indices), split, ",".join(self.bands),
                        self.source.path)
            self.arrays[split] = load_split(self.source, indices, self.bands, self.progress)
        return self.arrays[split]

    def setup(self, stage: str | None = None) -> None:
        """Load the splits a stage needs and compute statistics on the train split (idempotent)."""
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in needed.get(stage or "fit", ("train", "val")):
            self.load(split)
        if "train" in needed.get(stage or "fit", ()) and not len(self.arrays["train"]):
            raise SplitError(f"the train split of {self.source.path} is empty (split {self.splits!r}, "
                             f"years {sorted(self.years) if self.years else 'all'})")
        if self.stats is None:
            self.stats = channel_stats(self.load("train"), self.channels,
                                       f"{self.source.path} split=train n={len(self.load('train'))}")

    # ------------------------------------------------------------------ loaders
    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _on_device(self, split: str) -> SplitArrays:
        device = self._device()
        cached = self._device_arrays.get(split)
        if cached is None or (self.cache == "device" and cached.images.device != device):
            arrays = self.load(split)
            if self.cache == "device":
                cached = arrays.to(device)
            else:
                cached = arrays.to("cpu", pin=device.type == "cuda")
            self._device_arrays[split] = cached
        return cached

    def _batches(self, split: str, training: bool) -> DeviceBatches:
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        arrays = self._on_device(split)
        return DeviceBatches(
            arrays, self.batch_size if training else self.eval_batch_size, shuffle=training,
            augment=self.augment if training else "none", seed=self.seed,
            epoch=(lambda: trainer.current_epoch) if trainer is not None else (lambda: 0), rank=rank,
            world_size=world, drop_last=training and len(arrays) // world > self.batch_size,
        )

    def train_dataloader(self) -> DeviceBatches:
        return self._batches("train", training=True)

    def val_dataloader(self) -> DeviceBatches:
        return self._batches("val", training=False)

    def test_dataloader(self) -> DeviceBatches:
        return self._batches("test", training=False)

    def normalizer(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, std, dihedral maps) on ``device``."""
        if device not in self._norm:
            if self.stats is None:
                raise ConfigError("statistics are not set; call setup('fit') first")
            mean = torch.tensor(self.stats.mean, dtype=torch.float32, device=device)
            std = torch.tensor(self.stats.std, dtype=torch.float32, device=device)
            self._norm[device] = (mean, std, dihedral_maps(128, 128, device))
        return self._norm[device]

    def normalize(self, raw: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """Raw bands of a batch -> the network's normalised channels (nodata 0)."""
        return normalize_batch(raw, self.channels, self.bands, mean, std)

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        """Compute channels, z-score, set nodata to 0 and apply the batch's augmentation, on the device."""
        raw, mask = batch["image"], batch["mask"]
        mean, std, maps = self.normalizer(raw.device)
        image = self.normalize(raw, mean, std)
        mask = mask.long()
        if "aug" in batch:
            if image.shape[-2:] != (128, 128):
                maps = dihedral_maps(*image.shape[-2:], device=raw.device)
            image, mask = augment_batch(image, mask, batch["aug"], maps)
        return {"image": image, "mask": mask}

    def describe(self) -> dict[str, Any]:
        """Counts per split, channels and split hash (for summaries)."""
        assignment = self.resolve()
        counts = {name: len(self.split_indices(name)) for name in ("train", "val", "test")}
        return {"channels": list(self.channels), "counts": counts, "split_hash": self.split_hash(),
                "patches": len(assignment)}
