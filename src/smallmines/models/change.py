"""Bi-temporal change networks: both dates in, the 4 change classes out.

Input: ``(N, 2C, H, W)``, the ``C`` normalised channels of the earlier date (``a:...``) followed by the
same channels of the later date (``b:...``); output: ``(N, 4, H, W)`` logits of
:class:`smallmines.legend.ChangeClass` (no mining, new, persistent, ceased).

- ``change-unet-lite``: early fusion, a :class:`~smallmines.models.networks.LiteUNet` on the ``2C``
  stacked channels.
- ``siamese-lite``: one encoder with shared weights applied to each date; at every scale the two
  feature maps, their absolute difference, are fused (concatenation + 1x1 convolution) and skipped to one
  U-Net decoder (Daudt et al. 2018, FC-Siam-diff/conc at small widths). With ``aux_weight > 0`` it also
  predicts each date's mining mask from that date's own features (auxiliary heads, training only), so
  the shared encoder learns to see mining in each year, not only its change; the per-date targets
  follow from the change label (:func:`date_masks`) and :meth:`SiameseLiteUNet.auxiliary_loss` adds
  their cross-entropy to the training loss.
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


def date_masks(change: torch.Tensor, ignore: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
    """Each date's 0/1 mining mask (``ignore`` kept) from change labels.

    The earlier date mines where mining is persistent or ceased, the later where it is new or persistent.
    """
    a = ((change == 2) | (change == 3)).long()
    b = ((change == 1) | (change == 2)).long()
    nodata = change == ignore
    return a.masked_fill(nodata, ignore), b.masked_fill(nodata, ignore)


class SiameseLiteUNet(nn.Module):
    """Siamese change U-Net: a shared encoder per date, difference + concatenation fusion at every scale.

    Args:
        in_channels: channels of both dates together (``2C``); each date has ``C``.
        widths: channels per scale, finest first.
        aux_weight: weight of the per-date mining loss of the auxiliary heads (0: no heads).
    """

    def __init__(self, in_channels: int, widths: Sequence[int] = (16, 32, 64, 128), aux_weight: float = 0.0) -> None:
        super().__init__()
        if aux_weight < 0:
            raise ConfigError(f"aux_weight={aux_weight}: must be 0 (no auxiliary heads) or positive")
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
        self.aux_weight = float(aux_weight)
        if self.aux_weight:
            # per date: fine features plus the coarsest scale's context, upsampled, to 2 mining logits
            self.aux_fine = nn.Conv2d(widths[0], 2, 1)
            self.aux_coarse = nn.Conv2d(widths[-1], 2, 1)
        self.aux_logits: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        # both dates through the shared encoder as one batch of 2N
        y = torch.cat((x[:, :self.date_channels], x[:, self.date_channels:]), dim=0)
        skips, fine = [], y
        for i, (block, fuse) in enumerate(zip(self.encoder, self.fuse, strict=True)):
            y = block(y if i == 0 else nn.functional.max_pool2d(y, 2))
            fine = y if i == 0 else fine
            a, b = y[:n], y[n:]
            skips.append(fuse(torch.cat((a, b, (b - a).abs()), dim=1)))
        self.aux_logits = None
        if self.aux_weight and self.training:  # (2N, 2, H, W): date a's logits, then date b's
            coarse = nn.functional.interpolate(self.aux_coarse(y), size=fine.shape[-2:], mode="bilinear",
                                               align_corners=False)
            self.aux_logits = self.aux_fine(fine) + coarse
        z = skips.pop()
        for up, block in zip(self.up, self.decoder, strict=True):
            z = block(torch.cat((up(z), skips.pop()), dim=1))
        return self.head(z)

    def auxiliary_loss(self, target: torch.Tensor) -> torch.Tensor | None:
        """Weighted cross-entropy of the last training forward's per-date logits (None without heads).

        Args:
            target: ``(N, H, W)`` change labels of that batch (255 ignored).
        """
        if self.aux_logits is None:
            return None
        a, b = date_masks(target)
        loss = nn.functional.cross_entropy(self.aux_logits.float(), torch.cat((a, b)), ignore_index=255)
        if not torch.isfinite(loss):  # a batch with no valid pixel
            return None
        return self.aux_weight * loss
