"""Train a model from a configuration: :func:`fit` -> :class:`RunResult`, writing a run folder.

::

    from smallmines.training.config import load_config
    from smallmines.training.trainer import fit

    result = fit(load_config("tiny", ["data.root=synthetic/"]), out="runs/tiny")
    print(result.summary["best_score"], result.model_path)

The run folder follows ``docs/run-layout.md``: ``config.yaml``, ``stats.json``,
``checkpoints/{best,last}.ckpt``, ``model.pt`` (best weights), ``model-final.pt`` (the weights at the
end), ``logs/metrics.csv`` and ``train_summary.json``. Training runs through Lightning
(``SegmentationTask`` + ``SmallMinesDataModule``): early stopping and the best checkpoint follow
validation mining IoU; ``last.ckpt`` is rewritten after every epoch and ``resume=True`` continues from
it; ``train.max_time`` is a wall-clock budget; bf16 autocast runs on CPUs with native bf16, mixed
precision, ``torch.compile`` and channels-last on GPU; DDP over several GPUs or nodes needs only
``train.devices``/``train.num_nodes``/``train.strategy``.
After training, the best weights are reloaded, the decision threshold is chosen on validation, and
both checkpoints and ``model.pt`` get the final card.

With ``model.init`` (fine-tuning on a new area) the initial model is evaluated on the new data's
test split before training (``evaluation/init/test``) and the fine-tuned one after
(``evaluation/test``); ``train_summary.json`` gets a ``transfer`` entry with both.

Note on the authors' recipe: the SmallMinesDS script trains through TerraTorch with ``pretrained: True``
and a frozen backbone, i.e. a frozen ImageNet ResNet50 whose batch-norm statistics still follow the
training batches; ``official-unet-r50-6band`` reproduces that (given the local ImageNet weights file),
``-scratch`` is the same from random weights and ``-unfrozen`` trains the whole network (docs/training.md).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import platform
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint, Timer
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io.torch_plugin import TorchCheckpointIO
from torch import nn

import smallmines
from smallmines.bands import parse_bands
from smallmines.data.stats import BandStats
from smallmines.errors import CheckpointError, ConfigError
from smallmines.models.change import CHANGE_CLASSES, is_change_model
from smallmines.models.networks import require_local_weights
from smallmines.models.pixel import PixelGBM
from smallmines.models.registry import (
    CARD_KEY,
    ModelCard,
    build_model,
    count_parameters,
    freeze_encoder,
    load_model,
    save_model,
)
from smallmines.training.change import ChangeDataModule, evaluate_change
from smallmines.training.config import Config, load_config, parse_duration
from smallmines.training.datamodule import SmallMinesDataModule
from smallmines.training.evaluation import EvalResult, evaluate, select_threshold
from smallmines.training.task import MONITOR, SegmentationTask

logger = logging.getLogger(__name__)
MIXED = ("16-mixed", "bf16-mixed", "16-true", "bf16-true")
FINAL_MODEL = "model-final.pt"
"""The weights at the end of training (``model.pt`` holds the best ones), with their own threshold."""


@dataclass
class RunResult:
    """What :func:`fit` produced.

    Attributes:
        run_dir: the run folder.
        model_path: ``run_dir/model.pt`` (best weights and final card).
        network: the best network, in eval mode, on CPU.
        card: its model card (threshold chosen on validation).
        summary: the content of ``train_summary.json``.
        transfer: with ``model.init``: ``{"before": EvalResult, "after": EvalResult}``.
    """

    run_dir: Path
    model_path: Path
    network: nn.Module = field(repr=False)
    card: ModelCard = field(repr=False)
    summary: dict[str, Any]
    transfer: dict[str, EvalResult] | None = None


class EpochTimer(Callback):
    """Times training epochs (validation excluded) and logs ``epoch_seconds`` and ``train_patches_per_s``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.patches = 0
        self._start: float | None = None
        self._patches = 0

    @staticmethod
    def _now(trainer: L.Trainer) -> float:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._patches = self._now(trainer), 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._patches += batch["image"].shape[0] * trainer.world_size

    def _stop(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._start is None:
            return
        elapsed = self._now(trainer) - self._start
        self._start = None
        self.seconds += elapsed
        self.patches += self._patches
        pl_module.log("epoch_seconds", elapsed, on_epoch=True, on_step=False, sync_dist=True)
        pl_module.log("train_patches_per_s", self._patches / max(elapsed, 1e-9), on_epoch=True, on_step=False,
                      sync_dist=True)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._stop(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop(trainer, pl_module)


class EpochLines(Callback):
    """One log line per epoch (``epoch 3/12: train_loss 0.41, val_iou_mining 0.712, 35 s``).

    Used when there is no progress bar (a log file, nohup, SLURM, a notebook), so a long run shows
    where it is without control characters.
    """

    SHOWN = ("train_loss", "val_loss", "val_iou_mining", "val_miou", "val_miou_change", "val_iou_new")

    def __init__(self) -> None:
        self._start = time.monotonic()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        self._start = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        if not trainer.sanity_checking:
            self._line(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        if not trainer.val_dataloaders or trainer.limit_val_batches == 0:
            self._line(trainer)

    def _line(self, trainer: L.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        values = ", ".join(f"{k} {float(metrics[k]):.4f}" for k in self.SHOWN if k in metrics)
        logger.info("epoch %d/%d: %s, %.0f s", trainer.current_epoch + 1, trainer.max_epochs, values,
                    time.monotonic() - self._start)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast is faster."""
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check is not None and bool(check()) for check in checks)


def resolve_hardware(config: Config) -> tuple[str, str]:
    """(accelerator, precision) actually used.

    On CPU, ``bf16-mixed`` stays bf16 autocast where the CPU has native bf16; every other reduced
    precision falls back to ``32-true``, with a warning that says so.
    """
    accelerator = config.train.accelerator
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    precision = str(config.train.precision)
    if not on_gpu and precision in MIXED:
        if precision == "bf16-mixed" and cpu_has_bf16():
            logger.info("precision bf16-mixed on CPU: bf16 autocast (this CPU has native bf16)")
        else:
            why = "this CPU has no native bf16" if precision.startswith("bf16") else f"{precision} needs a GPU"
            logger.warning("precision %s: %s; training in 32-true", precision, why)
            precision = "32-true"
    return ("gpu" if on_gpu else ("cpu" if accelerator == "auto" else accelerator)), precision


def _atomic_json(path: Path, data: Mapping[str, Any]) -> None:
    from smallmines.training.evaluation import _json_safe

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_json_safe(dict(data)), indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _trainer(config: Config, run_dir: Path, accelerator: str, precision: str, progress: bool,
             has_val: bool, timer: EpochTimer, steps_per_epoch: int,
             monitor: str = MONITOR) -> tuple[L.Trainer, ModelCheckpoint]:
    t = config.train
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor if has_val else None,
                                 mode="max", save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False)
    # Lightning's save_last only copies a checkpoint when the best one is saved; this one is rewritten at
    # the end of every epoch (after validation and after the best checkpoint), so it is the true last state
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
                           every_n_epochs=1, auto_insert_metric_name=False, enable_version_counter=False)
    callbacks: list[Callback] = [checkpoint, last, timer]
    if t.patience is not None and has_val:
        callbacks.append(EarlyStopping(monitor=monitor, mode="max", patience=int(t.patience), check_finite=False))
    if config.optimizer.scheduler != "none":
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if progress:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=True))
    else:
        callbacks.append(EpochLines())
    loggers: list[Any] = [CSVLogger(run_dir, name="logs", version="")]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run_dir, name="logs", version="tensorboard"))
    trainer = L.Trainer(
        max_epochs=t.epochs, max_time=parse_duration(t.max_time, "train.max_time") if t.max_time else None,
        accelerator=accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        precision=precision, deterministic=t.deterministic, benchmark=accelerator == "gpu" and not t.deterministic,
        callbacks=callbacks, logger=loggers, default_root_dir=run_dir, enable_progress_bar=progress,
        enable_model_summary=progress, gradient_clip_val=t.gradient_clip, accumulate_grad_batches=t.accumulate,
        log_every_n_steps=max(1, min(t.log_every_n_steps, steps_per_epoch)),
        num_sanity_val_steps=t.num_sanity_val_steps if has_val else 0,
        limit_val_batches=1.0 if has_val else 0, use_distributed_sampler=False, plugins=[AtomicCheckpointIO()],
    )
    return trainer, checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer made atomic: a temporary file in the same folder, fsync, then rename.

    Lightning's own writer (an fsspec transaction) stages a checkpoint in the system's temporary folder
    and moves it across file systems, which on a full disk leaves a truncated ``best.ckpt`` under its
    final name. Here a checkpoint under its final name is always complete.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically (``storage_options`` is not used on local disks)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


RUN_FILES = ("checkpoints", "logs", "evaluation", "model.pt", "model-final.pt", "train_summary.json", "stats.json",
             "config.yaml")
"""What a training run writes into its folder: removed first by ``overwrite``, nothing else is touched."""


def _clear_run(run_dir: Path) -> None:
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _merge_logs(path: Path, earlier: list[dict[str, str]], before_epoch: int) -> None:
    """After a resume: keep the earlier rows of completed epochs in front of the new ones."""
    kept = [r for r in earlier if r.get("epoch", "") != "" and int(float(r["epoch"])) < before_epoch]
    rows = kept + _read_rows(path)
    if not kept:
        return
    columns = list(dict.fromkeys(k for r in rows for k in r))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _load_weights(network: nn.Module, checkpoint: Path) -> None:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    network.load_state_dict({k[len("network."):]: v for k, v in state.items() if k.startswith("network.")})


def _update_card(checkpoint: Path, card: ModelCard) -> None:
    """Rewrite a Lightning checkpoint's card (atomically) once the threshold is known."""
    blob = torch.load(checkpoint, map_location="cpu", weights_only=False)
    blob[CARD_KEY] = card.to_dict()
    tmp = checkpoint.with_name(f".{checkpoint.name}.tmp")
    torch.save(blob, tmp)
    os.replace(tmp, checkpoint)


def _prepare(config: Config, run_dir: Path, resume: bool, overwrite: bool = False
             ) -> tuple[Config, nn.Module | None, ModelCard | None, BandStats | None]:
    """Checks the run folder; applies the init checkpoint's architecture and channels; picks statistics."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume and overwrite:
        raise ConfigError("give --resume (continue the run) or --overwrite (replace it), not both")
    if resume and not last.is_file() and not (run_dir / "model.pt").is_file():
        raise CheckpointError(f"{last}: nothing to resume; train without --resume first")
    if not resume and not overwrite and (last.is_file() or (run_dir / "model.pt").is_file()):
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, give --overwrite to replace "
                          "it, or choose another output folder")
    saved = run_dir / "config.yaml"
    if resume and saved.is_file() and config.optimizer.scheduler == "onecycle":
        planned = load_config(saved).train.epochs
        if planned != config.train.epochs:
            raise ConfigError(f"the one-cycle schedule of {run_dir} was planned for {planned} epochs; resume with "
                              f"train.epochs={planned} (or use optimizer.scheduler=cosine to extend runs)")
    if not config.model.init:  # before anything is written
        require_local_weights(str(config.model.args.get("encoder", "")), config.model.args.get("encoder_weights"))
    init_network = init_card = stats = None
    if config.model.init:
        init_network, init_card = load_model(config.model.init)
        config.model.name, config.model.args = init_card.model, dict(init_card.model_args)
        if tuple(parse_bands(config.data.bands)) != tuple(init_card.channels):
            logger.warning("model.init %s was trained on the channels %s; they replace data.bands=%s",
                           config.model.init, ",".join(init_card.channels), config.data.bands)
        config.data.bands = ",".join(init_card.channels)
        if config.model.stats == "keep":
            stats = init_card.stats
    if resume and (run_dir / "stats.json").is_file():
        stats = BandStats.load(run_dir / "stats.json")
    return config, init_network, init_card, stats


def fit(
    config: Config | str | Path | Mapping[str, Any] = "tiny",
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    data_progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> RunResult:
    """Train (or fine-tune) one model and write its run folder.

    Args:
        config: a :class:`~smallmines.training.config.Config`, preset name, YAML path or dict.
        overrides: ``section.key=value`` strings or a nested dict applied on top.
        out: the run folder; default ``runs/{config.name}``.
        resume: continue from ``out/checkpoints/last.ckpt``.
        progress: show Lightning's rich progress bar and model summary.
        data_progress: called as ``progress(done, total)`` while patches are read.
        overwrite: replace a run already in ``out`` (its files are removed once the configuration and
            data are checked; other files in the folder are left alone).

    Returns:
        The run's folder, best network, card and summary.

    Raises:
        ConfigError: invalid configuration, or ``out`` already holds a run and ``resume`` is False.
        CheckpointError: nothing to resume, or a bad ``model.init``.
        DatasetNotFoundError, SplitError, OptionalDependencyError: as named.
    """
    config = load_config(config, overrides)
    if not config.data.root:
        raise ConfigError("data.root is not set: pass the dataset (--data PATH or data.root=PATH)")
    run_dir = Path(out) if out is not None else Path("runs") / config.name
    config = config.with_absolute_paths()  # config.yaml and the card never depend on the working directory
    config, init_network, init_card, stats = _prepare(config, run_dir, resume, overwrite)
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    d = config.data
    change = is_change_model(config.model.name)
    module = ChangeDataModule if change else SmallMinesDataModule
    dm = module(d.root, d.bands, d.splits, d.split_seed, d.val_fraction, d.years, d.splits_dir,
                config.train.batch_size, config.train.eval_batch_size, config.train.augment,
                config.train.seed, stats, d.cache, data_progress)
    dm.setup("fit")
    # the network is built before anything is written: an unknown model name leaves no half run folder
    network = init_network if init_network is not None else build_model(config.model.name, dm.channels,
                                                                         **config.model.args)
    if overwrite:
        _clear_run(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / "config.yaml")
    dm.stats.save(run_dir / "stats.json")
    if config.model.freeze_encoder:
        freeze_encoder(network, config.model.frozen_batch_norm)
    card = ModelCard(config.model.name, dict(config.model.args), dm.channels, dm.stats, 0.5, config.to_dict())
    accelerator, precision = resolve_hardware(config)
    device = torch.device("cuda") if accelerator == "gpu" else torch.device("cpu")
    before = None
    if init_card is not None and not change:
        before = evaluate((init_network, init_card), dm.source, "test", splits=dm.resolve(), years=d.years,
                          out=run_dir / "evaluation" / "init" / "test", batch_size=config.train.eval_batch_size,
                          device=device)
    if isinstance(network, PixelGBM):
        from smallmines.training.baseline import fit_pixel_baseline

        info = fit_pixel_baseline(network, dm, config, run_dir)
        info.update(device=platform.processor() or platform.machine(), precision="n/a")
    else:
        info = _fit_network(network, card, dm, config, run_dir, accelerator, precision, progress, resume)
        if info is None:  # a DDP worker: rank zero writes the results
            return RunResult(run_dir, run_dir / "model.pt", network, card, {})
    network.to(device).eval()
    val = dm.load("val")
    fixed = None if config.train.threshold == "val" else (float(config.train.threshold),)
    _score_on_validation(network, card, val, dm, config, device, fixed)
    network.cpu()
    model_path = save_model(run_dir / "model.pt", network, card)
    final_state = info.pop("final_state", None)
    if final_state is not None:
        info["final"] = _save_final(final_state, card, val, dm, config, run_dir, device, fixed)
    for ckpt in (run_dir / "checkpoints" / "best.ckpt", run_dir / "checkpoints" / "last.ckpt"):
        if ckpt.is_file():
            _update_card(ckpt, card)
    summary = {
        "name": config.name, "model": config.model.name, "model_args": config.model.args, "bands": config.data.bands,
        "channels": list(dm.channels), "params": count_parameters(network),
        "trainable_params": count_parameters(network, trainable_only=True), **info,
        "threshold": card.threshold, "val": card.metrics.get("val", {}), "seed": config.train.seed,
        **dm.describe(), "versions": {"smallmines": smallmines.__version__, "torch": torch.__version__,
                                      "lightning": L.__version__},
    }
    transfer = None
    if before is not None:
        after = evaluate((network, card), dm.source, "test", splits=dm.resolve(), years=d.years,
                         out=run_dir / "evaluation" / "test", batch_size=config.train.eval_batch_size, device=device)
        network.cpu()
        transfer = {"before": before, "after": after}
        summary["transfer"] = {"init": str(config.model.init), "stats": config.model.stats,
                               "before": before.overall, "after": after.overall}
    _atomic_json(run_dir / "train_summary.json", summary)
    return RunResult(run_dir, model_path, network, card, summary, transfer)


def _score_on_validation(network: nn.Module, card: ModelCard, val: Any, dm: SmallMinesDataModule, config: Config,
                         device: torch.device, fixed: tuple[float, ...] | None, warn: bool = True) -> None:
    """Set a card's validation scores, and for a mining model the threshold that maximises mining IoU.

    A change model takes the argmax over its 4 classes: there is no threshold to choose.
    """
    if isinstance(dm, ChangeDataModule):
        scores = evaluate_change(network, val, dm.date_channels, dm.stats, config.train.eval_batch_size,
                                 device)["overall"] if len(val) else {}
    else:
        chosen = select_threshold(network, val, dm.channels, dm.stats, config.train.eval_batch_size, device,
                                  thresholds=fixed, warn=warn)
        card.threshold = float(chosen["threshold"])
        scores = chosen["scores"]
    card.metrics = {"val": scores} if scores else {}


def _save_final(state: Mapping[str, torch.Tensor], card: ModelCard, val: Any, dm: SmallMinesDataModule,
                config: Config, run_dir: Path, device: torch.device, fixed: tuple[float, ...] | None) -> dict[str, Any]:
    """Write the end-of-training weights beside the best ones, with a threshold chosen for them."""
    final = card.build()
    final.load_state_dict(state)
    final.to(device).eval()
    final_card = ModelCard.from_dict(card.to_dict())
    _score_on_validation(final, final_card, val, dm, config, device, fixed, warn=False)  # said once, for the best
    save_model(run_dir / FINAL_MODEL, final.cpu(), final_card)
    return {"path": FINAL_MODEL, "threshold": final_card.threshold, "val": final_card.metrics.get("val", {})}


def _fit_network(network: nn.Module, card: ModelCard, dm: SmallMinesDataModule, config: Config, run_dir: Path,
                 accelerator: str, precision: str, progress: bool, resume: bool) -> dict[str, Any] | None:
    """Run Lightning; returns timing/best-score info on rank zero (None on other ranks)."""
    t = config.train
    on_gpu = accelerator == "gpu"
    if on_gpu:
        torch.set_float32_matmul_precision("high")
        if t.channels_last:
            network = network.to(memory_format=torch.channels_last)
        if t.compile:
            network.compile(**({"mode": t.compile} if isinstance(t.compile, str) else {}))
    elif t.compile:
        logger.info("torch.compile is only applied on GPU; training uncompiled on CPU")
    loss = {"terms": config.loss.terms, "class_weights": config.loss.class_weights,
            "focal_gamma": config.loss.focal_gamma, "dice_smooth": config.loss.dice_smooth}
    task = SegmentationTask(network, card.to_dict(), loss, vars(config.optimizer).copy(),
                            channels_last=on_gpu and t.channels_last,
                            classes=CHANGE_CLASSES if is_change_model(config.model.name) else 2)
    has_val = len(dm.load("val")) > 0
    timer = EpochTimer()
    steps = len(dm.load("train")) // max(1, t.batch_size)
    trainer, checkpoint = _trainer(config, run_dir, accelerator, precision, progress, has_val, timer, steps,
                                   task.monitor)
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt_path = last if resume and last.is_file() else None
    earlier = _read_rows(run_dir / "logs" / "metrics.csv") if ckpt_path else []
    start_epoch = int(torch.load(last, map_location="cpu", weights_only=False)["epoch"]) + 1 if ckpt_path else 0
    start = time.perf_counter()
    with warnings.catch_warnings():
        # on resume, the earlier rows of logs/metrics.csv are merged back below (see _merge_logs)
        warnings.filterwarnings("ignore", message="Experiment logs directory")
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
        trainer.fit(task, datamodule=dm, ckpt_path=ckpt_path)
    seconds = time.perf_counter() - start
    if not trainer.is_global_zero:
        return None
    if ckpt_path:
        _merge_logs(run_dir / "logs" / "metrics.csv", earlier, start_epoch)
    final_state = {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()}
    budget = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
    time_limited = budget is not None and (budget.time_remaining() or 0.0) <= 0
    if time_limited:
        logger.info("stopped by the time budget train.max_time=%s after %d epochs", t.max_time, trainer.current_epoch)
    best_path = Path(checkpoint.best_model_path) if checkpoint.best_model_path else last
    best_epoch = None
    if best_path.is_file():
        _load_weights(network, best_path)
        best_epoch = int(torch.load(best_path, map_location="cpu", weights_only=False)["epoch"])
    score = checkpoint.best_model_score
    return {"seconds": seconds, "train_seconds": timer.seconds, "epochs": trainer.current_epoch,
            "patches_per_s": timer.patches / max(timer.seconds, 1e-9), "best_epoch": best_epoch,
            "best_score": float(score) if score is not None else None, "monitor": task.monitor,
            "device": torch.cuda.get_device_name(0) if on_gpu else (platform.processor() or platform.machine()),
            "devices": trainer.world_size, "precision": precision, "resumed_from_epoch": start_epoch or None,
            "max_time": t.max_time, "time_limited": time_limited, "final_state": final_state}
