"""The Lightning task: an injected network, one shared step, exact metrics, self-describing checkpoints."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import nn

from smallmines.models.registry import CARD_KEY
from smallmines.training.losses import CombinedLoss
from smallmines.training.metrics import SegmentationMetrics

MONITOR = "val_iou_mining"
"""The validation score that drives early stopping, best checkpoints and the plateau scheduler."""
STAGES = ("train", "val", "test")


class SegmentationTask(L.LightningModule):
    """Train any registered network on ``{"image", "mask"}`` batches.

    The network is injected (not built here), so the task serves every architecture; hyperparameters
    are saved without it. Checkpoints carry the model card under the key ``smallmines``, so
    :func:`smallmines.models.registry.load_model` reads a ``.ckpt`` as it reads a ``model.pt``.

    Args:
        network: maps ``(N, C, H, W)`` normalised channels to ``(N, classes, H, W)`` logits.
        card: the model card as a dict (:meth:`smallmines.models.registry.ModelCard.to_dict`).
        loss: :class:`smallmines.training.losses.CombinedLoss` arguments (``terms``, ``class_weights``...).
        optimizer: ``name``, ``lr``, ``weight_decay``, ``momentum``, ``scheduler``, ``warmup_epochs``.
        channels_last: feed NHWC tensors (faster convolutions on GPUs).
        classes: 2 (background, mining) or 4 for change models (:mod:`smallmines.training.change`), whose
            metrics are the change-class scores and whose monitor is ``val_miou_change``.
    """

    def __init__(self, network: nn.Module, card: dict[str, Any], loss: dict[str, Any], optimizer: dict[str, Any],
                 channels_last: bool = False, classes: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["network"])
        self.network = network
        self.card = card
        self.criterion = CombinedLoss(**loss)
        self.optimizer_config = dict(optimizer)
        self.channels_last = channels_last
        self.classes = int(classes)
        if self.classes > 2:
            from smallmines.training.change import CHANGE_MONITOR, ChangeMetrics

            self.monitor = CHANGE_MONITOR
            self.metrics = nn.ModuleDict({f"{stage}_metrics": ChangeMetrics(self.classes) for stage in STAGES})
        else:
            self.monitor = MONITOR
            self.metrics = nn.ModuleDict({f"{stage}_metrics": SegmentationMetrics() for stage in STAGES})

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.network(image)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self(batch["image"])
        loss = self.criterion(logits, batch["mask"])
        auxiliary = getattr(self.network, "auxiliary_loss", None)
        extra = auxiliary(batch["mask"]) if auxiliary is not None and stage == "train" else None
        if extra is not None:  # e.g. the per-date mining heads of siamese-lite (aux_weight)
            self.log(f"{stage}_aux_loss", extra, on_step=False, on_epoch=True, sync_dist=True,
                     batch_size=batch["image"].shape[0])
            loss = loss + extra
        self.metrics[f"{stage}_metrics"].update(logits, batch["mask"])
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=batch["image"].shape[0])
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        metric = self.metrics[f"{stage}_metrics"]
        values = metric.compute()
        metric.reset()
        shown = {"iou_mining", "miou", "miou_change", "iou_new"}
        for name, value in values.items():
            # torchmetrics already gathered the counts: every rank holds the same value (the mean is a no-op)
            self.log(f"{stage}_{name}", value, prog_bar=stage == "val" and name in shown, sync_dist=True)

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> Any:
        cfg = self.optimizer_config
        params = [p for p in self.network.parameters() if p.requires_grad]
        name = cfg.get("name", "adamw")
        lr, wd = float(cfg.get("lr", 1e-3)), float(cfg.get("weight_decay", 0.0))
        if name == "sgd":
            optimizer = torch.optim.SGD(params, lr=lr, momentum=float(cfg.get("momentum", 0.9)), weight_decay=wd)
        else:
            # one fused kernel for all parameters on a GPU: measured 1.39x faster training steps of U-Net
            # ResNet50 at batch 128 on an H200 (BENCHMARKS.md), where per-tensor launches starve the GPU
            fused = bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)
            optimizer = (torch.optim.AdamW if name == "adamw" else torch.optim.Adam)(params, lr=lr, weight_decay=wd,
                                                                                  fused=fused or None)
        scheduler = cfg.get("scheduler", "none")
        if scheduler == "none":
            return optimizer
        if scheduler == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=3)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau, "monitor": self.monitor}}
        if scheduler == "onecycle":
            onecycle = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=lr, total_steps=max(1, int(self.trainer.estimated_stepping_batches)))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": onecycle, "interval": "step"}}
        epochs, warmup = max(1, self.trainer.max_epochs or 1), int(cfg.get("warmup_epochs", 0))

        def cosine(epoch: int) -> float:
            if epoch < warmup:
                return (epoch + 1) / (warmup + 1)
            progress = (epoch - warmup) / max(1, epochs - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CARD_KEY] = self.card
