"""Make the pinned torchvision importable on a CPU build of torch.

torchvision 0.28.0 is the only release that accepts torch 2.13.0, and the wheel pip finds is a CUDA
build. On CPU torch its compiled operators fail to load, and ``import torchvision`` then raises
``operator torchvision::nms does not exist`` while registering fake kernels for ``nms``. Declaring the
two operator schemas it registers at import time is enough: segmentation needs none of its compiled
ops. Every entry point imports :mod:`smallmines`, whose ``__init__`` imports this module first.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBRARY: torch.library.Library | None = None


def _has_op(name: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
    except RuntimeError:
        return False
    return True


def _load_torchvision_kernels() -> bool:
    """Load torchvision's compiled ops when they match this torch (a GPU machine); False otherwise."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    for folder in spec.submodule_search_locations:
        for lib in sorted(Path(folder).glob("_C*.so")):
            try:
                torch.ops.load_library(str(lib))
            except (OSError, RuntimeError) as exc:
                logger.debug("torchvision kernels did not load (%s)", exc)
                return False
            return True
    return False


def ensure_torchvision_ops() -> None:
    """Declare ``torchvision::nms`` and ``torchvision::qnms`` when no kernel library did."""
    global _LIBRARY
    if not _has_op("nms") and _load_torchvision_kernels():
        return
    missing = [name for name in _SCHEMAS if not _has_op(name)]
    if not missing:
        return
    _LIBRARY = _LIBRARY or torch.library.Library("torchvision", "FRAGMENT")
    for name in missing:
        _LIBRARY.define(_SCHEMAS[name])
    logger.debug("declared torchvision op schemas %s (CPU torch without torchvision kernels)", missing)


ensure_torchvision_ops()
