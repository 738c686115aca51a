"""Bi-temporal change training and evaluation: paired splits on the device, 4-class metrics, differencing.

A change model (:mod:`smallmines.models.change`) sees one *pair* per sample: the same tile in an
earlier and a later year (:mod:`smallmines.data.pairs`). :class:`ChangeDataModule` is the
:class:`~smallmines.training.datamodule.SmallMinesDataModule` for pairs: each split is one tensor of
raw bands ``(N, 2B, H, W)`` (the earlier date's bands, then the later date's) and one tensor of change
labels ``(N, H, W)``; both dates are normalised with the same per-channel statistics (computed on the
train split's patches of both years) and flipped/rotated together, so a pixel of ``a`` stays above the
same pixel of ``b``. Splits must be site-grouped (:func:`smallmines.data.pairs.check_pair_split`).

Metrics are exact confusion counts over the 4 classes: IoU, precision, recall and F1 per change
class, and ``miou_change``, the mean IoU of new, persistent and ceased mining (the score that early
stopping and the best checkpoint follow). :func:`difference_change` turns two single-date mining
maps into the same classes, so a change model and the differencing of a mining model are scored the
same way by :func:`change_scores`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics import Metric

from smallmines.bands import IGNORE_INDEX, parse_bands, required_bands
from smallmines.data.dataset import PatchSource
from smallmines.data.pairs import Pair, change_labels, check_pair_split, date_channels, find_pairs
from smallmines.data.stats import BandStats, RunningStats
from smallmines.errors import ConfigError, SplitError
from smallmines.legend import CLASS_KEYS, ChangeClass
from smallmines.models.change import CHANGE_CLASSES
from smallmines.training.datamodule import SmallMinesDataModule, SplitArrays, normalize_batch

logger = logging.getLogger(__name__)

CHANGE_MONITOR = "val_miou_change"
"""The validation score that drives early stopping and the best checkpoint of change models."""
CHANGE_KEYS = tuple(CLASS_KEYS[c] for c in ChangeClass)
MINING_CHANGES = (ChangeClass.NEW, ChangeClass.PERSISTENT, ChangeClass.CEASED)


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------

def change_confusion(pred: torch.Tensor, target: torch.Tensor, classes: int = CHANGE_CLASSES) -> torch.Tensor:
    """``(K, K)`` int64 pixel counts, rows true class, columns predicted class, valid pixels only."""
    valid = target != IGNORE_INDEX
    index = target[valid].long() * classes + pred[valid].long()
    return torch.bincount(index, minlength=classes * classes).view(classes, classes)


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def change_scores(confusion: np.ndarray | torch.Tensor | Sequence[Sequence[int]]) -> dict[str, float]:
    """Per change class ``iou_/precision_/recall_/f1_{no_mining,new,persistent,ceased}``, ``miou_change``, ``accuracy``.

    A score whose denominator is 0 is NaN; ``miou_change`` is the mean of the defined IoU of new,
    persistent and ceased mining.
    """
    m = np.asarray(confusion.cpu() if isinstance(confusion, torch.Tensor) else confusion, dtype=np.int64)
    out: dict[str, float] = {}
    for c in ChangeClass:
        tp = int(m[c, c])
        fp, fn = int(m[:, c].sum()) - tp, int(m[c, :].sum()) - tp
        key = CLASS_KEYS[c]
        out[f"iou_{key}"] = _ratio(tp, tp + fp + fn)
        out[f"precision_{key}"] = _ratio(tp, tp + fp)
        out[f"recall_{key}"] = _ratio(tp, tp + fn)
        out[f"f1_{key}"] = _ratio(2 * tp, 2 * tp + fp + fn)
    defined = [out[f"iou_{CLASS_KEYS[c]}"] for c in MINING_CHANGES if not math.isnan(out[f"iou_{CLASS_KEYS[c]}"])]
    out["miou_change"] = sum(defined) / len(defined) if defined else math.nan
    out["accuracy"] = _ratio(int(np.trace(m)), int(m.sum()))
    return out


class ChangeMetrics(Metric):
    """Torchmetrics metric: exact 4-class change scores from ``(N, 4, H, W)`` logits (argmax)."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, classes: int = CHANGE_CLASSES, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.classes = classes
        self.add_state("confusion", default=torch.zeros(classes, classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        self.confusion += change_confusion(logits.detach().argmax(1), target, self.classes)

    def compute(self) -> dict[str, torch.Tensor]:
        return {k: torch.tensor(v, dtype=torch.float32) for k, v in change_scores(self.confusion).items()}


def difference_change(mining_a: torch.Tensor | np.ndarray, mining_b: torch.Tensor | np.ndarray) -> np.ndarray:
    """Change classes from two binary (0/1) single-date predictions: the differencing baseline."""
    a = np.asarray(mining_a.cpu() if isinstance(mining_a, torch.Tensor) else mining_a).astype(np.uint8)
    b = np.asarray(mining_b.cpu() if isinstance(mining_b, torch.Tensor) else mining_b).astype(np.uint8)
    return change_labels(a, b)


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

def load_pairs(source: PatchSource, pairs: Sequence[Pair], bands: Sequence[str],
               progress: Callable[[int, int], None] | None = None) -> SplitArrays:
    """Read pairs into one tensor of raw bands ``(N, 2B, H, W)`` (``a`` then ``b``) and change labels ``(N, H, W)``.

    The returned arrays name their bands ``a:X...``, ``b:X...``; ``ids`` are pair ids and ``years`` the later year.
    """
    from smallmines.bands import BAND_NAMES

    band_idx = [BAND_NAMES.index(b) for b in bands]
    images, masks = [], []
    for done, pair in enumerate(pairs, start=1):
        image_a, mask_a = source.read(pair.index_a)
        image_b, mask_b = source.read(pair.index_b)
        images.append(np.concatenate((image_a[band_idx], image_b[band_idx])))
        masks.append(change_labels(mask_a, mask_b))
        if progress:
            progress(done, len(pairs))
    stacked = np.stack(images) if images else np.empty((0, 2 * len(band_idx), 128, 128), np.float32)
    labels = np.stack(masks) if masks else np.empty((0, 128, 128), np.uint8)
    return SplitArrays(torch.from_numpy(stacked), torch.from_numpy(labels), date_channels(bands),
                       [p.id for p in pairs], [p.year_b for p in pairs])


def pair_stats(arrays: SplitArrays, channels: Sequence[str], bands: Sequence[str], source: str = "",
               chunk: int = 32) -> BandStats:
    """Per-channel statistics over both dates of a pair split, named ``a:X`` and ``b:X`` (equal values)."""
    from smallmines.bands import compute_channels

    running = RunningStats(channels)
    half = len(bands)
    for start in range(0, len(arrays), chunk):
        raw = arrays.images[start:start + chunk].cpu().numpy()
        for part in (raw[:, :half], raw[:, half:]):
            running.update(compute_channels(part, channels, bands))
    base = running.result(source)
    return BandStats(date_channels(channels), base.mean * 2, base.std * 2, base.count, source)


def normalize_pair(raw: torch.Tensor, channels: Sequence[str], bands: Sequence[str], mean: torch.Tensor,
                   std: torch.Tensor) -> torch.Tensor:
    """Raw pair bands ``(N, 2B, H, W)`` -> normalised ``(N, 2C, H, W)``: each date with its half of ``mean``/``std``."""
    half, c = len(bands), len(channels)
    return torch.cat((normalize_batch(raw[:, :half], channels, bands, mean[:c], std[:c]),
                      normalize_batch(raw[:, half:], channels, bands, mean[c:], std[c:])), dim=1)


class ChangeDataModule(SmallMinesDataModule):
    """Paired splits (same tile, two years) with 4-class change labels, on the device.

    Takes the arguments of :class:`~smallmines.training.datamodule.SmallMinesDataModule`; ``years``
    (when given) names the two years to pair (default: the earliest and the latest). The split must
    be site-grouped (``random`` or ``spatial``); the official split is refused.
    """

    def __init__(self, root: str | Path | PatchSource, bands: str | Sequence[str] = "all",
                 splits: str | Path | Mapping[str, str] = "random", split_seed: int = 0,
                 val_fraction: float = 0.1, years: Sequence[int] | None = None, splits_dir: str | None = None,
                 batch_size: int = 32, eval_batch_size: int = 64, augment: str = "dihedral", seed: int = 0,
                 stats: BandStats | None = None, cache: str = "device",
                 progress: Callable[[int, int], None] | None = None) -> None:
        super().__init__(root, bands, splits, split_seed, val_fraction, None, splits_dir, batch_size,
                         eval_batch_size, augment, seed, None, cache, progress)
        if years is not None and len(set(years)) != 2:
            raise ConfigError(f"data.years={list(years)}: a change model pairs exactly two years, e.g. [2016, 2022]")
        self.pair_years = tuple(sorted(int(y) for y in years)) if years is not None else None
        self.date_channels = parse_bands(bands) if not isinstance(bands, (list, tuple)) else tuple(bands)
        self.bands = required_bands(self.date_channels)
        self.channels = date_channels(self.date_channels)
        self.stats = stats.subset(self.channels) if stats is not None else None
        self._pairs: dict[str, list[Pair]] = {}

    def resolve(self) -> dict[str, str]:
        if self.assignment is None:
            assignment = super().resolve()
            keys = {pid: key for pid, key in zip(self.source.ids, self.source.keys, strict=True)}
            check_pair_split(self.splits, assignment, keys)
        return self.assignment

    def pairs(self, split: str) -> list[Pair]:
        """The pairs of ``split`` (both patches in it)."""
        if split not in self._pairs:
            assignment = self.resolve()
            indices = [i for i, pid in enumerate(self.source.ids) if assignment.get(pid) == split]
            self._pairs[split] = find_pairs(self.source.keys, indices, self.pair_years) if indices else []
        return self._pairs[split]

    def load(self, split: str) -> SplitArrays:
        if split not in self.arrays:
            pairs = self.pairs(split)
            logger.info("loading %d %s pairs (%s) from %s", len(pairs), split, ",".join(self.bands), self.source.path)
            self.arrays[split] = load_pairs(self.source, pairs, self.bands, self.progress)
        return self.arrays[split]

    def setup(self, stage: str | None = None) -> None:
        if self.stats is None:
            train = self.load("train")
            if not len(train):
                raise SplitError(f"the train split of {self.source.path} has no pairs (split {self.splits!r})")
            self.stats = pair_stats(train, self.date_channels, self.bands,
                                    f"{self.source.path} split=train pairs={len(train)}")
        super().setup(stage)

    def normalize(self, raw: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """Both dates normalised with the same statistics; the base class flips/rotates pair and label together."""
        return normalize_pair(raw, self.date_channels, self.bands, mean, std)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["pairs"] = {name: len(self.pairs(name)) for name in ("train", "val", "test")}
        return info


# ----------------------------------------------------------------------------------------------
# Prediction and evaluation
# ----------------------------------------------------------------------------------------------

def predict_change(network: nn.Module, arrays: SplitArrays, channels: Sequence[str], stats: BandStats,
                   batch_size: int = 32, device: str | torch.device = "cpu") -> Iterator[tuple[torch.Tensor,
                                                                                                torch.Tensor]]:
    """Predicted change classes of a pair split, batch by batch: ``(classes (n, H, W) int64, labels (n, H, W))``.

    Args:
        network: a change model, returning ``(N, 4, H, W)`` logits.
        arrays: pairs from :func:`load_pairs`.
        channels: the per-date channels (without ``a:``/``b:``).
        stats: statistics of the ``a:X``/``b:X`` channels.
        batch_size: pairs per forward pass.
        device: where the network runs.
    """
    device = torch.device(device)
    network.eval().to(device)
    stats = stats.subset(date_channels(channels))
    mean = torch.tensor(stats.mean, dtype=torch.float32, device=device)
    std = torch.tensor(stats.std, dtype=torch.float32, device=device)
    bands = tuple(b.split(":", 1)[1] for b in arrays.bands[:len(arrays.bands) // 2])
    with torch.inference_mode():
        for start in range(0, len(arrays), batch_size):
            raw = arrays.images[start:start + batch_size].to(device)
            image = normalize_pair(raw, channels, bands, mean, std)
            yield network(image).argmax(1), arrays.masks[start:start + batch_size].to(device).long()


def evaluate_change(network: nn.Module, arrays: SplitArrays, channels: Sequence[str], stats: BandStats,
                    batch_size: int = 32, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Change scores of a change model on a pair split: ``{"overall": scores, "confusion": K x K}``."""
    confusion = torch.zeros(CHANGE_CLASSES, CHANGE_CLASSES, dtype=torch.long)
    for pred, target in predict_change(network, arrays, channels, stats, batch_size, device):
        confusion += change_confusion(pred, target).cpu()
    return {"overall": change_scores(confusion), "confusion": confusion.tolist()}


@dataclass
class ChangeEvalResult:
    """Change scores of a change model on one split of pairs (``metrics.json``, ``metrics.md``).

    Attributes:
        split: the split evaluated.
        overall: :func:`change_scores` over every valid pixel of the split's pairs.
        confusion: 4 x 4 pixel counts, rows true class, columns predicted class.
        per_patch: one dict per pair: ``id``, ``valid_pixels`` and its scores.
        checkpoint: what was evaluated.
        data: the dataset path.
        out: folder written, if any.
    """

    split: str
    overall: dict[str, float]
    confusion: list[list[int]]
    per_patch: list[dict[str, Any]] = field(repr=False)
    checkpoint: str = ""
    data: str = ""
    out: Path | None = None
    threshold: float = math.nan
    per_year: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_country: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_bin: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN becomes null)."""
        def safe(value: Any) -> Any:
            if isinstance(value, float) and math.isnan(value):
                return None
            if isinstance(value, dict):
                return {k: safe(v) for k, v in value.items()}
            if isinstance(value, list):
                return [safe(v) for v in value]
            return value

        return safe({"split": self.split, "checkpoint": self.checkpoint, "data": self.data, "kind": "change",
                     "pairs": len(self.per_patch), "overall": self.overall, "confusion": self.confusion,
                     "classes": list(CHANGE_KEYS)})

    def to_markdown(self) -> str:
        """Markdown: IoU, precision, recall and F1 per change class, and the 4 x 4 confusion matrix."""
        def fmt(value: float) -> str:
            return "–" if value is None or math.isnan(value) else f"{value:.4f}"

        lines = [f"# Change evaluation on `{self.split}` ({len(self.per_patch)} pairs)", "",
                 f"Model: `{self.checkpoint}`  ", f"Data: `{self.data}`", "",
                 "| class | IoU | precision | recall | F1 |", "|---|---:|---:|---:|---:|"]
        for c in ChangeClass:
            k = CLASS_KEYS[c]
            lines.append(f"| {c.label} | " + " | ".join(fmt(self.overall[f"{m}_{k}"])
                                                       for m in ("iou", "precision", "recall", "f1")) + " |")
        lines += ["", f"Mean IoU of new, persistent and ceased mining: {fmt(self.overall['miou_change'])}", "",
                  "| truth \\ predicted | " + " | ".join(c.label for c in ChangeClass) + " |",
                  "|---|" + "---:|" * len(ChangeClass)]
        lines += [f"| {c.label} | " + " | ".join(str(v) for v in row) + " |"
                  for c, row in zip(ChangeClass, self.confusion, strict=True)]
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path) -> Path:
        """Write ``metrics.json`` and ``metrics.md`` (atomically) into ``out``."""
        import json
        import os

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for name, text in (("metrics.json", json.dumps(self.to_dict(), indent=2)), ("metrics.md", self.to_markdown())):
            tmp = out / f".{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, out / name)
        self.out = out
        return out


def evaluate_change_split(network: nn.Module, card: Any, source: PatchSource, split: str,
                          splits: str | Path | Mapping[str, str], split_seed: int = 0, val_fraction: float = 0.1,
                          years: Sequence[int] | None = None, batch_size: int = 32, device: str | torch.device = "cpu",
                          progress: Callable[[int, int], None] | None = None) -> ChangeEvalResult:
    """Evaluate a change model (network and card) on one split of pairs of ``source``.

    Raises:
        SplitError: the split is not site-grouped, or has no pair.
    """
    from smallmines.data.pairs import split_date_channels

    channels = split_date_channels(card.channels)
    dm = ChangeDataModule(source, channels, splits, split_seed, val_fraction, years, stats=card.stats,
                          progress=progress)
    arrays = dm.load(split)
    if not len(arrays):
        raise SplitError(f"split {split!r} of {source.path} has no pair of years")
    total = torch.zeros(CHANGE_CLASSES, CHANGE_CLASSES, dtype=torch.long)
    rows: list[dict[str, Any]] = []
    start = 0
    for pred, target in predict_change(network, arrays, channels, card.stats, batch_size, device):
        for i in range(len(pred)):
            confusion = change_confusion(pred[i], target[i]).cpu()
            total += confusion
            rows.append({"id": arrays.ids[start + i], "valid_pixels": int(confusion.sum()), **change_scores(confusion)})
        start += len(pred)
    return ChangeEvalResult(split, change_scores(total), total.tolist(), rows, data=str(source.path))
