"""Evaluate a trained model on a split: exact metrics overall, per year, per country and per mining-share bin.

:func:`evaluate` reads a ``model.pt``/``.ckpt`` (or takes a network and its card), normalises the
split with the card's statistics, predicts the mining probability and thresholds it at the card's
threshold, which training chose on the validation split (never on test). It returns an
:class:`EvalResult` and writes, into ``RUN_DIR/evaluation/{split}/``::

    metrics.json    overall, per_year, per_country, per_bin, threshold, confusion [[TN, FP], [FN, TP]], counts
    metrics.md      the same as Markdown tables
    per_patch.csv   one row per patch: counts and scores

Per-bin rows group patches by their *true* mining share (:func:`smallmines.data.splits.share_bin`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from smallmines.bands import parse_bands, required_bands
from smallmines.data.dataset import PatchSource, resolve_split
from smallmines.data.splits import BIN_EDGES, SPLIT_NAMES, parse_patch_name, share_bin
from smallmines.data.stats import BandStats
from smallmines.errors import ConfigError, SplitError
from smallmines.folders import refuse_overwrite
from smallmines.models.change import is_change_model
from smallmines.models.networks import mining_probability
from smallmines.models.registry import ModelCard, check_threshold, load_model
from smallmines.training.change import ChangeEvalResult, evaluate_change_split
from smallmines.training.datamodule import SplitArrays, augment_batch, dihedral_maps, load_split, normalize_batch
from smallmines.training.metrics import (
    DEFAULT_THRESHOLDS,
    SCORE_NAMES,
    ThresholdSweep,
    confusion_counts,
    confusion_matrix,
    scores,
)

logger = logging.getLogger(__name__)
PATCH_COLUMNS = ("id", "year", "mining_share", "bin", "predicted_share", "valid_pixels", "tn", "fp", "fn", "tp",
                 *SCORE_NAMES, "country")


def bin_label(index: int) -> str:
    """Human label of a mining-share bin: ``0 %``, ``(0, 1] %``, ..., ``> 50 %``."""
    if index == 0:
        return "0 %"
    edges = (*BIN_EDGES, math.inf)
    low, high = edges[index - 1], edges[index]
    return f"> {low:g} %" if math.isinf(high) else f"({low:g}, {high:g}] %"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> the first CUDA device when there is one, else CPU.

    Raises:
        ConfigError: an unknown device, or CUDA asked for where torch sees no GPU.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device={device!r}: choose auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but no CUDA GPU is visible to torch (torch {torch.__version__}); "
                          "use --device cpu")
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={device!r}: choose auto, cpu, cuda or cuda:N")
    return resolved


def predict_batches(network: nn.Module, arrays: SplitArrays, channels: Sequence[str], stats: BandStats,
                    batch_size: int = 64, device: str | torch.device = "auto", tta: bool = False,
                    autocast: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mining probabilities of a split, batch by batch.

    Args:
        network: returns ``(N, 2, H, W)`` logits; put in eval mode and moved to ``device``.
        arrays: the split (raw bands).
        channels: the network's input channels.
        stats: their normalisation statistics.
        batch_size: patches per forward pass.
        device: ``auto``, ``cpu``, ``cuda``...
        tta: average the probabilities over the 8 flips/rotations.
        autocast: bf16 autocast on CUDA.

    Yields:
        ``(probability (n, H, W) float32, mask (n, H, W) int64)`` on ``device``.
    """
    device = resolve_device(device)
    network.eval().to(device)
    stats = stats.subset(channels)
    mean = torch.tensor(stats.mean, dtype=torch.float32, device=device)
    std = torch.tensor(stats.std, dtype=torch.float32, device=device)
    codes = range(8) if tta else (0,)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                enabled=autocast and device.type == "cuda"):
        for start in range(0, len(arrays), batch_size):
            raw = arrays.images[start:start + batch_size].to(device, non_blocking=True)
            mask = arrays.masks[start:start + batch_size].to(device).long()
            image = normalize_batch(raw, channels, arrays.bands, mean, std)
            maps = dihedral_maps(*image.shape[-2:], device=device) if tta else None
            prob = torch.zeros(mask.shape, dtype=torch.float32, device=device)
            for code in codes:
                if code == 0:
                    prob += mining_probability(network(image))
                    continue
                k = torch.full((len(image),), code, device=device)
                view, _ = augment_batch(image, mask, k, maps)
                p = mining_probability(network(view))
                inverse = torch.argsort(maps, dim=1)
                restored, _ = augment_batch(p[:, None], mask, k, inverse)
                prob += restored[:, 0]
            yield prob / len(codes), mask


def select_threshold(network: nn.Module, arrays: SplitArrays, channels: Sequence[str], stats: BandStats,
                     batch_size: int = 64, device: str | torch.device = "auto", autocast: bool = False,
                     thresholds: Sequence[float] | None = None, warn: bool = True) -> dict[str, Any]:
    """The threshold that maximises mining IoU on ``arrays`` (the validation split).

    Args:
        network: returns ``(N, 2, H, W)`` logits.
        arrays: the split (raw bands), usually validation.
        channels: the network's input channels.
        stats: their normalisation statistics.
        batch_size: patches per forward pass.
        device: ``auto``, ``cpu``, ``cuda``...
        autocast: bf16 autocast on CUDA.
        thresholds: candidates (default :data:`smallmines.training.metrics.DEFAULT_THRESHOLDS`); one value
            just scores the split at that threshold.
        warn: log a warning when the split is empty (off for a second call on the same split).

    Returns:
        ``{"threshold": float, "scores": {...}, "curve": [mining IoU per candidate]}``; threshold 0.5
        when the split is empty.
    """
    if not len(arrays):
        fallback = float(thresholds[0]) if thresholds else 0.5
        if warn:
            logger.warning("no validation patches: threshold %.2f", fallback)
        return {"threshold": fallback, "scores": {}, "curve": []}
    device = resolve_device(device)
    # this process alone (after a DDP fit the other ranks have left): never gather across processes
    sweep = ThresholdSweep(thresholds or DEFAULT_THRESHOLDS, sync_on_compute=False).to(device)
    for prob, mask in predict_batches(network, arrays, channels, stats, batch_size, device, autocast=autocast):
        sweep.update(prob, mask)
    return sweep.compute()


@dataclass
class EvalResult:
    """Metrics of one model on one split.

    Attributes:
        split: the split evaluated.
        threshold: decision threshold used.
        overall: scores over every pixel of the split.
        per_year: year -> scores (plus ``patches``).
        per_bin: mining-share bin -> scores (plus ``patches`` and ``label``).
        confusion: ``[[TN, FP], [FN, TP]]`` in pixels.
        per_patch: one dict per patch (:data:`PATCH_COLUMNS`).
        per_country: country code (from the file names; ``""`` for names without one) -> scores
            (plus ``patches``).
        checkpoint: what was evaluated.
        data: the dataset path.
        out: folder written, if any.
    """

    split: str
    threshold: float
    overall: dict[str, float]
    per_year: dict[str, dict[str, Any]]
    per_bin: dict[str, dict[str, Any]]
    confusion: list[list[int]]
    per_patch: list[dict[str, Any]] = field(repr=False)
    checkpoint: str = ""
    data: str = ""
    out: Path | None = None
    per_country: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN becomes null); the content of ``metrics.json``."""
        return _json_safe({
            "split": self.split, "checkpoint": self.checkpoint, "data": self.data, "threshold": self.threshold,
            "patches": len(self.per_patch), "overall": self.overall, "per_year": self.per_year,
            "per_country": self.per_country, "per_bin": self.per_bin, "confusion": self.confusion,
        })

    def to_markdown(self) -> str:
        """Markdown tables: overall, per year, per bin, confusion matrix."""
        head = "| group | patches | mining IoU | background IoU | mIoU | F1 | precision | recall | accuracy |"
        rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|"

        def row(label: str, values: Mapping[str, Any], patches: int) -> str:
            cells = " | ".join(_fmt(values.get(k)) for k in ("iou_mining", "iou_background", "miou", "f1_mining",
                                                               "precision_mining", "recall_mining", "accuracy"))
            return f"| {label} | {patches} | {cells} |"

        lines = [f"# Evaluation on `{self.split}` (threshold {self.threshold:g})", "",
                 f"Model: `{self.checkpoint}`  ", f"Data: `{self.data}`", "", head, rule,
                 row("**overall**", self.overall, len(self.per_patch))]
        lines += [row(f"year {y}", v, v["patches"]) for y, v in self.per_year.items()]
        if len(self.per_country) > 1:
            lines += [row(f"country {c or '?'}", v, v["patches"]) for c, v in self.per_country.items()]
        lines += [row(f"share {v['label']}", v, v["patches"]) for v in self.per_bin.values()]
        (tn, fp), (fn, tp) = self.confusion
        lines += ["", "Confusion matrix (pixels)", "", "| truth \\ predicted | background | mining |",
                  "|---|---:|---:|", f"| background | {tn} | {fp} |", f"| mining | {fn} | {tp} |", ""]
        return "\n".join(lines)

    def write(self, out: str | Path) -> Path:
        """Write ``metrics.json``, ``metrics.md`` and ``per_patch.csv`` (each atomically) into ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        _atomic_text(out / "metrics.json", json.dumps(self.to_dict(), indent=2))
        _atomic_text(out / "metrics.md", self.to_markdown())
        tmp = out / ".per_patch.csv.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=PATCH_COLUMNS)
            writer.writeheader()
            for patch in self.per_patch:
                writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in patch.items()})
        os.replace(tmp, out / "per_patch.csv")
        self.out = out
        return out


def _fmt(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def summarize(counts: np.ndarray, ids: Sequence[str], years: Sequence[int], threshold: float, split: str,
              shares: np.ndarray) -> EvalResult:
    """Aggregate per-patch confusion counts ``(N, 4)`` into an :class:`EvalResult`."""
    per_patch = []
    for pid, year, c, share in zip(ids, years, counts, shares, strict=True):
        valid = int(c.sum())
        predicted = round(100 * (c[1] + c[3]) / max(valid, 1), 4)
        key = parse_patch_name(pid)
        per_patch.append({"id": pid, "country": key.country if key else "", "year": int(year),
                          "mining_share": round(float(share), 4),
                          "bin": share_bin(float(share)), "predicted_share": predicted,
                          "valid_pixels": valid, "tn": int(c[0]), "fp": int(c[1]), "fn": int(c[2]), "tp": int(c[3]),
                          **scores(c)})
    groups: dict[str, dict[Any, list[int]]] = {"year": defaultdict(list), "bin": defaultdict(list),
                                               "country": defaultdict(list)}
    for i, patch in enumerate(per_patch):
        groups["year"][patch["year"]].append(i)
        groups["country"][patch["country"]].append(i)
        groups["bin"][patch["bin"]].append(i)
    per_year = {str(y): {**scores(counts[idx].sum(0)), "patches": len(idx)}
                for y, idx in sorted(groups["year"].items())}
    per_bin = {str(b): {**scores(counts[idx].sum(0)), "patches": len(idx), "label": bin_label(b)}
               for b, idx in sorted(groups["bin"].items())}
    total = counts.sum(0) if len(counts) else np.zeros(4, np.int64)
    per_country = {c: {**scores(counts[idx].sum(0)), "patches": len(idx)}
                   for c, idx in sorted(groups["country"].items())}
    return EvalResult(split, float(threshold), scores(total), per_year, per_bin, confusion_matrix(total), per_patch,
                      per_country=per_country)


def _run_dir_of(checkpoint: Path) -> Path:
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        if (folder / "config.yaml").is_file():
            return folder
    return checkpoint.parent


def evaluate(
    checkpoint: str | Path | tuple[nn.Module, ModelCard],
    data: str | Path | PatchSource | None = None,
    split: str = "test",
    *,
    threshold: float | str | None = None,
    splits: str | Path | Mapping[str, str] | None = None,
    years: Sequence[int] | None = None,
    out: str | Path | None = None,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    tta: bool = False,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = True,
) -> EvalResult | ChangeEvalResult:
    """Evaluate a model on a split of a dataset.

    A change model (two dates, :mod:`smallmines.training.change`) is scored per change class on the
    split's pairs instead: a :class:`~smallmines.training.change.ChangeEvalResult`.

    Args:
        checkpoint: ``model.pt``/``.ckpt`` path, or ``(network, card)``.
        data: dataset or pack; default: the one the model was trained on (from its card).
        split: ``train``, ``val`` or ``test``.
        threshold: None uses the card's (chosen on validation during training); ``"val"`` chooses it
            now on the validation split of ``data``; a number fixes it.
        splits: split method, CSV or mapping; default: the training run's settings (method, seed,
            validation share), so ``test`` is the test split the model never saw.
        years: keep only these years (default: the training run's).
        out: folder to write; default ``RUN_DIR/evaluation/{split}`` for a checkpoint inside a run
            folder, nothing for an in-memory network.
        batch_size: patches per forward pass.
        device: ``auto``, ``cpu``, ``cuda``...
        tta: test-time augmentation (mean over the 8 flips/rotations).
        progress: called as ``progress(done, total)`` while reading patches.
        overwrite: replace an earlier evaluation in ``out`` (the command line refuses by default,
            ``--overwrite``).

    Returns:
        The metrics (also written to ``out``).

    Raises:
        CheckpointError, ConfigError, SplitError, DatasetNotFoundError: as named.
    """
    if split not in SPLIT_NAMES:
        raise ConfigError(f"split {split!r}; choose one of {', '.join(SPLIT_NAMES)}")
    if isinstance(checkpoint, tuple):
        network, card = checkpoint
        label = card.config.get("name", card.model)
    else:
        path = Path(checkpoint)
        network, card = load_model(path)
        label = str(path)
        if out is None:
            out = _run_dir_of(path) / "evaluation" / split
    if out is not None:
        refuse_overwrite([Path(out) / "metrics.json"], overwrite)
    data_cfg = card.config.get("data", {})
    root = data if data is not None else data_cfg.get("root")
    if isinstance(root, str) and not isinstance(checkpoint, tuple) and not Path(root).exists():
        beside = _run_dir_of(Path(checkpoint)) / root  # a relative path of an older run folder moved with its data
        root = str(beside) if not Path(root).is_absolute() and beside.exists() else root
    if root is None:
        raise ConfigError("no dataset given and the model card does not name one; pass DATA")
    source = root if isinstance(root, PatchSource) else PatchSource(root, data_cfg.get("splits_dir"))
    method = splits if splits is not None else data_cfg.get("splits", "official")
    if is_change_model(card.model):  # two dates in, 4 change classes out: scored per change class on pairs
        result = evaluate_change_split(network, card, source, split, method, int(data_cfg.get("split_seed", 0)),
                                       float(data_cfg.get("val_fraction", 0.1)),
                                       years if years is not None else data_cfg.get("years"),
                                       batch_size, resolve_device(device), progress)
        result.checkpoint = label
        if out is not None:
            result.write(out)
        return result
    assignment = resolve_split(source, method, int(data_cfg.get("split_seed", 0)),
                               float(data_cfg.get("val_fraction", 0.1)))
    years = years if years is not None else data_cfg.get("years")
    wanted = None if years is None else {int(y) for y in years}
    channels = parse_bands(card.channels)
    bands = required_bands(channels)

    def indices(name: str) -> list[int]:
        return [i for i, (pid, key) in enumerate(zip(source.ids, source.keys, strict=True))
                if assignment.get(pid) == name and (wanted is None or key.year in wanted)]

    chosen = indices(split)
    if not chosen:
        raise SplitError(f"split {split!r} of {source.path} has no patch (years {sorted(wanted) if wanted else 'all'})")
    if threshold is None:
        threshold = card.threshold
    elif threshold == "val":
        threshold = select_threshold(network, load_split(source, indices("val"), bands), channels, card.stats,
                                     batch_size, device)["threshold"]
    threshold = check_threshold(threshold)
    arrays = load_split(source, chosen, bands, progress)
    rows = []
    for prob, mask in predict_batches(network, arrays, channels, card.stats, batch_size, device, tta=tta):
        rows.append(confusion_counts(prob >= threshold, mask).cpu())
    result = summarize(torch.cat(rows).numpy(), arrays.ids, arrays.years, threshold, split, arrays.shares())
    result.checkpoint, result.data = label, str(source.path)
    if out is not None:
        result.write(out)
    logger.info("%s on %s/%s: mining IoU %.4f, mIoU %.4f (threshold %.2f)", label, source.path, split,
                result.overall["iou_mining"], result.overall["miou"], threshold)
    return result
