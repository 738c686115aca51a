"""Model backends for mapping: PyTorch (CPU or CUDA) or ONNX Runtime behind one predictor interface.

A :class:`ModelRef` says how to obtain a predictor as picklable data, so Dask workers load their
own copy; :func:`load_predictor` caches one per process. Devices and precisions are resolved here
(``auto`` picks CUDA when present; bf16 autocast on GPU, fp32 on CPU unless asked).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from smallmines.errors import CheckpointError, ConfigError
from smallmines.models.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    onnx_card,
    onnx_session,
    softmax_classes,
    softmax_mining,
)
from smallmines.models.registry import ModelCard, load_model

logger = logging.getLogger(__name__)


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# ----------------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """How to obtain a predictor, as picklable data (Dask workers load their own copy).

    Attributes:
        checkpoint: ``model.pt`` or Lightning ``.ckpt`` (PyTorch backend).
        onnx: exported ``.onnx`` file (ONNX Runtime backend); takes precedence.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (``auto`` is resolved where the model runs,
            so a CPU-only client can drive GPU workers).
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (autocast; PyTorch only).
        threads: intra-op threads (None: the library default).

    """

    checkpoint: str | None
    onnx: str | None
    device: str
    precision: str
    threads: int | None = None

    @property
    def engine(self) -> str:
        """``onnxruntime`` or ``torch``."""
        return "onnxruntime" if self.onnx else "torch"

    @property
    def path(self) -> str:
        """The model file that runs."""
        return self.onnx or self.checkpoint or ""

    @property
    def cuda(self) -> bool:
        """Whether the model runs on a GPU (after :meth:`resolved`)."""
        return self.device.startswith("cuda")

    def resolved(self) -> ModelRef:
        """Resolve ``auto`` device and precision on this machine.

        Raises:
            ConfigError: an unknown or unavailable device or precision.

        """
        device = resolve_device(self.device, self.engine)
        return replace(self, device=device, precision=resolve_precision(self.precision, device, self.engine))


def _gpu(engine: str) -> bool:
    if engine == "onnxruntime":
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    return torch.cuda.is_available()


def resolve_device(device: str, engine: str = "torch") -> str:
    """``auto`` becomes ``cuda`` when the engine can use a GPU here, else ``cpu``.

    Raises:
        ConfigError: an unknown device, or CUDA asked for without a GPU.

    """
    if device == "auto":
        return "cuda" if _gpu(engine) else "cpu"
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} but no CUDA GPU is visible to torch; use --device cpu")
        return device
    raise ConfigError(f"device={device!r}: choose auto, cpu, cuda or cuda:N")


def resolve_precision(precision: str, device: str, engine: str) -> str:
    """``auto`` becomes bf16 on a GPU that supports it (else fp16), fp32 on CPU and for ONNX.

    Raises:
        ConfigError: an unknown precision, or reduced precision with ONNX Runtime.

    """
    if precision == "auto":
        if engine == "onnxruntime" or not device.startswith("cuda"):
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: choose auto, {', '.join(PRECISIONS)}")
    if engine == "onnxruntime" and precision != "fp32":
        raise ConfigError("an exported ONNX graph runs in fp32; drop --precision or map with the checkpoint")
    return precision


class TorchPredictor:
    """Mining probability from a PyTorch network: channels-last, inference mode, autocast."""

    def __init__(self, network: torch.nn.Module, device: str, precision: str) -> None:
        self.device = torch.device(device)
        self.dtype = PRECISIONS[precision]
        self.network = network.to(self.device, memory_format=torch.channels_last).eval()
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(N, C, H, W)`` normalised input to ``(N, H, W)`` mining probability (``(N, K, H, W)`` if K > 2)."""
        x = torch.from_numpy(batch)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            logits = self.network(x)
        probability = torch.softmax(logits.float(), dim=1)
        return (probability[:, 1] if probability.shape[1] == 2 else probability).cpu().numpy()


class OnnxPredictor:
    """Mining probability from an exported ONNX graph in ONNX Runtime."""

    def __init__(self, path: str, device: str, threads: int | None) -> None:
        self.session = onnx_session(path, device, threads)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(N, C, H, W)`` normalised input to ``(N, H, W)`` mining probability (``(N, K, H, W)`` if K > 2)."""
        logits = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
        return softmax_mining(logits) if logits.shape[1] == 2 else softmax_classes(logits)


Predictor = Callable[[np.ndarray], np.ndarray]


def load_predictor(ref: ModelRef) -> tuple[Predictor, ModelCard]:
    """Load a predictor and its model card, cached per process (so a Dask worker loads a model once).

    The cache knows the model file's size and modification time, so a retrained file at the same
    path is loaded again. ``ref`` must be :meth:`ModelRef.resolved`.
    """
    try:
        stat = os.stat(ref.path)
    except OSError as exc:
        raise CheckpointError(f"{ref.path}: model file not found ({exc.strerror})") from exc
    return _load_predictor(ref, (stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=2)
def _load_predictor(ref: ModelRef, stamp: tuple[int, int]) -> tuple[Predictor, ModelCard]:
    if ref.threads:
        torch.set_num_threads(ref.threads)
    if ref.onnx:
        return OnnxPredictor(ref.onnx, ref.device, ref.threads), onnx_card(ref.onnx)
    network, card = load_model(ref.checkpoint or "", map_location="cpu")
    return TorchPredictor(network, ref.device, ref.precision), card


def read_card(ref: ModelRef) -> ModelCard:
    """Read the model card alone (for the client of a cluster, which runs no model)."""
    return onnx_card(ref.onnx) if ref.onnx else load_model(ref.checkpoint or "")[1]


