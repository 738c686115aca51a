"""Bi-temporal change networks: both dates in, the 4 change classes out.

Input: ``(N, 2C, H, W)``, the ``C`` normalised channels of the earlier date (``a:...``) followed by the
same channels of the later date (``b:...``); output: ``(N, 4, H, W)`` logits of
:class:`smallmines.legend.ChangeClass` (no mining, new, persistent, ceased).

- ``change-unet-lite``: early fusion, a :class:`~smallmines.models.networks.LiteUNet` on the ``2C``
  stacked channels.
- ``siamese-lite``: one encoder with shared weights applied to each date; at every scale the two
  feature maps, their absolute difference, are fused (concatenation + 1x1 convolution) and skipped to one
  U-Net decoder (Daudt et al. 2018, FC-Siam-diff/conc at small widths).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from smallmines.errors import ConfigError
from smallmines.models.networks import LiteUNet, _double_conv

CHANGE_CLASSES = 4
CHANGE_MODELS = ("change-unet-lite", "siamese-lite")
"""Registered architectures that take two dates and predict the 4 change classes."""


def is_change_model(name: str) -> bool:
    """Whether a registered architecture is a bi-temporal change model."""
    return str(name) in CHANGE_MODELS


def _half(in_channels: int) -> int:
    if in_channels % 2:
        raise ConfigError(f"a change model takes the channels of two dates; got {in_channels} channels (odd)")
    return in_channels // 2


class ChangeLiteUNet(LiteUNet):
    """Early-fusion change U-Net: both dates stacked at the input, 4 change classes out.

    Args:
        in_channels: channels of both dates together (``2C``).
        widths: channels per scale, finest first.
    """

    def __init__(self, in_channels: int, widths: Sequence[int] = (16, 32, 64, 128)) -> None:
        _half(in_channels)
        super().__init__(in_channels, widths, classes=CHANGE_CLASSES)


class SiameseLiteUNet(nn.Module):
    """Siamese change U-Net: a shared encoder per date, difference + concatenation fusion at every scale.

    Args:
        in_channels: channels of both dates together (``2C``); each date has ``C``.
        widths: channels per scale, finest first.
    """

    def __init__(self, in_channels: int, widths: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2:
            raise ConfigError(f"SiameseLiteUNet widths {widths} need at least 2 scales")
        self.date_channels = _half(in_channels)
        inputs = [self.date_channels, *widths[:-1]]
        self.encoder = nn.ModuleList(_double_conv(c, w) for c, w in zip(inputs, widths, strict=True))
        self.fuse = nn.ModuleList(nn.Sequential(nn.Conv2d(3 * w, w, 1, bias=False), nn.BatchNorm2d(w),
                                                nn.ReLU(inplace=True)) for w in widths)
        self.up = nn.ModuleList(nn.ConvTranspose2d(w, v, 2, stride=2) for w, v in zip(widths[:0:-1], widths[-2::-1],
                                                                                      strict=True))
        self.decoder = nn.ModuleList(_double_conv(2 * v, v) for v in widths[-2::-1])
        self.head = nn.Conv2d(widths[0], CHANGE_CLASSES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        # both dates through the shared encoder as one batch of 2N
        y = torch.cat((x[:, :self.date_channels], x[:, self.date_channels:]), dim=0)
        skips = []
        for i, (block, fuse) in enumerate(zip(self.encoder, self.fuse, strict=True)):
            y = block(y if i == 0 else nn.functional.max_pool2d(y, 2))
            a, b = y[:n], y[n:]
            skips.append(fuse(torch.cat((a, b, (b - a).abs()), dim=1)))
        z = skips.pop()
        for up, block in zip(self.up, self.decoder, strict=True):
            z = block(torch.cat((up(z), skips.pop()), dim=1))
        return self.head(z)
