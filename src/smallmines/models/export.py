"""ONNX export of a trained model, with its model card inside.

The exported graph keeps the network's contract: input ``input`` is the normalised ``(N, C, H, W)``
float32 batch (``H`` and ``W`` multiples of 32), output ``logits`` is ``(N, 2, H, W)``. The card
(architecture, channels, training statistics, threshold) is stored in the ONNX ``metadata_props``
under ``smallmines`` as JSON, with ``channels``, ``stats`` and ``threshold`` also as separate keys
for other tools, so ``smallmines map --onnx model.onnx`` needs nothing else.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from smallmines.data.pairs import split_date_channels
from smallmines.errors import CheckpointError, ConfigError
from smallmines.models.registry import CARD_KEY, ModelCard, load_model

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 18
MAX_SIDE = 32 * 1024
"""Largest input side the exported graph accepts (pixels)."""


@dataclass(frozen=True)
class ExportResult:
    """An exported model file and how closely ONNX Runtime reproduces PyTorch on a random input."""

    path: Path
    card: ModelCard
    max_abs_diff: float | None


def export_onnx(checkpoint: str | Path, out: str | Path, opset: int = OPSET, check: bool = True) -> ExportResult:
    """Export a checkpoint (``model.pt`` or Lightning ``.ckpt``) to ONNX with its card.

    Args:
        checkpoint: the model file.
        out: the ``.onnx`` file to write (atomically).
        opset: ONNX opset version.
        check: run the exported graph in ONNX Runtime on a random 2 x C x 96 x 128 input and
            report the largest difference of a class probability from PyTorch.

    Raises:
        CheckpointError: the checkpoint cannot be read or its network cannot be exported.

    """
    network, card = load_model(checkpoint)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(2, len(card.channels), 96, 128, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=4096)
    height = 32 * torch.export.Dim("height32", min=1, max=MAX_SIDE // 32)
    width = 32 * torch.export.Dim("width32", min=1, max=MAX_SIDE // 32)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            program = torch.onnx.export(network, (example,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        opset_version=opset, dynamo=True, verbose=False,
                                        dynamic_shapes=({0: batch, 2: height, 3: width},))
    except Exception as exc:  # the exporter raises many types
        logger.debug("exporter output:\n%s", log.getvalue())
        raise CheckpointError(f"{checkpoint}: {card.model} cannot be exported to ONNX "
                              f"({type(exc).__name__}: {exc})") from exc
    logger.debug("exporter output:\n%s", log.getvalue())
    proto = program.model_proto
    _set_metadata(proto, card)
    tmp = out.with_name(f".{out.name}.tmp")
    import onnx

    onnx.save_model(proto, tmp)
    onnx.checker.check_model(str(tmp))
    diff = _compare(network, tmp, example) if check else None
    os.replace(tmp, out)
    logger.info("exported %s to %s (max probability difference %s)", checkpoint, out, diff)
    return ExportResult(out, card, diff)


def _set_metadata(proto: object, card: ModelCard) -> None:
    entries = {
        CARD_KEY: json.dumps(card.to_dict()),
        "channels": ",".join(card.channels),
        "stats": json.dumps(card.stats.to_dict()),
        "threshold": repr(card.threshold),
        "input": f"{INPUT_NAME}: normalised (N, C, H, W) float32, H and W multiples of 32",
        "output": f"{OUTPUT_NAME}: (N, 2, H, W); mining probability = softmax(logits)[:, 1]"
        if split_date_channels(card.channels) is None else
        f"{OUTPUT_NAME}: (N, 4, H, W); change class (0 no mining, 1 new, 2 persistent, 3 ceased) = argmax(logits)",
    }
    del proto.metadata_props[:]
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value


def _compare(network: torch.nn.Module, path: Path, example: torch.Tensor) -> float:
    """Largest difference of any class probability (mining, or each change class) from PyTorch."""
    session = onnx_session(path, threads=1)
    with torch.inference_mode():
        expected = torch.softmax(network(example).float(), 1).numpy()
    logits = session.run([OUTPUT_NAME], {INPUT_NAME: example.numpy()})[0]
    return float(np.abs(softmax_classes(logits) - expected).max())


def softmax_classes(logits: np.ndarray) -> np.ndarray:
    """Class probabilities ``(N, K, H, W)`` from ``(N, K, H, W)`` logits (numpy)."""
    shifted = np.exp(logits.astype(np.float32) - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def softmax_mining(logits: np.ndarray) -> np.ndarray:
    """Mining probability ``(N, H, W)`` from ``(N, 2, H, W)`` logits (numpy)."""
    diff = np.clip(logits[:, 0].astype(np.float32) - logits[:, 1], -80, 80)
    return 1.0 / (1.0 + np.exp(diff))


def onnx_card(path: str | Path) -> ModelCard:
    """Read the model card stored in an exported ONNX file.

    Raises:
        CheckpointError: missing or unreadable file, or no smallmines card in its metadata.

    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX model not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf decode errors have no common base
        raise CheckpointError(f"{path}: cannot be read as an ONNX model ({exc})") from exc
    meta = {p.key: p.value for p in proto.metadata_props}
    if CARD_KEY not in meta:
        raise CheckpointError(f"{path}: no smallmines model card in its metadata; export it with "
                              "`smallmines export CHECKPOINT model.onnx`")
    return ModelCard.from_dict(json.loads(meta[CARD_KEY]))


def onnx_session(path: str | Path, device: str = "cpu", threads: int | None = None) -> object:
    """Open an ONNX Runtime session on CPU or CUDA.

    Raises:
        ConfigError: ``device`` is CUDA but this onnxruntime has no CUDA provider.

    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError("device=cuda with --onnx needs onnxruntime-gpu (this onnxruntime offers "
                              f"{', '.join(ort.get_available_providers())})")
        index = int(device.partition(":")[2] or 0)
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime's errors share no public base class
        raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({str(exc).strip().splitlines()[-1]}); "
                              "export it again with `smallmines export CHECKPOINT model.onnx`") from None
