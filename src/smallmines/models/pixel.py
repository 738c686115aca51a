"""The per-pixel LightGBM baseline, wrapped as a network so evaluation, mapping and export treat it alike."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from smallmines.errors import CheckpointError

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Per-pixel LightGBM baseline
# ----------------------------------------------------------------------------------------------


class PixelGBM(nn.Module):
    """A LightGBM pixel classifier behind the network interface: ``(N, C, H, W)`` -> ``(N, 2, H, W)``.

    Every pixel is classified from its own channel values (bands and spectral indices), with no
    spatial context. The booster is fitted by :func:`smallmines.training.baseline.fit_pixel_baseline` and
    travels in the state dict (as text), so :func:`save_model`/:func:`load_model` work unchanged.
    The returned logits are ``(0, margin)``: their softmax is the booster's probability.

    Args:
        in_channels: number of input channels.
        params: LightGBM parameters and sampling options (used when fitting).
    """

    def __init__(self, in_channels: int, **params: Any) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.params = params
        self.booster: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.booster is None:
            raise CheckpointError("the LightGBM baseline has not been fitted (train it with smallmines train)")
        n, c, h, w = x.shape
        features = x.detach().float().permute(0, 2, 3, 1).reshape(-1, c).cpu().numpy()
        margin = self.booster.predict(features, raw_score=True, num_threads=self.params.get("num_threads", 0))
        margin = torch.from_numpy(np.asarray(margin, dtype=np.float32)).reshape(n, 1, h, w).to(x.device)
        return torch.cat((torch.zeros_like(margin), margin), dim=1)

    def parameter_count(self) -> int:
        """Number of tree nodes (splits and leaves), the booster's counterpart of a parameter count."""
        if self.booster is None:
            return 0
        trees = self.booster.dump_model()["tree_info"]
        return int(sum(2 * t["num_leaves"] - 1 for t in trees))

    def get_extra_state(self) -> dict[str, Any]:
        return {"booster": self.booster.model_to_string() if self.booster is not None else None}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        text = state.get("booster")
        if text:
            import lightgbm

            self.booster = lightgbm.Booster(model_str=text)


