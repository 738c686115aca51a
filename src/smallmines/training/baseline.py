"""The per-pixel baseline: LightGBM on bands and spectral indices, no spatial context.

Training samples ``pixels_per_patch`` valid pixels from every training patch (normalised channels, as
the networks see them), fits a binary LightGBM classifier with early stopping on pixels sampled from
the validation split, and stores the booster inside a :class:`smallmines.models.pixel.PixelGBM`. From then
on the baseline is a network like the others: the threshold is chosen on validation, and
:func:`smallmines.training.evaluation.evaluate` scores it with the same code and metrics.

Model arguments (``model.args`` of the ``pixel-lgbm`` preset) are LightGBM parameters
(``num_leaves``, ``learning_rate``, ``min_child_samples``, ``feature_fraction``, ``num_threads``...)
plus ``pixels_per_patch`` and ``early_stopping_rounds``; ``train.epochs`` is the number of boosting rounds.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallmines.bands import IGNORE_INDEX
from smallmines.errors import ConfigError, OptionalDependencyError
from smallmines.models.pixel import PixelGBM
from smallmines.training.config import Config
from smallmines.training.datamodule import SmallMinesDataModule, SplitArrays, normalize_batch

logger = logging.getLogger(__name__)
SAMPLING_KEYS = ("pixels_per_patch", "early_stopping_rounds")


def sample_pixels(arrays: SplitArrays, dm: SmallMinesDataModule, pixels_per_patch: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``pixels_per_patch`` random valid pixels per patch: features ``(P, C)`` float32, labels ``(P,)``."""
    mean, std, _ = dm.normalizer(torch.device("cpu"))
    rng = np.random.default_rng(seed)
    features, labels = [], []
    for start in range(0, len(arrays), 64):
        image = normalize_batch(arrays.images[start:start + 64], dm.channels, arrays.bands, mean, std)
        x = image.permute(0, 2, 3, 1).reshape(image.shape[0], -1, image.shape[1]).numpy()
        y = arrays.masks[start:start + 64].reshape(image.shape[0], -1).numpy()
        for xi, yi in zip(x, y, strict=True):
            valid = np.flatnonzero(yi != IGNORE_INDEX)
            take = rng.choice(valid, size=min(pixels_per_patch, valid.size), replace=False)
            features.append(xi[take])
            labels.append(yi[take])
    if not features:
        return np.empty((0, len(dm.channels)), np.float32), np.empty(0, np.uint8)
    return np.concatenate(features), np.concatenate(labels)


def fit_pixel_baseline(network: PixelGBM, dm: SmallMinesDataModule, config: Config, run_dir: Path) -> dict[str, Any]:
    """Fit the booster of ``network`` in place; write ``logs/metrics.csv`` (one row per round).

    Returns:
        ``{"seconds", "epochs", "patches_per_s", "best_epoch", "best_score"}`` where epochs are
        boosting rounds and the score is the validation log-loss (lower is better).

    Raises:
        OptionalDependencyError: LightGBM is not installed.
        ConfigError: the training split has no class variety.
    """
    try:
        import lightgbm
    except ImportError as exc:  # declared as a dependency; guard broken installs
        raise OptionalDependencyError("the pixel baseline needs lightgbm: pip install lightgbm") from exc
    args = dict(network.params)
    per_patch = int(args.pop("pixels_per_patch", 1024))
    patience = int(args.pop("early_stopping_rounds", 20))
    seed = config.train.seed
    train_arrays, val_arrays = dm.load("train"), dm.load("val")
    start = time.perf_counter()
    x, y = sample_pixels(train_arrays, dm, per_patch, seed)
    if len(np.unique(y)) < 2:
        raise ConfigError(f"the training split has only class {np.unique(y).tolist()}; the baseline needs both")
    params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 63, "min_child_samples": 50,
              "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1, "verbose": -1,
              "seed": seed, "deterministic": True, "force_row_wise": True, **args}
    train_set = lightgbm.Dataset(x, y, feature_name=list(dm.channels), free_raw_data=True)
    sets, names, callbacks = [train_set], ["train"], [lightgbm.log_evaluation(0)]
    history: dict[str, dict[str, list[float]]] = {}
    callbacks.append(lightgbm.record_evaluation(history))
    if len(val_arrays):
        xv, yv = sample_pixels(val_arrays, dm, per_patch, seed + 1)
        sets.append(lightgbm.Dataset(xv, yv, reference=train_set))
        names.append("val")
        callbacks.append(lightgbm.early_stopping(patience, verbose=False))
    booster = lightgbm.train(params, train_set, num_boost_round=config.train.epochs, valid_sets=sets,
                             valid_names=names, callbacks=callbacks)
    seconds = time.perf_counter() - start
    network.booster = booster
    rounds = len(history["train"]["binary_logloss"])
    _write_log(run_dir / "logs" / "metrics.csv", history, rounds)
    best = booster.best_iteration or rounds
    val_curve = history.get("val", {}).get("binary_logloss")
    logger.info("LightGBM: %d pixels, %d rounds (best %d) in %.1f s", len(y), rounds, best, seconds)
    return {"seconds": seconds, "epochs": rounds, "patches_per_s": len(train_arrays) / max(seconds, 1e-9),
            "best_epoch": best - 1, "best_score": val_curve[best - 1] if val_curve else None,
            "monitor": "val_binary_logloss", "train_pixels": int(len(y))}


def _write_log(path: Path, history: dict[str, dict[str, list[float]]], rounds: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", "step", "train_loss", "val_loss"])
        for i in range(rounds):
            val = history.get("val", {}).get("binary_logloss")
            writer.writerow([i, i, history["train"]["binary_logloss"][i], val[i] if val else ""])
    os.replace(tmp, path)
