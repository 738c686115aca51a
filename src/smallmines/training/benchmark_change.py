"""Change models in the benchmark: a bi-temporal preset beside differencing of single-date maps.

When a benchmark holds a change model (``siamese-lite``, ``change-unet-lite``; preset ``change-tiny``),
every configuration is scored on change, on the test *pairs* of one site-grouped split (both years
of a tile on the same side; the official split is refused, :func:`smallmines.data.pairs.check_pair_split`):

- a change model predicts the 4 classes directly (its ``evaluation/{split}/metrics.json``);
- a single-date model maps each date of every test pair at its validation-chosen threshold and the
  two maps are differenced into the same classes (:func:`smallmines.training.change.difference_change`),
  written to ``evaluation/{split}/differencing.json`` of its run.

Both are scored per change class (IoU, precision, recall, F1) against the dataset's change labels,
which on the synthetic twin are its true change. ``benchmark.md`` names each row's preset and
method, with mean ± std over seeds and a per-seed table (the issue's goal is per seed).
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallmines.data.pairs import check_pair_split
from smallmines.legend import CLASS_LABELS, ChangeClass
from smallmines.models.change import is_change_model
from smallmines.training.change import (
    MINING_CHANGES,
    ChangeDataModule,
    change_confusion,
    change_scores,
    difference_change,
)
from smallmines.training.config import Config
from smallmines.training.datamodule import SplitArrays

logger = logging.getLogger(__name__)

METRICS = ("iou", "precision", "recall", "f1")
CHANGE_KEYS = {ChangeClass.NEW: "new", ChangeClass.PERSISTENT: "persistent", ChangeClass.CEASED: "ceased"}
CHANGE_SCORES = (*(f"{m}_{k}" for k in CHANGE_KEYS.values() for m in METRICS), "miou_change")
"""Run and table keys of a change benchmark."""
CHANGE_COLUMNS = ("config", "method", "model", "bands", "channels", "params", "train_s", "epochs", "seeds",
                  *(f"{s}_{stat}" for s in CHANGE_SCORES for stat in ("mean", "std")))
METHODS = {True: "bi-temporal", False: "differencing"}


def is_change_config(config: Config) -> bool:
    """Whether a configuration trains a bi-temporal change model."""
    return is_change_model(config.model.name)


def check_change_configs(configs: Sequence[Config]) -> None:
    """Refuse the official split for any configuration of a change benchmark (it leaks across years).

    Raises:
        SplitError: a configuration uses ``data.splits=official``.
    """
    for config in configs:
        if str(config.data.splits) == "official":
            try:
                check_pair_split("official", {}, {})
            except Exception as exc:  # the one message, naming the configuration
                raise type(exc)(f"{config.name}: {exc} for every configuration of a change benchmark "
                                "(--set data.splits=random)") from None


def differencing(run_dir: Path, config: Config, split: str) -> dict[str, float]:
    """Change scores of a single-date model's differenced maps on the pairs of ``split`` (cached in its run).

    Each date of every pair is mapped with the run's ``model.pt`` at its validation-chosen threshold;
    the two binary maps become change classes and are scored against the pairs' change labels.
    """
    from smallmines.models.registry import load_model
    from smallmines.training.evaluation import predict_batches

    cached = run_dir / "evaluation" / split / "differencing.json"
    if cached.is_file():
        return json.loads(cached.read_text(encoding="utf-8"))["overall"]
    network, card = load_model(run_dir / "model.pt")
    d = config.data
    dm = ChangeDataModule(d.root, list(card.channels), d.splits, d.split_seed, d.val_fraction, d.years, d.splits_dir,
                          stats=None)
    pairs = dm.load(split)
    half = len(pairs.bands) // 2
    bands = tuple(b.split(":", 1)[1] for b in pairs.bands[:half])
    maps = []
    for part in (slice(0, half), slice(half, 2 * half)):
        dates = SplitArrays(pairs.images[:, part], pairs.masks, bands, pairs.ids, pairs.years)
        probability = [p.cpu() for p, _ in predict_batches(network, dates, card.channels, card.stats,
                                                           config.train.eval_batch_size, "auto")]
        maps.append((torch.cat(probability) >= card.threshold).numpy() if probability else np.zeros((0, 1, 1), bool))
    pred = torch.from_numpy(difference_change(maps[0], maps[1]).astype(np.int64))
    confusion = change_confusion(pred, pairs.masks.long())
    overall = change_scores(confusion)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.tmp")
    tmp.write_text(json.dumps({"split": split, "pairs": len(pairs), "threshold": card.threshold,
                               "split_hash": dm.split_hash(), "confusion": confusion.tolist(),
                               "overall": {k: None if math.isnan(v) else v for k, v in overall.items()}}, indent=2),
                   encoding="utf-8")
    os.replace(tmp, cached)
    return overall


def change_row(config: Config, run: Mapping[str, Any], run_dir: Path, split: str) -> dict[str, Any]:
    """A run's row of a change benchmark: its method and change scores."""
    change = is_change_config(config)
    if change:
        metrics = json.loads((run_dir / "evaluation" / split / "metrics.json").read_text(encoding="utf-8"))
        overall = metrics["overall"]
    else:
        overall = differencing(run_dir, config, split)
    keep = ("config", "seed", "model", "bands", "channels", "params", "train_s", "epochs", "split_hash", "run_dir")
    return {**{k: run[k] for k in keep}, "method": METHODS[change],
            **{s: _number(overall.get(s)) for s in CHANGE_SCORES}}


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation over seeds, leaving out missing scores (NaN when none is left)."""
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return math.nan, math.nan
    return statistics.fmean(clean), statistics.stdev(clean) if len(clean) > 1 else 0.0


def aggregate_change(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration: mean and std over seeds of every change score."""
    table = []
    for name in dict.fromkeys(r["config"] for r in runs):
        rows = [r for r in runs if r["config"] == name]
        row = {k: rows[0][k] for k in ("config", "method", "model", "bands", "channels", "params")}
        row.update(train_s=statistics.fmean(r["train_s"] for r in rows),
                   epochs=statistics.fmean(r["epochs"] for r in rows), seeds=len(rows))
        for score in CHANGE_SCORES:
            row[f"{score}_mean"], row[f"{score}_std"] = mean_std([r[score] for r in rows])
        table.append(row)
    return table


def _pct(mean: float, std: float | None = None) -> str:
    if math.isnan(mean):
        return "–"
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def change_markdown(table: Sequence[Mapping[str, Any]], runs: Sequence[Mapping[str, Any]], split: str,
                    seeds: Sequence[int]) -> str:
    """The change benchmark: per change class, per preset and method; then every seed."""
    many = len(seeds) > 1
    lines = [f"# Change benchmark on the `{split}` pairs (seeds {', '.join(map(str, seeds))})", "",
             "Each row names its preset and method: *bi-temporal* (a change model predicts the classes), "
             "*differencing* (a single-date model maps both years, the maps are differenced). Scored on the same "
             "site-grouped split against the pairs' change labels; scores in %" + (", mean ± std over seeds." if many
                                                                                    else "."), "",
             "| Preset | Method | Change class | IoU | Precision | Recall | F1 |", "|---|---|---|---:|---:|---:|---:|"]
    for row in table:
        for c in MINING_CHANGES:
            key = CHANGE_KEYS[c]
            cells = [_pct(row[f"{m}_{key}_mean"], row[f"{m}_{key}_std"] if many else None) for m in METRICS]
            lines.append(f"| {row['config']} | {row['method']} | {CLASS_LABELS[c]} | " + " | ".join(cells) + " |")
    lines += ["", "| Preset | Method | Model | Bands | Params | Train time | Epochs | mIoU (change) |",
              "|---|---|---|---|---:|---:|---:|---:|"]
    for row in table:
        params = f"{row['params'] / 1e6:.1f} M" if row["params"] >= 1e5 else f"{row['params'] / 1e3:.1f} k"
        lines.append(f"| {row['config']} | {row['method']} | {row['model']} | {row['bands']} ({row['channels']}) | "
                     f"{params} | {row['train_s']:.0f} s | {row['epochs']:.0f} | "
                     f"{_pct(row['miou_change_mean'], row['miou_change_std'] if many else None)} |")
    lines += ["", "Per seed (%)", "", "| Seed | Preset | Method | New IoU | New precision | Ceased IoU "
              "| Ceased precision | Persistent IoU |", "|---:|---|---|---:|---:|---:|---:|---:|"]
    for run in sorted(runs, key=lambda r: (r["seed"], r["config"])):
        cells = [_pct(run[k]) for k in ("iou_new", "precision_new", "iou_ceased", "precision_ceased",
                                        "iou_persistent")]
        lines.append(f"| {run['seed']} | {run['config']} | {run['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
