"""Segmentation losses on ``(N, K, H, W)`` logits (K = 2; 4 for change models), targets ``(N, H, W)`` (255 = ignore).

Terms are picked by name (:data:`LOSS_TERMS`) and combined with weights by :class:`CombinedLoss`:

- ``ce``: cross-entropy, optionally class-weighted (the authors use 0.1 background / 0.9 mining);
  the weighted mean divides by the summed weights of the valid pixels, as ``torch.nn.CrossEntropyLoss`` does.
- ``bce``: binary cross-entropy on the mining logit ``l1 - l0``, class-weighted the same way.
- ``dice``: soft Dice loss of the mining class over the whole batch.
- ``focal``: focal loss ``-(1 - p_t)^gamma log p_t``, class-weighted (alpha).

Every term ignores pixels labelled 255 and returns 0 (with a gradient path) for a batch without any
valid pixel, so a fully nodata batch never produces NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from smallmines.bands import IGNORE_INDEX
from smallmines.errors import ConfigError


def _valid(target: torch.Tensor) -> torch.Tensor:
    return target != IGNORE_INDEX


def _weighted_mean(values: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-pixel ``values`` over valid pixels, weighted by the class weight of each pixel."""
    valid = _valid(target)
    safe = torch.where(valid, target, torch.zeros_like(target))
    weights = valid.to(values.dtype)
    if class_weights is not None:
        weights = weights * class_weights.to(values.dtype)[safe]
    return (values * weights).sum() / weights.sum().clamp_min(torch.finfo(values.dtype).tiny)


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None,
                  **_: float) -> torch.Tensor:
    """Class-weighted cross-entropy over valid pixels."""
    safe = torch.where(_valid(target), target, torch.zeros_like(target))
    per_pixel = F.cross_entropy(logits.float(), safe, reduction="none")
    return _weighted_mean(per_pixel, target, class_weights)


def binary_cross_entropy(logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None,
                         **_: float) -> torch.Tensor:
    """Class-weighted BCE on the mining logit ``l1 - l0`` over valid pixels."""
    margin = (logits[:, 1] - logits[:, 0]).float()
    per_pixel = F.binary_cross_entropy_with_logits(margin, (target == 1).float(), reduction="none")
    return _weighted_mean(per_pixel, target, class_weights)


def dice(logits: torch.Tensor, target: torch.Tensor, dice_smooth: float = 1.0, **_: float) -> torch.Tensor:
    """Soft Dice loss ``1 - (2 sum(p y) + s) / (sum(p) + sum(y) + s)`` of the mining class, valid pixels only.

    With more than 2 classes (change models) it is the mean of that loss over every class but class 0.
    """
    valid = _valid(target).float()
    prob = torch.softmax(logits.float(), dim=1)
    losses = []
    for k in range(1, logits.shape[1]):
        p = prob[:, k] * valid
        truth = (target == k).float()
        intersection = (p * truth).sum()
        losses.append(1 - (2 * intersection + dice_smooth) / (p.sum() + truth.sum() + dice_smooth))
    return torch.stack(losses).mean()


def focal(logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None,
          focal_gamma: float = 2.0, **_: float) -> torch.Tensor:
    """Focal loss (Lin et al. 2017), class weights acting as alpha, over valid pixels."""
    safe = torch.where(_valid(target), target, torch.zeros_like(target))
    log_p = torch.log_softmax(logits.float(), dim=1).gather(1, safe[:, None]).squeeze(1)
    per_pixel = -((1 - log_p.exp()) ** focal_gamma) * log_p
    return _weighted_mean(per_pixel, target, class_weights)


LOSS_TERMS: dict[str, Callable[..., torch.Tensor]] = {
    "ce": cross_entropy,
    "bce": binary_cross_entropy,
    "dice": dice,
    "focal": focal,
}
"""Loss terms by name; each is ``(logits, target, class_weights=None, focal_gamma=2.0, dice_smooth=1.0)``."""


class CombinedLoss(nn.Module):
    """Weighted sum of loss terms.

    Args:
        terms: term name -> weight, e.g. ``{"ce": 1.0, "dice": 1.0}``.
        class_weights: one weight per class for ``ce`` and ``focal`` (``(background, mining)``, or the 4 change
            classes), and ``(background, mining)`` for ``bce``.
        focal_gamma: focusing parameter of ``focal``.
        dice_smooth: smoothing of ``dice``.

    Raises:
        ConfigError: an unknown term (the message lists the valid ones) or bad class weights.
    """

    def __init__(self, terms: Mapping[str, float], class_weights: Sequence[float] | None = None,
                 focal_gamma: float = 2.0, dice_smooth: float = 1.0) -> None:
        super().__init__()
        unknown = sorted(set(terms) - set(LOSS_TERMS))
        if unknown or not terms:
            raise ConfigError(f"loss terms {sorted(terms)}; choose from {', '.join(LOSS_TERMS)}")
        if class_weights is not None and (len(class_weights) < 2 or min(class_weights) < 0):
            raise ConfigError(f"class_weights {list(class_weights)} must be one non-negative number per class "
                              "(2 for mining models, 4 for change models)")
        self.terms = dict(terms)
        self.options = {"focal_gamma": float(focal_gamma), "dice_smooth": float(dice_smooth)}
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Each term is 0 with a gradient path when no pixel is valid; no host sync is needed to check.
        return sum(weight * LOSS_TERMS[name](logits, target, class_weights=self.class_weights, **self.options)
                   for name, weight in self.terms.items())
