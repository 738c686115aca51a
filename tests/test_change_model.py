"""The bi-temporal change model (issue 12): pairs and labels, networks, metrics, the data module, fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from smallmines.cli import app
from smallmines.data.layout import PatchKey
from smallmines.data.pairs import change_labels, check_pair_split, date_channels, find_pairs, split_date_channels
from smallmines.errors import ConfigError, SplitError
from smallmines.legend import ChangeClass
from smallmines.models.registry import build_model, load_model
from smallmines.training.change import (
    ChangeDataModule,
    ChangeMetrics,
    change_confusion,
    change_scores,
    difference_change,
    evaluate_change,
)
from smallmines.training.config import load_config
from smallmines.training.evaluation import evaluate
from smallmines.training.losses import CombinedLoss
from smallmines.training.trainer import fit

FAST = ["train.epochs=1", "train.batch_size=8", "model.args={widths: [4, 8]}", "optimizer.scheduler=none"]


def test_change_labels_truth_table_and_nodata():
    a = np.array([0, 0, 1, 1, 255, 0], np.uint8)
    b = np.array([0, 1, 1, 0, 1, 255], np.uint8)
    assert change_labels(a, b).tolist() == [ChangeClass.NO_MINING, ChangeClass.NEW, ChangeClass.PERSISTENT,
                                            ChangeClass.CEASED, 255, 255]
    assert difference_change(torch.tensor([0, 1, 1, 0]), np.array([1, 1, 0, 0])).tolist() == [1, 2, 3, 0]
    with pytest.raises(ConfigError, match="shapes"):
        change_labels(a, b[:3])


def test_date_channels_round_trip():
    channels = date_channels(("blue", "ndvi"))
    assert channels == ("a:blue", "a:ndvi", "b:blue", "b:ndvi")
    assert split_date_channels(channels) == ("blue", "ndvi")
    assert split_date_channels(("blue", "red")) is None
    with pytest.raises(ConfigError, match="a:X"):
        split_date_channels(("a:blue", "b:red"))


def test_pairs_and_site_grouped_splits():
    keys = [PatchKey("0001", 2016, "GH"), PatchKey("0001", 2022, "GH"), PatchKey("0002", 2016, "GH")]
    pairs = find_pairs(keys)
    assert [(p.id, p.index_a, p.index_b) for p in pairs] == [("GH_0001_2016-2022", 0, 1)]
    by_id = {k.id: k for k in keys}
    check_pair_split("random", {"GH_0001_2016": "test", "GH_0001_2022": "test", "GH_0002_2016": "train"}, by_id)
    with pytest.raises(SplitError, match="different splits"):
        check_pair_split("my.csv", {"GH_0001_2016": "train", "GH_0001_2022": "test"}, by_id)
    with pytest.raises(SplitError, match="42 %"):
        check_pair_split("official", {}, by_id)
    with pytest.raises(SplitError, match="two years"):
        find_pairs(keys[:1])


@pytest.mark.parametrize("name", ["change-unet-lite", "siamese-lite"])
def test_change_networks_shapes(name):
    network = build_model(name, date_channels(("blue", "red", "nir")), widths=[4, 8])
    assert network(torch.randn(2, 6, 16, 16)).shape == (2, 4, 16, 16)
    with pytest.raises(ConfigError, match="odd"):
        build_model(name, ("a:blue", "a:red", "b:blue"), widths=[4, 8])


def test_change_scores_and_metric():
    target = torch.tensor([[0, 1, 1, 2, 3, 255]])
    pred = torch.tensor([[0, 1, 3, 2, 3, 1]])
    confusion = change_confusion(pred, target)
    assert int(confusion.sum()) == 5 and int(confusion[1, 3]) == 1
    s = change_scores(confusion)
    assert s["iou_new"] == 0.5 and s["recall_new"] == 0.5 and s["precision_new"] == 1.0
    assert s["precision_ceased"] == 0.5 and s["iou_persistent"] == 1.0
    assert math.isclose(s["miou_change"], (0.5 + 1.0 + 0.5) / 3) and s["accuracy"] == 0.8
    metric = ChangeMetrics()
    metric.update(torch.nn.functional.one_hot(pred, 4).permute(0, 2, 1).float(), target)
    assert float(metric.compute()["iou_new"]) == 0.5
    assert math.isnan(change_scores(np.zeros((4, 4), int))["iou_new"])


def test_losses_and_config_take_four_classes():
    loss = CombinedLoss({"ce": 1.0, "dice": 1.0}, class_weights=[0.1, 1.0, 0.5, 1.0])
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    value = loss(logits, torch.randint(0, 4, (2, 8, 8)))
    value.backward()
    assert torch.isfinite(value) and logits.grad is not None
    two = CombinedLoss({"dice": 1.0})
    assert torch.isfinite(two(torch.randn(1, 2, 4, 4), torch.full((1, 4, 4), 255)))
    cfg = load_config("change-tiny")
    assert cfg.model.name == "siamese-lite" and cfg.data.splits == "random"
    with pytest.raises(ConfigError, match="needs 4 values"):
        load_config("change-tiny", ["loss.class_weights=[0.3, 0.7]"])
    with pytest.raises(ConfigError, match="needs 2 values"):
        load_config("tiny", ["loss.class_weights=[0.1, 1, 1, 1]"])


def test_datamodule_pairs_normalise_and_augment_both_dates_alike(synth_root):
    dm = ChangeDataModule(synth_root, "blue,red,ndvi", "random", 0, 0.2, batch_size=4)
    dm.setup("fit")
    train = dm.load("train")
    assert train.images.shape[1:] == (6, 128, 128) and train.bands[:2] == ("a:blue", "a:red")
    assert dm.channels == date_channels(("blue", "red", "ndvi")) and dm.stats.channels == dm.channels
    assert set(np.unique(train.masks.numpy())) <= {0, 1, 2, 3, 255}
    assert dm.describe()["pairs"]["train"] == len(train)
    raw = train.images[:2].clone()
    raw[:, 3:] = raw[:, :3]  # the later date equals the earlier one
    batch = dm.on_after_batch_transfer({"image": raw, "mask": train.masks[:2], "aug": torch.tensor([5, 3])}, 0)
    image = batch["image"]
    assert image.shape == (2, 6, 128, 128)
    assert torch.allclose(image[:, :3], image[:, 3:])  # both dates moved by the same transform
    with pytest.raises(SplitError, match="official"):
        ChangeDataModule(synth_root, "blue", "official").setup("fit")


def test_fit_change_model_end_to_end(synth_root, tmp_path):
    result = fit("change-tiny", [f"data.root={synth_root}", "data.bands=blue,red,nir", *FAST], out=tmp_path / "run")
    summary = result.summary
    assert summary["monitor"] == "val_miou_change" and summary["pairs"]["train"] > 0
    assert summary["channels"] == list(date_channels(("blue", "red", "nir")))
    network, card = load_model(result.model_path)
    assert card.model == "siamese-lite" and "iou_new" in card.metrics["val"]
    dm = ChangeDataModule(synth_root, "blue,red,nir", "random", 0, 0.1)
    scores = evaluate_change(network, dm.load("test"), dm.date_channels, card.stats, 8)["overall"]
    assert set(scores) >= {"iou_new", "precision_ceased", "iou_persistent", "miou_change"}
    evaluated = evaluate(result.model_path, synth_root, "test")  # the card's split: site-grouped random
    assert evaluated.confusion and len(evaluated.confusion) == 4 and evaluated.per_patch
    assert evaluated.overall["iou_new"] == pytest.approx(scores["iou_new"])
    assert "new mining" in (tmp_path / "run" / "evaluation" / "test" / "metrics.md").read_text()
    cli = CliRunner().invoke(app, ["evaluate", str(result.model_path), str(synth_root), "-o", str(tmp_path / "ev")])
    assert cli.exit_code == 0 and "ceased mining" in cli.output
    with pytest.raises(SplitError, match="official"):
        fit("change-tiny", [f"data.root={synth_root}", "data.splits=official", *FAST], out=tmp_path / "official")


def test_benchmark_change_model_beside_differencing(synth_root, tmp_path):
    """`smallmines benchmark change-tiny tiny`: both scored per change class on the same site-grouped split."""
    import json

    sets = ["train.epochs=1", "train.batch_size=8", "model.args={widths: [4, 8]}", "optimizer.scheduler=none",
            "data.splits=random", "data.bands=blue,red,nir"]
    args = ["benchmark", "change-tiny", "tiny", "--data", str(synth_root), "-o", str(tmp_path / "b")]
    res = CliRunner().invoke(app, [*args, *(x for s in sets for x in ("--set", s))])
    assert res.exit_code == 0, res.output
    markdown = (tmp_path / "b" / "benchmark.md").read_text()
    assert "| change-tiny | bi-temporal | new mining |" in markdown
    assert "| tiny | differencing | ceased mining |" in markdown and "Per seed" in markdown
    cached = json.loads((tmp_path / "b" / "tiny" / "seed0" / "evaluation" / "test" / "differencing.json").read_text())
    change_run = json.loads((tmp_path / "b" / "change-tiny" / "seed0" / "train_summary.json").read_text())
    assert cached["split_hash"] == change_run["split_hash"] and cached["pairs"] > 0
    assert sum(map(sum, cached["confusion"])) > 0
    header = (tmp_path / "b" / "benchmark.csv").read_text().splitlines()[0]
    assert header.startswith("config,method,") and "iou_new_mean" in header and "f1_ceased_std" in header

    official = CliRunner().invoke(app, ["benchmark", "change-tiny", "tiny", "--data", str(synth_root), "-o",
                                        str(tmp_path / "o"), "--set", "train.epochs=1"])
    assert official.exit_code != 0 and "42 %" in official.output and "Traceback" not in official.output
    assert not (tmp_path / "o" / "tiny").exists()  # refused before any training


def test_siamese_auxiliary_heads_learn_each_dates_mining(synth_root, tmp_path):
    from smallmines.models.change import date_masks

    change = torch.tensor([[0, 1, 2, 3, 255]])
    a, b = date_masks(change)
    assert a.tolist() == [[0, 0, 1, 1, 255]] and b.tolist() == [[0, 1, 1, 0, 255]]
    network = build_model("siamese-lite", date_channels(("blue", "red")), widths=[4, 8], aux_weight=0.5)
    x, target = torch.randn(2, 4, 16, 16), torch.randint(0, 4, (2, 16, 16))
    logits = network.train()(x)
    assert logits.shape == (2, 4, 16, 16) and network.aux_logits.shape == (4, 2, 16, 16)
    loss = network.auxiliary_loss(target)
    loss.backward()
    assert torch.isfinite(loss) and network.aux_fine.weight.grad is not None
    assert network.auxiliary_loss(torch.full((2, 16, 16), 255)) is None
    network.eval()(x)
    assert network.aux_logits is None and network.auxiliary_loss(target) is None
    plain = build_model("siamese-lite", date_channels(("blue", "red")), widths=[4, 8])
    plain.train()(x)
    assert plain.auxiliary_loss(target) is None
    with pytest.raises(ConfigError, match="aux_weight"):
        build_model("siamese-lite", date_channels(("blue",)), widths=[4, 8], aux_weight=-1)
    result = fit("change-tiny", [f"data.root={synth_root}", "data.bands=blue,red,nir", *FAST[:2],
                                 "model.args={widths: [4, 8], aux_weight: 0.5}", "optimizer.scheduler=none"],
                 out=tmp_path / "aux")
    network, card = load_model(result.model_path)
    assert card.model_args["aux_weight"] == 0.5 and network.aux_weight == 0.5
    assert "train_aux_loss" in (tmp_path / "aux" / "logs" / "metrics.csv").read_text().splitlines()[0]
