"""Model registry and self-describing model files.

Every network maps a normalised ``(N, C, H, W)`` batch to ``(N, 2, H, W)`` logits (background,
mining); the mining probability is ``softmax(logits)[:, 1]``, which equals ``sigmoid(l1 - l0)``, so
cross-entropy, BCE, Dice and focal losses all work on the same output.

Networks are built by name from a registry (``MODELS``): one entry per architecture, each a function
with the signature ``(in_channels, channels, **kwargs) -> nn.Module``. Pretrained encoder weights are
never downloaded: ``encoder_weights`` is a local file or None (random initialisation).

A :class:`ModelCard` travels with the weights (inside Lightning checkpoints and exported ``.pt``
files): architecture and its arguments, the channel list, normalisation statistics, decision
threshold and the training configuration, so evaluation and mapping need nothing but the file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smallmines.data.stats import BandStats
from smallmines.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)
NUM_CLASSES = 2
CARD_KEY = "smallmines"


def _smp(arch: str) -> Callable[..., nn.Module]:
    def build(in_channels: int, channels: tuple[str, ...] = (), encoder: str = "resnet34",
              encoder_weights: str | None = None, **kwargs: Any) -> nn.Module:
        import segmentation_models_pytorch as smp

        try:
            model = smp.create_model(arch, encoder_name=encoder, encoder_weights=None,
                                     in_channels=in_channels, classes=NUM_CLASSES, **kwargs)
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot build {arch} with encoder {encoder!r}: {exc}") from exc
        if encoder_weights:
            load_encoder_weights(model.encoder, encoder_weights)
        return model

    build.__doc__ = f"segmentation-models-pytorch ``{arch}`` with 2 output classes."
    return build


MODELS: dict[str, Callable[..., nn.Module]] = {
    "unet": _smp("unet"),
    "unetplusplus": _smp("unetplusplus"),
    "deeplabv3plus": _smp("deeplabv3plus"),
    "fpn": _smp("fpn"),
    "segformer": _smp("segformer"),
    "upernet": _smp("upernet"),
}
"""Architectures by name; add one entry to add a model."""


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that adds a builder to :data:`MODELS`."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = builder
        return builder

    return wrap


def build_model(name: str, channels: tuple[str, ...] | list[str], **kwargs: Any) -> nn.Module:
    """Build a registered network for the given channels.

    Args:
        name: a key of :data:`MODELS` (``unet``, ``deeplabv3plus``, ...).
        channels: channel names (from :func:`smallmines.bands.parse_bands`); ``in_channels`` is their count.
        kwargs: architecture arguments (``encoder="resnet50"``, ``encoder_weights="enc.pth"``...).

    Raises:
        ConfigError: unknown name (the message lists the registry) or invalid arguments.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](in_channels=len(channels), channels=tuple(channels), **kwargs)


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load a local encoder state dict; a first convolution of another width is adapted.

    RGB-pretrained first-layer weights are averaged over their input channels and repeated for each
    of our channels (scaled by 3/C), the usual way to keep activation scale for multi-spectral input.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: encoder weights file not found (weights are never downloaded)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    own = encoder.state_dict()
    for key, value in list(state.items()):
        if key in own and value.ndim == 4 and own[key].shape[1] != value.shape[1] and own[key].shape[0] == value.shape[0]:
            c = own[key].shape[1]
            state[key] = value.mean(dim=1, keepdim=True).repeat(1, c, 1, 1) * (3.0 / c)
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    logger.info("encoder weights from %s: %d missing, %d unexpected keys", path, len(missing), len(unexpected))


@dataclass
class ModelCard:
    """Everything needed to use a trained network, stored beside its weights."""

    model: str
    model_args: dict[str, Any]
    channels: tuple[str, ...]
    stats: BandStats
    threshold: float = 0.5
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["channels"] = list(self.channels)
        out["stats"] = self.stats.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        try:
            return cls(data["model"], dict(data["model_args"]), tuple(data["channels"]),
                       BandStats.from_dict(data["stats"]), float(data.get("threshold", 0.5)),
                       dict(data.get("config", {})), dict(data.get("metrics", {})), int(data.get("version", 1)))
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"model card is incomplete ({exc})") from exc

    def build(self) -> nn.Module:
        """A fresh (untrained) network of this card's architecture."""
        return build_model(self.model, self.channels, **self.model_args)


def save_model(path: str | Path, network: nn.Module, card: ModelCard) -> Path:
    """Write weights and card to one ``.pt`` file (atomically)."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({CARD_KEY: card.to_dict(), "state_dict": network.state_dict()}, tmp)
    os.replace(tmp, path)
    return path


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Load a network and its card from an exported ``.pt`` or a Lightning ``.ckpt``.

    Lightning checkpoints store the network under the ``network.`` prefix of ``state_dict``.

    Raises:
        CheckpointError: missing file, unreadable file, or no smallmines card inside.
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
    network.eval()
    return network, card
