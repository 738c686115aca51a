"""Model registry and self-describing model files.

Every network maps a normalised ``(N, C, H, W)`` batch to ``(N, 2, H, W)`` logits (background,
mining); the mining probability is ``softmax(logits)[:, 1]`` (:func:`mining_probability`), which
equals ``sigmoid(l1 - l0)``, so cross-entropy, BCE, Dice and focal losses all work on the same output.

Networks are built by name from a registry (:data:`MODELS`): one entry per architecture, each a
function with the signature ``(in_channels, channels, **kwargs) -> nn.Module``.

- ``unet``, ``unetplusplus``, ``deeplabv3plus``, ``fpn``, ``segformer``, ``upernet``, ``pspnet``,
  ``manet``, ``linknet``: segmentation-models-pytorch architectures with any of its encoders
  (``resnet18/34/50``, ``efficientnet-b0``, ``mit_b0``, ``tu-convnext_tiny``...). With all 13 bands
  selected these are the *early fusion* models: optical, radar and terrain channels stacked at the input.
- ``unet-lite``: a compact classic U-Net with full-resolution skips (CPU demos, small objects).
- ``twostream``: an optical encoder and a radar/terrain encoder whose features are concatenated and
  fused by 1x1 convolutions at every scale before one U-Net decoder (*late*, feature-level fusion).
- ``prithvi``: Prithvi-EO-2.0 (300M or 600M) with a UperNet decoder, through TerraTorch (optional extra
  ``smallmines[foundation]``).
- ``lightgbm``: a per-pixel gradient-boosting baseline wrapped as a network, so evaluation and mapping
  treat it like any other model.
- ``change-unet-lite``, ``siamese-lite``: bi-temporal change models (:mod:`smallmines.models.change`):
  channels ``a:X...`` then ``b:X...`` of two dates in, ``(N, 4, H, W)`` change-class logits out.

Pretrained weights are never downloaded: ``encoder_weights`` (and Prithvi's ``weights``) is a local
file, otherwise the network starts from random weights. An encoder pretrained on 3-band RGB gets its
first convolution adapted to the selected channels (see :func:`load_encoder_weights`).

A :class:`ModelCard` travels with the weights (inside Lightning checkpoints under the key
``smallmines`` and in exported ``.pt`` files): architecture and its arguments, the channel list,
normalisation statistics, decision threshold and the training configuration, so evaluation and mapping
need nothing but the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smallmines.data.stats import BandStats
from smallmines.errors import CheckpointError, ConfigError
from smallmines.models.change import ChangeLiteUNet, SiameseLiteUNet
from smallmines.models.networks import LiteUNet, PrithviSegmenter, TwoStreamUNet, _smp
from smallmines.models.pixel import PixelGBM

logger = logging.getLogger(__name__)


CARD_KEY = "smallmines"
INIT_ONLY_ARGS = ("encoder_weights", "weights")
"""Architecture arguments that only initialise weights; a trained model is rebuilt without them."""
# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------

MODELS: dict[str, Callable[..., nn.Module]] = {
    **{name: _smp(name) for name in ("unet", "unetplusplus", "deeplabv3plus", "deeplabv3", "fpn", "segformer",
                                     "upernet", "pspnet", "manet", "linknet")},
    "unet-lite": lambda in_channels, channels, **kw: LiteUNet(in_channels, **kw),
    "twostream": lambda in_channels, channels, **kw: TwoStreamUNet(channels, **kw),
    "prithvi": lambda in_channels, channels, **kw: PrithviSegmenter(channels, **kw),
    "lightgbm": lambda in_channels, channels, **kw: PixelGBM(in_channels, **kw),
    "change-unet-lite": lambda in_channels, channels, **kw: ChangeLiteUNet(in_channels, **kw),
    "siamese-lite": lambda in_channels, channels, **kw: SiameseLiteUNet(in_channels, **kw),
}
"""Architectures by name; add one entry to add a model."""


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that adds a builder ``(in_channels, channels, **kwargs) -> nn.Module`` to :data:`MODELS`."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = builder
        return builder

    return wrap


def build_model(name: str, channels: tuple[str, ...] | list[str], **kwargs: Any) -> nn.Module:
    """Build a registered network for the given channels.

    Args:
        name: a key of :data:`MODELS` (``unet``, ``twostream``, ``lightgbm``...).
        channels: channel names (from :func:`smallmines.bands.parse_bands`); ``in_channels`` is their count.
        kwargs: architecture arguments (``encoder="resnet50"``, ``encoder_weights="enc.pth"``...).

    Raises:
        ConfigError: unknown name (the message lists the registry) or invalid arguments.
        OptionalDependencyError: the architecture needs an extra that is not installed.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](in_channels=len(channels), channels=tuple(channels), **kwargs)
    except TypeError as exc:
        raise ConfigError(f"invalid arguments for model {name!r} {kwargs}: {exc}") from exc


def is_neural(network: nn.Module) -> bool:
    """False for models fitted outside gradient descent (the LightGBM baseline)."""
    return not isinstance(network, PixelGBM)


def freeze_encoder(network: nn.Module, batch_norm: str = "fixed") -> None:
    """Freeze a network's encoder(s) in place: no gradients reach the encoder weights.

    Args:
        network: a registered network with an encoder.
        batch_norm: ``fixed``: the encoder's batch-norm layers stay in eval mode, so their running
            statistics keep their initial values (smp's ``freeze_encoder``); ``train``: they follow
            ``network.train()`` and their running statistics adapt to the training batches, as with
            TerraTorch's ``freeze_backbone``, which only turns gradients off.

    Raises:
        ConfigError: the network has no encoder to freeze, or an unknown ``batch_norm``.
    """
    freeze = getattr(network, "freeze_encoder", None)
    if freeze is None:
        raise ConfigError(f"{type(network).__name__} has no encoder to freeze")
    if batch_norm not in ("fixed", "train"):
        raise ConfigError(f"frozen_batch_norm={batch_norm!r}; choose fixed or train")
    freeze()
    if batch_norm == "train":  # gradients stay off; let train() reach the encoder's norm layers again
        for flag in ("_is_encoder_frozen", "_frozen"):
            if hasattr(network, flag):
                setattr(network, flag, False)
        network.train(network.training)


def count_parameters(network: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (tree nodes for the LightGBM baseline)."""
    if isinstance(network, PixelGBM):
        return network.parameter_count()
    return sum(p.numel() for p in network.parameters() if p.requires_grad or not trainable_only)


@dataclass
class ModelCard:
    """Everything needed to use a trained network, stored beside its weights.

    Attributes:
        model: registry name of the architecture.
        model_args: its arguments (``build_model(model, channels, **model_args)`` rebuilds it).
        channels: input channels in order (bands and indices, see :mod:`smallmines.bands`).
        stats: normalisation statistics of those channels (training split only).
        threshold: decision threshold on the mining probability, chosen on the validation split.
        config: the resolved training configuration.
        metrics: validation metrics at ``threshold``.
        version: card format version.
    """

    model: str
    model_args: dict[str, Any]
    channels: tuple[str, ...]
    stats: BandStats
    threshold: float = 0.5
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML-safe) of the card."""
        out = asdict(self)
        out["channels"] = list(self.channels)
        out["stats"] = self.stats.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Inverse of :meth:`to_dict`.

        Raises:
            CheckpointError: a required field is missing.
        """
        try:
            return cls(data["model"], dict(data["model_args"]), tuple(data["channels"]),
                       BandStats.from_dict(data["stats"]), float(data.get("threshold", 0.5)),
                       dict(data.get("config", {})), dict(data.get("metrics", {})), int(data.get("version", 1)))
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"model card is incomplete ({exc})") from exc

    def build(self) -> nn.Module:
        """A fresh network of this card's architecture, to load trained weights into.

        Initial-weight files (``encoder_weights``, Prithvi's ``weights``) are not read again: the
        trained weights replace them, and a model file must load where those files do not exist.
        """
        args = {k: v for k, v in self.model_args.items() if k not in INIT_ONLY_ARGS}
        return build_model(self.model, self.channels, **args)


def check_threshold(threshold: float | str) -> float:
    """A decision threshold as a float in (0, 1).

    Raises:
        ConfigError: not a number, or outside (0, 1).
    """
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold {threshold!r}: give a number between 0 and 1, e.g. 0.5") from None
    if not 0 < value < 1:
        raise ConfigError(f"threshold {value:g}: a mining probability threshold must be between 0 and 1 "
                          "(exclusive), e.g. 0.5; leave it out to use the model's")
    return value


def save_model(path: str | Path, network: nn.Module, card: ModelCard) -> Path:
    """Write weights and card to one ``.pt`` file (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    state = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in network.state_dict().items()}
    torch.save({CARD_KEY: card.to_dict(), "state_dict": state}, tmp)
    os.replace(tmp, path)
    return path


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Load a network (in eval mode) and its card from an exported ``.pt`` or a Lightning ``.ckpt``.

    Lightning checkpoints store the network under the ``network.`` prefix of ``state_dict``.

    Raises:
        CheckpointError: missing file, unreadable file, or no smallmines card inside.
        OptionalDependencyError: the architecture needs an extra that is not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f"{path}: cannot be read as a checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(blob, dict) or CARD_KEY not in blob:
        raise CheckpointError(f"{path}: no smallmines model card inside; was it written by smallmines train/export?")
    card = ModelCard.from_dict(blob[CARD_KEY])
    state = blob["state_dict"]
    if any(k.startswith("network.") for k in state):
        state = {k[len("network."):]: v for k, v in state.items() if k.startswith("network.")}
    network = card.build()
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {card.model} {card.model_args} ({exc})") from exc
    network.to(map_location)
    network.eval()
    return network, card
