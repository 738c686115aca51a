"""Exact binary segmentation metrics from integer confusion counts.

Everything is derived from the pixel counts ``(TN, FP, FN, TP)`` over valid pixels (mask 255 is
ignored), accumulated as int64, so scores are exact for any batch order, device count (the
torchmetrics states sum across DDP processes) or aggregation (per patch, per year, per share bin,
overall):

- ``iou_mining`` = TP / (TP + FP + FN); ``iou_background`` = TN / (TN + FN + FP)
- ``miou`` = mean of the two IoUs
- ``f1_mining`` = 2 TP / (2 TP + FP + FN); ``precision_mining`` = TP / (TP + FP); ``recall_mining`` = TP / (TP + FN)
- ``accuracy`` = (TP + TN) / all valid pixels

A score whose denominator is 0 (e.g. mining IoU on patches with no mining, none predicted) is NaN,
never a silent 0 or 1; ``miou`` then averages the defined IoU only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from smallmines.bands import IGNORE_INDEX

SCORE_NAMES = ("iou_mining", "iou_background", "miou", "f1_mining", "precision_mining", "recall_mining",
               "accuracy")
DEFAULT_THRESHOLDS = tuple(round(0.01 * i, 2) for i in range(1, 100))
"""Candidate decision thresholds searched on validation: 0.01, 0.02, ..., 0.99."""


def confusion_counts(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample confusion counts.

    Args:
        pred: ``(N, H, W)`` bool or 0/1 predictions.
        target: ``(N, H, W)`` labels 0/1 with 255 ignored.

    Returns:
        int64 ``(N, 4)``: TN, FP, FN, TP per sample.
    """
    valid = target != IGNORE_INDEX
    truth = target == 1
    pred = pred.bool()
    dims = tuple(range(1, pred.ndim))
    tp = (pred & truth & valid).sum(dims)
    fp = (pred & ~truth & valid).sum(dims)
    fn = (~pred & truth & valid).sum(dims)
    tn = valid.sum(dims) - tp - fp - fn
    return torch.stack((tn, fp, fn, tp), dim=1).long()


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def scores(counts: Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, float]:
    """All scores from ``(TN, FP, FN, TP)`` (see the module docstring for definitions)."""
    tn, fp, fn, tp = (int(v) for v in (counts.tolist() if hasattr(counts, "tolist") else counts))
    iou_m, iou_b = _ratio(tp, tp + fp + fn), _ratio(tn, tn + fn + fp)
    defined = [v for v in (iou_m, iou_b) if not math.isnan(v)]
    return {
        "iou_mining": iou_m,
        "iou_background": iou_b,
        "miou": sum(defined) / len(defined) if defined else math.nan,
        "f1_mining": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision_mining": _ratio(tp, tp + fp),
        "recall_mining": _ratio(tp, tp + fn),
        "accuracy": _ratio(tp + tn, tn + fp + fn + tp),
    }


def confusion_matrix(counts: Sequence[int] | np.ndarray | torch.Tensor) -> list[list[int]]:
    """``[[TN, FP], [FN, TP]]`` (rows: truth background/mining; columns: predicted)."""
    tn, fp, fn, tp = (int(v) for v in (counts.tolist() if hasattr(counts, "tolist") else counts))
    return [[tn, fp], [fn, tp]]


class SegmentationMetrics(Metric):
    """Torchmetrics metric: exact mining/background scores at a fixed probability threshold.

    ``update(logits, target)`` takes ``(N, 2, H, W)`` logits and ``(N, H, W)`` targets; ``compute()``
    returns a dict of float tensors named as :data:`SCORE_NAMES`.

    Args:
        threshold: a pixel is mining when ``softmax(logits)[:, 1] >= threshold``.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = float(threshold)
        self.add_state("counts", default=torch.zeros(4, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        prob = torch.softmax(logits.detach().float(), dim=1)[:, 1]
        self.counts += confusion_counts(prob >= self.threshold, target).sum(0)

    def compute(self) -> dict[str, torch.Tensor]:
        return {k: torch.tensor(v, dtype=torch.float32) for k, v in scores(self.counts).items()}


class ThresholdSweep(Metric):
    """Torchmetrics metric: exact confusion counts at many thresholds at once, for threshold selection.

    Probabilities are bucketed by the candidate thresholds, so the counts at every candidate are
    exact (a pixel is mining at threshold ``t`` when ``p >= t``). ``update(prob, target)`` takes the
    mining probability ``(N, H, W)``.

    Args:
        thresholds: increasing candidate thresholds in (0, 1).
    """

    full_state_update = False

    def __init__(self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.register_buffer("thresholds", torch.tensor(sorted(thresholds), dtype=torch.float32), persistent=False)
        bins = len(thresholds) + 1
        self.add_state("positives", default=torch.zeros(bins, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("negatives", default=torch.zeros(bins, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, prob: torch.Tensor, target: torch.Tensor) -> None:
        valid = target != IGNORE_INDEX
        bucket = torch.bucketize(prob.float()[valid], self.thresholds, right=True)
        truth = target[valid] == 1
        bins = len(self.thresholds) + 1
        self.positives += torch.bincount(bucket[truth], minlength=bins)
        self.negatives += torch.bincount(bucket[~truth], minlength=bins)

    def counts(self) -> torch.Tensor:
        """``(T, 4)`` TN, FP, FN, TP at each candidate threshold."""
        pos_above = self.positives.flip(0).cumsum(0).flip(0)[1:]  # pixels in buckets > j are predicted mining
        neg_above = self.negatives.flip(0).cumsum(0).flip(0)[1:]
        tp, fp = pos_above, neg_above
        fn, tn = self.positives.sum() - tp, self.negatives.sum() - fp
        return torch.stack((tn, fp, fn, tp), dim=1)

    def compute(self) -> dict[str, Any]:
        """Best threshold by mining IoU (ties: the one closest to 0.5) and its scores."""
        table = self.counts().cpu()
        ious = [scores(row)["iou_mining"] for row in table]
        candidates = [(iou, -abs(t - 0.5), t, i) for i, (iou, t) in enumerate(zip(ious, self.thresholds.tolist(),
                                                                                   strict=True))
                      if not math.isnan(iou)]
        if not candidates:  # mining IoU undefined everywhere: no mining in truth nor prediction
            values = self.thresholds.tolist()
            index = min(range(len(values)), key=lambda i: abs(values[i] - 0.5))
            return {"threshold": round(values[index], 4), "scores": scores(table[index]), "curve": ious}
        _, _, best, index = max(candidates)
        return {"threshold": round(best, 4), "scores": scores(table[index]), "curve": ious}
