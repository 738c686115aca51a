"""The network definitions: smp architectures on any channels, a compact U-Net, two-stream fusion, Prithvi.

Every network maps a normalised ``(N, C, H, W)`` batch to ``(N, 2, H, W)`` logits (background,
mining); the mining probability is ``softmax(logits)[:, 1]`` (:func:`mining_probability`). Pretrained
weights are never downloaded: an encoder pretrained on 3-band RGB gets its first convolution adapted
to the selected channels (see :func:`load_encoder_weights`).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smallmines.bands import BANDS, INDICES
from smallmines.errors import CheckpointError, ConfigError, OptionalDependencyError

logger = logging.getLogger(__name__)


NUM_CLASSES = 2
NAMED_WEIGHTS = ("imagenet",)
"""Symbolic ``encoder_weights`` a preset may name; the file itself must be given (never downloaded)."""
OPTICAL_SENSOR = "s2"


def mining_probability(logits: torch.Tensor) -> torch.Tensor:
    """Mining probability ``(N, H, W)`` (float32) from ``(N, 2, H, W)`` logits."""
    return torch.softmax(logits.float(), dim=1)[:, 1]


# ----------------------------------------------------------------------------------------------
# segmentation-models-pytorch
# ----------------------------------------------------------------------------------------------


FIRST_CONV_RULES = ("mean", "tile")


def require_local_weights(encoder: str, encoder_weights: str | None) -> None:
    """Refuse a symbolic ``encoder_weights`` (``imagenet``): the file must be given, nothing is downloaded.

    Raises:
        ConfigError: naming the weights, the encoder and the option that fixes it.
    """
    if encoder_weights in NAMED_WEIGHTS:
        raise ConfigError(
            f"model.args.encoder_weights={encoder_weights!r}: this recipe starts from {encoder_weights} weights, "
            f"which are never downloaded here; give the local file with --set model.args.encoder_weights=PATH "
            f"(a state dict of {encoder}, e.g. torchvision's or timm's {encoder} {encoder_weights} weights)")


def _smp(arch: str) -> Callable[..., nn.Module]:
    def build(in_channels: int, channels: tuple[str, ...] = (), encoder: str = "resnet34",
              encoder_weights: str | None = None, first_conv: str = "mean", **kwargs: Any) -> nn.Module:
        import segmentation_models_pytorch as smp

        require_local_weights(encoder, encoder_weights)
        if first_conv not in FIRST_CONV_RULES:
            raise ConfigError(f"first_conv={first_conv!r}; choose one of {', '.join(FIRST_CONV_RULES)}")
        try:
            model = smp.create_model(arch, encoder_name=encoder, encoder_weights=None,
                                     in_channels=in_channels, classes=NUM_CLASSES, **kwargs)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"cannot build {arch} with encoder {encoder!r} and arguments {kwargs}: {exc}") from exc
        if encoder_weights:
            load_encoder_weights(model.encoder, encoder_weights, first_conv)
        return model

    build.__doc__ = f"segmentation-models-pytorch ``{arch}`` with 2 output classes."
    return build


def load_encoder_weights(encoder: nn.Module, path: str | Path, first_conv: str = "mean") -> None:
    """Load a local encoder state dict; a first convolution of another input width is adapted.

    Keys may carry an ``encoder.`` prefix (a whole smp model's state dict). With ``first_conv="mean"``,
    RGB-pretrained first-layer weights are averaged over their input channels and repeated for each of
    our channels, scaled by 3/C, the usual way to keep the activation scale for multi-spectral input;
    so a 13-band model starts with every channel treated alike, not with the RGB weights tiled over
    unrelated bands. ``first_conv="tile"`` does what smp (and so TerraTorch) does with pretrained
    weights: channel ``i`` gets the RGB weights of channel ``i % 3``, scaled by 3/C.

    Raises:
        CheckpointError: the file does not exist or holds no weights for this encoder.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: encoder weights file not found (weights are never downloaded; "
                              "give a local .pth state dict or leave encoder_weights empty)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    if any(k.startswith("encoder.") for k in state):
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    own = encoder.state_dict()
    for key, value in list(state.items()):
        other_width = key in own and value.ndim == 4 and own[key].shape[1] != value.shape[1]
        if other_width and own[key].shape[0] == value.shape[0]:
            c = own[key].shape[1]
            if first_conv == "tile":
                state[key] = value[:, [i % value.shape[1] for i in range(c)]] * (value.shape[1] / c)
            else:
                state[key] = value.mean(dim=1, keepdim=True).repeat(1, c, 1, 1) * (3.0 / c)
    matched = [k for k in state if k in own and own[k].shape == state[k].shape]
    if not matched:
        raise CheckpointError(f"{path}: no tensor matches the encoder ({len(own)} keys, e.g. {next(iter(own))!r})")
    encoder.load_state_dict({k: state[k] for k in matched}, strict=False)
    logger.info("encoder weights from %s: %d tensors loaded, %d of the encoder's left as they were", path,
                len(matched), len(own) - len(matched))


# ----------------------------------------------------------------------------------------------
# A compact classic U-Net
# ----------------------------------------------------------------------------------------------


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class LiteUNet(nn.Module):
    """The classic U-Net (Ronneberger et al. 2015) with batch norm, at small widths.

    Unlike the smp U-Net, whose encoders start with a stride-2 stem and whose decoder has no
    full-resolution skip, every scale here (10 m included) is skipped to the decoder, so pixel-level
    detail reaches the head: small, irregular mining pits stay sharp. A few hundred thousand
    parameters make it trainable on a CPU in minutes.

    Args:
        in_channels: input channels.
        widths: channels per scale, finest first; ``len(widths) - 1`` poolings.
        classes: output classes (2: background, mining; 4 for change models).
    """

    def __init__(self, in_channels: int, widths: Sequence[int] = (16, 32, 64, 128), classes: int = NUM_CLASSES) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2:
            raise ConfigError(f"LiteUNet widths {widths} need at least 2 scales")
        inputs = [in_channels, *widths[:-1]]
        self.encoder = nn.ModuleList(_double_conv(c, w) for c, w in zip(inputs, widths, strict=True))
        self.up = nn.ModuleList(nn.ConvTranspose2d(w, v, 2, stride=2) for w, v in zip(widths[:0:-1], widths[-2::-1],
                                                                                      strict=True))
        self.decoder = nn.ModuleList(_double_conv(2 * v, v) for v in widths[-2::-1])
        self.head = nn.Conv2d(widths[0], int(classes), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, block in zip(self.up, self.decoder, strict=True):
            x = block(torch.cat((up(x), skips.pop()), dim=1))
        return self.head(x)

    def freeze_encoder(self) -> None:
        """Freeze the contracting path (no gradients, batch-norm statistics fixed)."""
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self._frozen = True

    def train(self, mode: bool = True) -> LiteUNet:
        """Like :meth:`nn.Module.train`, but a frozen encoder stays in eval mode."""
        super().train(mode)
        if getattr(self, "_frozen", False):
            self.encoder.eval()
        return self


# ----------------------------------------------------------------------------------------------
# Two-stream fusion
# ----------------------------------------------------------------------------------------------


def is_optical(channel: str) -> bool:
    """True for Sentinel-2 bands and for indices computed from Sentinel-2 bands only."""
    sensors = {b.name: b.sensor for b in BANDS}
    inputs = INDICES[channel].inputs if channel in INDICES else (channel,)
    return all(sensors.get(name) == OPTICAL_SENSOR for name in inputs)


class TwoStreamUNet(nn.Module):
    """Optical and radar/terrain encoders, fused per scale, one U-Net decoder.

    Channels are routed by sensor: Sentinel-2 bands and optical indices to the optical encoder,
    Sentinel-1, DEM and radar indices to the auxiliary encoder. At every scale the two feature maps
    are concatenated and reduced to the optical width by a 1x1 convolution, batch norm and ReLU.

    Args:
        channels: the selected channel names (both streams need at least one).
        encoder: smp encoder of the optical stream.
        aux_encoder: smp encoder of the radar/terrain stream (a lighter one suffices).
        encoder_depth: number of encoder stages (3 to 5).
        decoder_channels: U-Net decoder widths, one per stage.
        encoder_weights: local weights file of the optical encoder.
        aux_encoder_weights: local weights file of the auxiliary encoder.
    """

    def __init__(self, channels: Sequence[str], encoder: str = "resnet34", aux_encoder: str = "resnet18",
                 encoder_depth: int = 5, decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
                 encoder_weights: str | None = None, aux_encoder_weights: str | None = None) -> None:
        super().__init__()
        from segmentation_models_pytorch.base import SegmentationHead
        from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder
        from segmentation_models_pytorch.encoders import get_encoder

        optical = [i for i, c in enumerate(channels) if is_optical(c)]
        aux = [i for i, c in enumerate(channels) if not is_optical(c)]
        if not optical or not aux:
            raise ConfigError(f"twostream needs optical (Sentinel-2) and radar/terrain (s1, dem) channels; "
                              f"got {list(channels)}. Select e.g. bands 'all'")
        if len(decoder_channels) != encoder_depth:
            raise ConfigError(f"decoder_channels {list(decoder_channels)} must have "
                              f"encoder_depth={encoder_depth} entries")
        self.register_buffer("optical_index", torch.tensor(optical), persistent=False)
        self.register_buffer("aux_index", torch.tensor(aux), persistent=False)
        try:
            self.encoder = get_encoder(encoder, in_channels=len(optical), depth=encoder_depth)
            self.aux_encoder = get_encoder(aux_encoder, in_channels=len(aux), depth=encoder_depth)
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot build twostream encoders {encoder!r}/{aux_encoder!r}: {exc}") from exc
        for module, weights in ((self.encoder, encoder_weights), (self.aux_encoder, aux_encoder_weights)):
            if weights:
                load_encoder_weights(module, weights)
        widths = self.encoder.out_channels
        self.fuse = nn.ModuleList(
            nn.Identity() if level == 0 else nn.Sequential(
                nn.Conv2d(w + a, w, kernel_size=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
            for level, (w, a) in enumerate(zip(widths, self.aux_encoder.out_channels, strict=True))
        )
        self.decoder = UnetDecoder(encoder_channels=widths, decoder_channels=decoder_channels, n_blocks=encoder_depth)
        self.segmentation_head = SegmentationHead(decoder_channels[-1], NUM_CLASSES, kernel_size=3)
        self._frozen = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        optical = self.encoder(x.index_select(1, self.optical_index))
        aux = self.aux_encoder(x.index_select(1, self.aux_index))
        fused = [optical[0]] + [fuse(torch.cat((o, a), dim=1))
                                for fuse, o, a in zip(self.fuse[1:], optical[1:], aux[1:], strict=True)]
        return self.segmentation_head(self.decoder(fused))

    def freeze_encoder(self) -> None:
        """Freeze both encoders: no gradients and no batch-norm statistic updates."""
        for module in (self.encoder, self.aux_encoder):
            module.requires_grad_(False)
            module.eval()
        self._frozen = True

    def train(self, mode: bool = True) -> TwoStreamUNet:
        """Like :meth:`nn.Module.train`, but frozen encoders stay in eval mode."""
        super().train(mode)
        if self._frozen:
            self.encoder.eval()
            self.aux_encoder.eval()
        return self


# ----------------------------------------------------------------------------------------------
# Prithvi-EO-2.0 through TerraTorch (optional)
# ----------------------------------------------------------------------------------------------

PRITHVI_VARIANTS = {
    300: ("prithvi_eo_v2_300", [5, 11, 17, 23]),
    600: ("prithvi_eo_v2_600", [7, 15, 23, 31]),
}
"""Prithvi-EO-2.0 size -> (TerraTorch backbone, transformer blocks fed to the UperNet decoder)."""
PRITHVI_BANDS = {"blue": "BLUE", "green": "GREEN", "red": "RED", "rededge4": "NIR_NARROW",
                 "swir1": "SWIR_1", "swir2": "SWIR_2"}
"""Our band names -> Prithvi's pretraining band names (``official6`` is exactly Prithvi's six bands)."""


def require_terratorch() -> Any:
    """Import TerraTorch or raise :class:`OptionalDependencyError` with the install command."""
    if importlib.util.find_spec("terratorch") is None:
        raise OptionalDependencyError(
            "Prithvi-EO-2.0 models need TerraTorch, which is not installed; install the foundation extra "
            "with `pip install 'smallmines[foundation]'` (about 0.7 GB) and give the weights as a local file "
            "(model.args.weights=/path/Prithvi_EO_V2_300M.pt)")
    import terratorch

    return terratorch


class PrithviSegmenter(nn.Module):
    """Prithvi-EO-2.0 encoder + UperNet decoder (the SmallMinesDS authors' setup), returning logits.

    Args:
        channels: selected channels; Sentinel-2 bands Prithvi was pretrained on keep their patch
            embedding weights, others (S1, DEM, indices) start random.
        size: 300 or 600 (million parameters).
        weights: local Prithvi checkpoint; None starts from random weights.
        decoder_channels: UperNet width.
        img_size: patch size in pixels.
    """

    def __init__(self, channels: Sequence[str], size: int = 300, weights: str | None = None,
                 decoder_channels: int = 256, img_size: int = 128) -> None:
        super().__init__()
        if int(size) not in PRITHVI_VARIANTS:
            raise ConfigError(f"Prithvi size {size!r}; choose one of {sorted(PRITHVI_VARIANTS)}")
        if weights and not Path(weights).is_file():
            raise CheckpointError(f"{weights}: Prithvi weights file not found (weights are never downloaded)")
        require_terratorch()
        from terratorch.models import EncoderDecoderFactory

        backbone, indices = PRITHVI_VARIANTS[int(size)]
        bands = [PRITHVI_BANDS.get(c, c.upper()) for c in channels]
        self.model = EncoderDecoderFactory().build_model(
            task="segmentation", backbone=backbone, decoder="UperNetDecoder", num_classes=NUM_CLASSES,
            backbone_pretrained=bool(weights), backbone_ckpt_path=weights, backbone_bands=bands,
            backbone_img_size=img_size, decoder_channels=decoder_channels, rescale=True,
            necks=[{"name": "SelectIndices", "indices": indices}, {"name": "ReshapeTokensToImage"},
                   {"name": "LearnedInterpolateToPyramidal"}],
        )
        self.encoder = self.model.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return getattr(out, "output", out)

    def freeze_encoder(self) -> None:
        """Freeze the Prithvi backbone (the authors' recipe trains only the decoder)."""
        self.encoder.requires_grad_(False)


