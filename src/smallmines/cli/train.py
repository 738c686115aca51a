"""``smallmines train``, ``evaluate`` and ``benchmark``: thin wrappers over the training API."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from smallmines.cli._common import OVERWRITE_HELP, api_errors, console, out


def _overrides(sets: list[str] | None, options: dict[str, Any]) -> dict[str, Any]:
    """``--set`` items, then the shortcut options that were given (``{"train.epochs": 5}``), as a nested dict."""
    from smallmines.training.config import deep_merge, parse_overrides

    merged = parse_overrides(sets)
    for key, value in options.items():
        if value is not None:
            *parents, leaf = key.split(".")
            nested: dict[str, Any] = {leaf: str(value) if isinstance(value, Path) else value}
            for parent in reversed(parents):
                nested = {parent: nested}
            merged = deep_merge(merged, nested)
    return merged


class _ReadingProgress:
    """``update(done, total)`` for patch reading: one transient bar per split.

    Each bar is closed when complete, so it never overlaps Lightning's own progress bar.
    """

    def __init__(self, description: str) -> None:
        self.description = description
        self.bar: Progress | None = None
        self.task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not console.is_terminal:
            return
        if self.bar is None:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=total)
        self.bar.update(self.task, completed=done, total=total)
        if done >= total:
            self.bar.stop()
            self.bar = None


def _monitor_label(summary: dict[str, Any]) -> str:
    return "val change mIoU" if summary.get("monitor") == "val_miou_change" else "val mining IoU"


def _threshold_note(summary: dict[str, Any]) -> str:
    if summary.get("monitor") == "val_miou_change":  # change models take the argmax of 4 classes
        return ""
    return f", threshold {summary['threshold']:.2f}"


def _change_table(title: str, overall: dict[str, Any]) -> Table:
    from smallmines.legend import CLASS_KEYS, ChangeClass

    table = Table(title=title)
    for column in ("class", "IoU", "precision", "recall", "F1"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for c in ChangeClass:
        values = [overall.get(f"{m}_{CLASS_KEYS[c]}") for m in ("iou", "precision", "recall", "f1")]
        table.add_row(c.label, *("–" if v is None or math.isnan(v) else f"{v:.4f}" for v in values))
    return table


def _scores_table(title: str, rows: dict[str, dict[str, Any]]) -> Table:
    table = Table(title=title)
    for column in ("group", "patches", "mining IoU", "mIoU", "F1", "precision", "recall", "accuracy"):
        table.add_column(column, justify="left" if column == "group" else "right")

    def fmt(value: Any) -> str:
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"

    for label, values in rows.items():
        table.add_row(label, str(values.get("patches", "")), *(fmt(values.get(k)) for k in (
            "iou_mining", "miou", "f1_mining", "precision_mining", "recall_mining", "accuracy")))
    return table


def train(
    config: Annotated[str | None, typer.Argument(help="Preset name or YAML file (see --list-presets).")] = None,
    data: Annotated[Path | None, typer.Option("--data", "-d", help="Dataset: zip, folder or .smpack.")] = None,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default runs/NAME).")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", "-s", help="Override, e.g. train.epochs=5.")] = None,
    init: Annotated[Path | None, typer.Option(help="Fine-tune from this checkpoint (model.pt or .ckpt).",
                                              exists=True, dir_okay=False)] = None,
    freeze_encoder: Annotated[bool | None, typer.Option("--freeze-encoder/--no-freeze-encoder",
                                                        help="Train only the decoder.")] = None,
    stats: Annotated[str | None, typer.Option(help="With --init: 'keep' its statistics or 'recompute'.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoints/last.ckpt.")] = False,
    seed: Annotated[int | None, typer.Option(help="Training seed.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    max_time: Annotated[str | None, typer.Option(
        help="Wall-clock budget of training, e.g. 10m, 1.5h or DD:HH:MM:SS (compare recipes at equal time).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size per device.")] = None,
    precision: Annotated[str | None, typer.Option(help="32-true, bf16-mixed, 16-mixed...")] = None,
    compile: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile on GPU.")] = None,
    devices: Annotated[str | None, typer.Option(help="Devices: auto, a count or ids like [0,1].")] = None,
    list_presets: Annotated[bool, typer.Option("--list-presets", help="List presets and exit.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run already in OUT (its files only); "
                                            "--resume continues it instead.")] = False,
) -> None:
    """Train a model (or fine-tune one with --init) and write a run folder."""
    from smallmines.training.config import list_presets as presets
    from smallmines.training.config import load_config
    from smallmines.training.trainer import fit

    if list_presets:
        table = Table("preset", "description")
        for name, description in presets().items():
            table.add_row(name, escape(description))
        out.print(table)
        return
    with api_errors():
        if config is None:
            saved = output / "config.yaml" if output else None
            if not (resume and saved and saved.is_file()):
                console.print(f"[bold red]error:[/] give a CONFIG (a YAML file or one of: {', '.join(presets())})")
                raise typer.Exit(2)
            config = str(saved)
        overrides = _overrides(sets, {"data.root": data, "model.init": init, "model.freeze_encoder": freeze_encoder,
                                      "model.stats": stats, "train.seed": seed, "train.epochs": epochs,
                                      "train.max_time": max_time,
                                      "train.batch_size": batch_size, "train.precision": precision,
                                      "train.compile": compile,
                                      "train.devices": yaml.safe_load(devices) if devices else None})
        cfg = load_config(config, overrides)
        result = fit(cfg, out=output, resume=resume, progress=console.is_terminal,
                     data_progress=_ReadingProgress("reading patches"), overwrite=overwrite)
    s = result.summary
    if not s:
        return
    out.print(f"[bold green]trained[/] {s['name']}: {s['epochs']} epochs in {s['seconds']:.0f} s "
              f"({s['patches_per_s']:.0f} patches/s, {s.get('precision')}"
              f"{', stopped by --max-time ' + str(s['max_time']) if s.get('time_limited') else ''}), "
              f"best {_monitor_label(s)} {s.get('best_score') or float('nan'):.4f} at epoch {s.get('best_epoch')}"
              f"{_threshold_note(s)}")
    if result.transfer:
        out.print(_scores_table("transfer: test split of the new data",
                                {"before (init)": {**result.transfer["before"].overall,
                                                   "patches": len(result.transfer["before"].per_patch)},
                                 "after (fine-tuned)": {**result.transfer["after"].overall,
                                                        "patches": len(result.transfer["after"].per_patch)}}))
    final = f"  final weights: {result.run_dir / s['final']['path']}" if s.get("final") else ""
    out.print(f"run folder: {result.run_dir}  model: {result.model_path}{final}")


def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="model.pt or a Lightning .ckpt.", exists=True, dir_okay=False)],
    data: Annotated[Path | None, typer.Argument(help="Dataset (default: the one the model was trained on).")] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    output: Annotated[Path | None, typer.Option("--out", "-o",
                                                help="Folder to write (default RUN/evaluation/SPLIT).")] = None,
    threshold: Annotated[str, typer.Option(
        help="'card' (chosen on validation in training), 'val' or a number.")] = "card",
    batch_size: Annotated[int, typer.Option(help="Patches per forward pass.")] = 64,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1...")] = "auto",
    tta: Annotated[bool, typer.Option(help="Average over the 8 flips/rotations.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Evaluate a model: metrics overall, per year and per mining-share bin, per-patch CSV."""
    from smallmines.errors import ConfigError
    from smallmines.training.evaluation import evaluate as run

    with api_errors():
        if threshold in ("card", "val"):
            chosen: float | str | None = None if threshold == "card" else "val"
        else:
            try:
                chosen = float(threshold)
            except ValueError:
                raise ConfigError(f"--threshold {threshold!r}; use card, val or a number in (0, 1)") from None
        result = run(checkpoint, data, split, threshold=chosen, out=output, batch_size=batch_size, device=device,
                     tta=tta, progress=_ReadingProgress("reading patches"), overwrite=overwrite)
    if len(result.confusion) == 4:  # a change model: 4 x 4 confusion of the change classes
        out.print(_change_table(f"{split} split, {len(result.per_patch)} pairs, change classes", result.overall))
        if result.out:
            out.print(f"written to {result.out}")
        return
    rows = {"overall": {**result.overall, "patches": len(result.per_patch)}}
    rows.update({f"year {y}": v for y, v in result.per_year.items()})
    if len(result.per_country) > 1:
        rows.update({f"country {c or '?'}": v for c, v in result.per_country.items()})
    rows.update({f"share {v['label']}": v for v in result.per_bin.values()})
    out.print(_scores_table(f"{split} split, threshold {result.threshold:.2f}", rows))
    if result.out:
        out.print(f"written to {result.out}")


def benchmark(
    configs: Annotated[list[str], typer.Argument(help="Presets or YAML files to compare.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Dataset for every run.")],
    seeds: Annotated[str, typer.Option(help="Comma-separated training seeds, e.g. 0,1,2.")] = "0",
    output: Annotated[Path, typer.Option("--out", "-o", help="Benchmark folder.")] = Path("runs/benchmark"),
    sets: Annotated[list[str] | None, typer.Option("--set", "-s", help="Override for every config.")] = None,
    split: Annotated[str, typer.Option(help="Split to score.")] = "test",
    max_time: Annotated[str | None, typer.Option(
        help="Wall-clock training budget of every run, e.g. 10m (compare recipes at equal time).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Retrain every run (without it, finished runs of "
                                            "the same configuration are reused, interrupted ones resumed).")] = False,
) -> None:
    """Train and evaluate several configs on the same split and seeds; write the comparison table."""
    from smallmines.errors import ConfigError
    from smallmines.training.benchmarking import benchmark as run

    with api_errors():
        try:
            seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds {seeds!r}; give integers separated by commas, e.g. 0,1,2") from None
        result = run(configs, seed_list, data=data, out=output, overrides=sets, split=split,
                     progress=console.is_terminal, max_time=max_time, overwrite=overwrite)
    out.print(result.markdown)
    out.print(f"written to {result.out}/benchmark.md, benchmark.csv and runs.csv")


def register(app: typer.Typer) -> None:
    """Add ``train``, ``evaluate`` and ``benchmark`` to the main app."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("benchmark")(benchmark)
