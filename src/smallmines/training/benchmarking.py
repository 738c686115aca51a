"""Compare models: train and evaluate several configurations on one split with the same seeds.

:func:`benchmark` runs every configuration with every seed (``out/{config}/seed{N}/``, each a normal
run folder with ``evaluation/{split}``), checks that all runs used the same split, and writes one
comparison table like the SmallMinesDS paper's (model, bands, parameters, training time, mining IoU,
mean IoU, F1; mean ± standard deviation over seeds)::

    out/benchmark.md    the table in Markdown
    out/benchmark.csv   the same numbers (mean and std columns)
    out/runs.csv        one row per configuration and seed

Runs whose evaluation already exists are reused, so an interrupted benchmark continues where it stopped.

A benchmark that holds a bi-temporal change model (preset ``change-tiny``) is a *change* benchmark
(:mod:`smallmines.training.benchmark_change`): every configuration is scored per change class on the
test pairs of one site-grouped split, change models directly and single-date models by differencing
their maps of the two years; the official split is refused.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smallmines.errors import ConfigError
from smallmines.training.benchmark_change import (
    CHANGE_COLUMNS,
    aggregate_change,
    change_markdown,
    change_row,
    check_change_configs,
    is_change_config,
    mean_std,
)
from smallmines.training.config import Config, load_config
from smallmines.training.evaluation import evaluate

logger = logging.getLogger(__name__)
SCORES = ("iou_mining", "miou", "f1_mining", "precision_mining", "recall_mining")
COUNTRY_PREFIX = "iou_mining_country_"
"""Run and table keys of the per-country mining IoU (datasets of more than one country)."""
TABLE_COLUMNS = ("config", "model", "bands", "channels", "params", "train_s", "epochs", "seeds",
                 *(f"{s}_{stat}" for s in SCORES for stat in ("mean", "std")))


@dataclass
class BenchmarkResult:
    """What :func:`benchmark` produced.

    Attributes:
        table: one row per configuration (:data:`TABLE_COLUMNS`).
        runs: one row per configuration and seed.
        markdown: the comparison table as Markdown.
        out: the benchmark folder.
    """

    table: list[dict[str, Any]]
    runs: list[dict[str, Any]] = field(repr=False)
    markdown: str = field(repr=False)
    out: Path


def _model_label(config: Config) -> str:
    args = config.model.args
    detail = args.get("encoder") or (f"{args['size']}M" if "size" in args else None)
    if config.model.name == "twostream":
        detail = f"{args.get('encoder', 'resnet34')} + {args.get('aux_encoder', 'resnet18')}"
    return f"{config.model.name} ({detail})" if detail else config.model.name


def _run_one(config: Config, seed: int, run_dir: Path, split: str, progress: bool,
             overwrite: bool = False) -> dict[str, Any]:
    from smallmines.training.trainer import fit

    metrics_path = run_dir / "evaluation" / split / "metrics.json"
    summary_path = run_dir / "train_summary.json"
    if overwrite:
        fit(config, out=run_dir, progress=progress, overwrite=True)
        evaluate(run_dir / "model.pt", split=split)
        return _row(config, seed, run_dir, summary_path, metrics_path)
    _check_same_config(run_dir, config)
    if metrics_path.is_file() and summary_path.is_file():
        logger.info("reusing %s", run_dir)
    else:
        resume = (run_dir / "checkpoints" / "last.ckpt").is_file() or (run_dir / "model.pt").is_file()
        if resume and (run_dir / "model.pt").is_file():
            logger.info("evaluating the finished run %s", run_dir)
        else:
            fit(config, out=run_dir, resume=resume, progress=progress)
        evaluate(run_dir / "model.pt", split=split)
    return _row(config, seed, run_dir, summary_path, metrics_path)


def _row(config: Config, seed: int, run_dir: Path, summary_path: Path, metrics_path: Path) -> dict[str, Any]:
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    overall = metrics["overall"]
    countries = metrics.get("per_country") or {}
    per_country = {f"{COUNTRY_PREFIX}{c or '?'}": v.get("iou_mining") for c, v in countries.items()}
    return {
        "config": config.name, "seed": seed, "model": _model_label(config), "bands": config.data.bands,
        "channels": len(summary["channels"]), "params": summary["params"], "train_s": summary["seconds"],
        "epochs": summary["epochs"], "threshold": summary["threshold"], "split_hash": summary["split_hash"],
        **{s: overall.get(s) for s in SCORES}, **(per_country if len(per_country) > 1 else {}),
        "run_dir": str(run_dir),
    }


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and key != "args":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_same_config(run_dir: Path, config: Config) -> None:
    """Refuse to reuse a run folder trained with another configuration (its numbers would be wrong)."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    before, now = _flat(load_config(saved).to_dict()), _flat(config.to_dict())
    differ = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k) and k != "description")
    if differ:
        shown = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in differ[:4])
        raise ConfigError(f"{run_dir} holds a run of another configuration ({shown}); give --overwrite to "
                          "retrain it, or use another --out")


def _aggregate(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    table = []
    for name in dict.fromkeys(r["config"] for r in runs):
        rows = [r for r in runs if r["config"] == name]
        first = rows[0]
        row = {k: first[k] for k in ("config", "model", "bands", "channels", "params")}
        row.update(train_s=statistics.fmean(r["train_s"] for r in rows),
                   epochs=statistics.fmean(r["epochs"] for r in rows), seeds=len(rows))
        for score in SCORES:
            row[f"{score}_mean"], row[f"{score}_std"] = mean_std([r[score] for r in rows])
        for key in dict.fromkeys(k for r in rows for k in r if k.startswith(COUNTRY_PREFIX)):
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std([r.get(key) for r in rows])
        table.append(row)
    return table


def _pm(mean: float, std: float, seeds: int) -> str:
    if math.isnan(mean):
        return "–"
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if seeds > 1 else f"{100 * mean:.2f}"


def _params(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def to_markdown(table: Sequence[Mapping[str, Any]], split: str, seeds: Sequence[int]) -> str:
    """The comparison table (scores in %, mean ± std over seeds)."""
    lines = [f"# Benchmark on `{split}` (seeds {', '.join(map(str, seeds))})", "",
             "| Config | Model | Bands | Params | Train time | Mining IoU | mIoU | F1 (mining) | Precision | Recall |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in table:
        scores = [_pm(row[f"{s}_mean"], row[f"{s}_std"], row["seeds"]) for s in SCORES]
        lines.append(f"| {row['config']} | {row['model']} | {row['bands']} ({row['channels']}) | "
                     f"{_params(row['params'])} | {row['train_s']:.0f} s | " + " | ".join(scores) + " |")
    lines += ["", "Scores in % on the test split, threshold chosen on validation; "
              "node count for the LightGBM baseline in Params.", ""]
    countries = list(dict.fromkeys(k[: -len("_mean")] for row in table for k in row
                                   if k.startswith(COUNTRY_PREFIX) and k.endswith("_mean")))
    if countries:
        lines += ["Mining IoU per country (%)", "",
                  "| Config | Model | " + " | ".join(c[len(COUNTRY_PREFIX):] for c in countries) + " |",
                  "|---|---|" + "---:|" * len(countries)]
        for row in table:
            cells = [_pm(row.get(f"{c}_mean", math.nan), row.get(f"{c}_std", math.nan), row["seeds"])
                     for c in countries]
            lines.append(f"| {row['config']} | {row['model']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def benchmark(
    configs: Iterable[str | Path | Config | Mapping[str, Any]],
    seeds: Sequence[int] = (0,),
    *,
    data: str | Path | None = None,
    out: str | Path = "runs/benchmark",
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    split: str = "test",
    progress: bool = False,
    max_time: str | None = None,
    overwrite: bool = False,
) -> BenchmarkResult:
    """Train and evaluate every configuration with every seed; write the comparison table.

    Args:
        configs: presets, YAML paths, dicts or :class:`~smallmines.training.config.Config` objects.
        seeds: training seeds (weights, batch order, augmentation); the split seed stays fixed.
        data: dataset for every run (overrides ``data.root``).
        out: benchmark folder.
        overrides: ``section.key=value`` strings applied to every configuration.
        split: split to score (``test``).
        progress: Lightning progress bars.
        max_time: wall-clock training budget of every run (``train.max_time``, e.g. ``10m``), so
            recipes are compared at equal time.
        overwrite: retrain every run; without it, finished runs of the same configuration are reused and
            interrupted ones resumed, and a run folder of another configuration is an error.

    Returns:
        The table, per-run rows and Markdown.

    Raises:
        ConfigError: two configurations share a name, or the runs did not use the same split.
    """
    overrides = list(overrides or []) if not isinstance(overrides, Mapping) else overrides
    resolved = []
    for source in configs:
        config = load_config(source, overrides)
        if data is not None:
            config.data.root = str(data)
        if max_time is not None:
            config.train.max_time = str(max_time)
            config.validate()
        resolved.append(config)
    names = [c.name for c in resolved]
    if len(set(names)) != len(names):
        raise ConfigError(f"configurations need distinct names to share a benchmark folder; got {names}")
    if not resolved or not seeds:
        raise ConfigError("benchmark needs at least one configuration and one seed")
    change = any(is_change_config(c) for c in resolved)
    if change:
        check_change_configs(resolved)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for config in resolved:
        for seed in seeds:
            run_config = load_config(config, {"train": {"seed": int(seed)}})
            run_dir = out / config.name / f"seed{seed}"
            run = _run_one(run_config, int(seed), run_dir, split, progress, overwrite)
            runs.append(change_row(run_config, run, run_dir, split) if change else run)
    hashes = {r["split_hash"] for r in runs}
    if len(hashes) > 1:
        detail = ", ".join(f"{r['config']}/seed{r['seed']}={r['split_hash']}" for r in runs)
        raise ConfigError(f"runs used different splits ({detail}); give every configuration the same data.splits, "
                          "data.split_seed, data.val_fraction and data.years")
    if change:
        table = aggregate_change(runs)
        markdown, columns = change_markdown(table, runs, split, seeds), CHANGE_COLUMNS
    else:
        table = _aggregate(runs)
        markdown, columns = to_markdown(table, split, seeds), TABLE_COLUMNS
    (out / ".benchmark.md.tmp").write_text(markdown, encoding="utf-8")
    os.replace(out / ".benchmark.md.tmp", out / "benchmark.md")
    _write_csv(out / "benchmark.csv", table, columns)
    _write_csv(out / "runs.csv", runs, list(runs[0]))
    return BenchmarkResult(table, runs, markdown, out)
