"""Exact metrics, threshold selection and the evaluation report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import BinaryF1Score, BinaryJaccardIndex, BinaryPrecision, BinaryRecall

from smallmines.bands import parse_bands
from smallmines.data.dataset import PatchSource
from smallmines.data.splits import share_bin
from smallmines.errors import ConfigError
from smallmines.models.registry import ModelCard
from smallmines.training.datamodule import SmallMinesDataModule
from smallmines.training.evaluation import evaluate, select_threshold
from smallmines.training.metrics import SegmentationMetrics, ThresholdSweep, confusion_counts, scores


def test_scores_by_hand():
    pred = torch.tensor([[[1, 1, 0, 0]]]).bool()
    target = torch.tensor([[[1, 0, 1, 255]]])
    counts = confusion_counts(pred, target)
    assert counts.tolist() == [[0, 1, 1, 1]]  # TN, FP, FN, TP; the 255 pixel is ignored
    s = scores(counts[0])
    assert s["iou_mining"] == pytest.approx(1 / 3) and s["f1_mining"] == pytest.approx(0.5)
    assert s["precision_mining"] == 0.5 and s["recall_mining"] == 0.5 and s["accuracy"] == pytest.approx(1 / 3)
    assert s["iou_background"] == 0 and s["miou"] == pytest.approx(1 / 6)
    empty = scores([10, 0, 0, 0])  # no mining anywhere, none predicted: mining scores undefined
    assert math.isnan(empty["iou_mining"]) and empty["miou"] == 1.0 and empty["accuracy"] == 1.0


def test_segmentation_metrics_match_torchmetrics():
    torch.manual_seed(0)
    logits = torch.randn(4, 2, 16, 16)
    target = torch.randint(0, 2, (4, 16, 16))
    target[:, :3] = 255
    metric = SegmentationMetrics()
    for i in range(4):  # batch order and splitting do not matter
        metric.update(logits[i:i + 1], target[i:i + 1])
    ours = metric.compute()
    prob = torch.softmax(logits, 1)[:, 1]
    for name, reference in (("iou_mining", BinaryJaccardIndex), ("f1_mining", BinaryF1Score),
                            ("precision_mining", BinaryPrecision), ("recall_mining", BinaryRecall)):
        expected = reference(ignore_index=255)(prob, target)
        assert ours[name].item() == pytest.approx(expected.item(), abs=1e-6), name


def test_threshold_sweep_is_exact_at_every_candidate():
    torch.manual_seed(1)
    prob = torch.rand(3, 20, 20)
    target = (torch.rand(3, 20, 20) < prob).long()
    target[0, 0] = 255
    sweep = ThresholdSweep()
    sweep.update(prob, target)
    table = sweep.counts()
    for j, t in enumerate(sweep.thresholds.tolist()):
        assert table[j].tolist() == confusion_counts(prob >= t, target).sum(0).tolist()
    best = sweep.compute()
    ious = [scores(row)["iou_mining"] for row in table]
    assert best["scores"]["iou_mining"] == pytest.approx(max(ious))


class _Fixed(torch.nn.Module):
    """Predicts mining from one normalised channel: logit margin = scale * (x_c - offset)."""

    def __init__(self, channel: int, scale: float = 4.0, offset: float = 0.0) -> None:
        super().__init__()
        self.channel, self.scale, self.offset = channel, scale, offset

    def forward(self, x):
        margin = self.scale * (x[:, self.channel] - self.offset)
        return torch.stack((torch.zeros_like(margin), margin), dim=1)


@pytest.fixture(scope="module")
def datamodule(synth_root):
    dm = SmallMinesDataModule(synth_root, bands="all")
    dm.setup("fit")
    return dm


def _card(dm, threshold=0.5, **config):
    return ModelCard("fixed", {}, dm.channels, dm.stats, threshold, {"data": {"root": str(dm.source.path), **config}})


def test_evaluate_report_is_consistent(datamodule, tmp_path):
    dm = datamodule
    net = _Fixed(dm.channels.index("swir1"))
    result = evaluate((net, _card(dm)), dm.source, "test", out=tmp_path / "eval")
    counts = np.array([[p["tn"], p["fp"], p["fn"], p["tp"]] for p in result.per_patch])
    assert result.confusion == [[int(counts[:, 0].sum()), int(counts[:, 1].sum())],
                                [int(counts[:, 2].sum()), int(counts[:, 3].sum())]]
    assert result.overall == pytest.approx(scores(counts.sum(0)), nan_ok=True)
    test_ids = {pid for pid, s in dm.resolve().items() if s == "test"}
    assert {p["id"] for p in result.per_patch} == test_ids
    for patch in result.per_patch:
        assert patch["bin"] == share_bin(patch["mining_share"])
    assert sum(v["patches"] for v in result.per_year.values()) == len(test_ids)
    assert sum(v["patches"] for v in result.per_bin.values()) == len(test_ids)
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(written) >= {"overall", "per_year", "per_bin", "threshold", "confusion"}
    assert set(written["overall"]) >= {"iou_mining", "iou_background", "miou", "f1_mining", "precision_mining",
                                       "recall_mining", "accuracy"}
    assert "| **overall** |" in (tmp_path / "eval" / "metrics.md").read_text()
    header = (tmp_path / "eval" / "per_patch.csv").read_text().splitlines()[0]
    assert header.startswith("id,year,mining_share,bin")


def test_threshold_comes_from_validation_not_test(datamodule):
    dm = datamodule
    net = _Fixed(dm.channels.index("swir1"))
    chosen = select_threshold(net, dm.load("val"), dm.channels, dm.stats)
    result = evaluate((net, _card(dm, threshold=0.5)), dm.source, "test", threshold="val")
    assert result.threshold == chosen["threshold"]
    assert evaluate((net, _card(dm, threshold=0.3)), dm.source, "test").threshold == 0.3
    with pytest.raises(ConfigError, match="split"):
        evaluate((net, _card(dm)), dm.source, "holdout")


def test_tta_is_exact_for_a_pointwise_model(datamodule):
    dm = datamodule
    net = _Fixed(dm.channels.index("nir"), offset=0.3)
    plain = evaluate((net, _card(dm)), dm.source, "test")
    tta = evaluate((net, _card(dm)), dm.source, "test", tta=True)
    assert tta.confusion == plain.confusion


def test_evaluate_defaults_to_the_training_split(synth_root):
    source = PatchSource(synth_root)
    dm = SmallMinesDataModule(source, bands="s2", splits="random", split_seed=3)
    dm.setup("fit")
    card = _card(dm, splits="random", split_seed=3)
    result = evaluate((_Fixed(0), card), source, "test")
    assert {p["id"] for p in result.per_patch} == {pid for pid, s in dm.resolve().items() if s == "test"}
    assert parse_bands(card.channels) == parse_bands("s2")
