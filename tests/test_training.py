"""Configuration, losses, the on-device data path, fit/resume/fine-tune, benchmark and the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from smallmines.bands import parse_bands
from smallmines.cli import app
from smallmines.data.dataset import SmallMinesDS
from smallmines.errors import CheckpointError, ConfigError
from smallmines.models.registry import load_model
from smallmines.training.config import load_config, parse_overrides
from smallmines.training.datamodule import (
    AUGMENT_CODES,
    DeviceBatches,
    SmallMinesDataModule,
    augment_batch,
    normalize_batch,
)
from smallmines.training.losses import CombinedLoss
from smallmines.training.trainer import fit

FAST = ["train.epochs=2", "train.batch_size=8", "model.args={widths: [8, 16]}", "optimizer.scheduler=cosine"]


# ---------------------------------------------------------------- configuration
def test_config_presets_overrides_and_validation(tmp_path):
    cfg = load_config("official-unet-r50-6band-unfrozen", ["train.epochs=3", "optimizer.lr=1e-4",
                                                           "loss.terms=ce+dice"])
    assert cfg.train.epochs == 3 and cfg.optimizer.lr == 1e-4 and cfg.loss.terms == {"ce": 1.0, "dice": 1.0}
    assert cfg.model.args["encoder"] == "resnet50" and not cfg.model.freeze_encoder
    assert load_config("tiny", ["model.name=unet", "model.args.encoder=resnet18"]).model.args == {"encoder": "resnet18"}
    assert load_config("tiny", ["loss.terms={dice: 0, focal: 1}"]).loss.terms == {"ce": 1.0, "focal": 1.0}
    assert parse_overrides(["a.b.c=[1, 2]"]) == {"a": {"b": {"c": [1, 2]}}}
    child = tmp_path / "mine.yaml"
    child.write_text("base: twostream-r34\ntrain: {epochs: 7}\n")
    mine = load_config(child)
    assert mine.name == "mine" and mine.model.name == "twostream" and mine.train.epochs == 7
    assert load_config(mine.to_dict()).to_dict() == mine.to_dict()
    for bad, match in ((["train.epoch=3"], "unknown key"), (["train.augment=mixup"], "augment"),
                       (["loss.terms={tversky: 1}"], "loss.terms"), (["train.threshold=1.5"], "threshold"),
                       (["train"], "section.key=value")):
        with pytest.raises(ConfigError, match=match):
            load_config("tiny", bad)
    with pytest.raises(ConfigError, match="neither a preset"):
        load_config("no-such-preset")


# ---------------------------------------------------------------- losses
def test_losses_ignore_255_and_match_references():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    target = torch.randint(0, 2, (2, 8, 8))
    target[:, :2] = 255
    weights = torch.tensor([0.1, 0.9])
    ce = CombinedLoss({"ce": 1.0}, class_weights=[0.1, 0.9])(logits, target)
    reference = F.cross_entropy(logits, target, weight=weights, ignore_index=255)
    assert ce.item() == pytest.approx(reference.item(), rel=1e-5)
    focal0 = CombinedLoss({"focal": 1.0}, class_weights=[0.1, 0.9], focal_gamma=0.0)(logits, target)
    assert focal0.item() == pytest.approx(ce.item(), rel=1e-5)
    valid = target != 255
    margin = (logits[:, 1] - logits[:, 0])[valid]
    bce = F.binary_cross_entropy_with_logits(margin, target[valid].float())
    assert CombinedLoss({"bce": 1.0})(logits, target).item() == pytest.approx(bce.item(), rel=1e-5)
    for terms in ({"ce": 1.0}, {"bce": 1.0}, {"dice": 1.0}, {"focal": 1.0}, {"ce": 0.5, "dice": 1.0}):
        loss = CombinedLoss(terms, class_weights=[0.3, 0.7])
        changed = logits.detach().clone()
        changed[:, :, :2] += 10  # only ignored pixels change
        assert loss(changed, target).item() == pytest.approx(loss(logits, target).item(), rel=1e-5), terms
        nothing = loss(logits, torch.full_like(target, 255))
        nothing.backward()
        assert nothing.item() == 0.0 and torch.isfinite(logits.grad).all()
    with pytest.raises(ConfigError, match="tversky"):
        CombinedLoss({"tversky": 1.0})


# ---------------------------------------------------------------- on-device data path
def test_batched_augmentation_matches_torch_rot90_and_flip():
    image = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    mask = image[:, 0].long()
    for code in range(8):
        out, out_mask = augment_batch(image, mask, torch.full((2,), code))
        expected = torch.rot90(image, code % 4, dims=(2, 3))
        expected = expected.flip(-1) if code >= 4 else expected
        assert torch.equal(out, expected), code
        assert torch.equal(out_mask, expected[:, 0].long())
    mixed, _ = augment_batch(image, mask, torch.tensor([1, 6]))
    assert torch.equal(mixed[0], torch.rot90(image[0], 1, dims=(1, 2)))
    assert torch.equal(mixed[1], image[1].flip(-2))  # code 6 is the up-down flip
    assert set(AUGMENT_CODES["flips"]) == {0, 2, 4, 6}


def test_normalize_batch_computes_indices_and_zeroes_nodata():
    raw = torch.rand(1, 13, 4, 4) * 1000 + 100
    raw[0, 0, 0, 0] = float("nan")
    channels = parse_bands("blue,ndvi")
    out = normalize_batch(raw, channels, parse_bands("all"), torch.tensor([100.0, 0.0]), torch.tensor([10.0, 1.0]))
    assert out[0, 0, 0, 0] == 0 and torch.isfinite(out).all()
    assert out[0, 0, 1, 1] == pytest.approx(((raw[0, 0, 1, 1] - 100) / 10).item())
    nir, red = raw[0, 6, 2, 2], raw[0, 2, 2, 2]
    assert out[0, 1, 2, 2] == pytest.approx(((nir - red) / (nir + red)).item(), rel=1e-5)


def test_device_batches_are_seeded_and_sharded(synth_root):
    dm = SmallMinesDataModule(synth_root, bands="official6")
    arrays = dm.load("train")
    make = lambda rank, world, epoch: DeviceBatches(arrays, 4, shuffle=True, augment="dihedral", seed=1,  # noqa: E731
                                                     epoch=lambda: epoch, rank=rank, world_size=world)
    first = [b["aug"].tolist() for b in make(0, 1, 0)]
    assert first == [b["aug"].tolist() for b in make(0, 1, 0)]
    assert first != [b["aug"].tolist() for b in make(0, 1, 1)]
    def fingerprints(batches):
        return [float(x) for b in batches for x in b["image"].nan_to_num().flatten(1).sum(1)]

    shards = [fingerprints(make(r, 2, 0)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(arrays) // 2
    assert not set(shards[0]) & set(shards[1])
    assert len(make(0, 1, 0)) == -(-len(arrays) // 4)


def test_statistics_come_from_the_train_split_only(synth_root):
    dm = SmallMinesDataModule(synth_root, bands="s1,dem,ndvi")
    dm.setup("fit")
    reference = SmallMinesDS(synth_root, split="train", bands="s1,dem,ndvi").compute_stats()
    assert np.allclose(dm.stats.mean, reference.mean, rtol=1e-5) and np.allclose(dm.stats.std, reference.std, rtol=1e-4)
    everything = SmallMinesDS(synth_root, split=None, bands="s1,dem,ndvi").compute_stats()
    assert not np.allclose(dm.stats.mean, everything.mean, rtol=1e-6)


# ---------------------------------------------------------------- fit, resume, fine-tune
@pytest.fixture(scope="module")
def run(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    return fit("tiny", [f"data.root={synth_root}", *FAST], out=out)


def test_fit_writes_the_run_folder_contract(run):
    d = run.run_dir
    for name in ("config.yaml", "stats.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt", "model.pt",
                 "logs/metrics.csv", "train_summary.json"):
        assert (d / name).is_file(), name
    with open(d / "logs" / "metrics.csv") as fh:
        columns = set(csv.DictReader(fh).fieldnames)
    assert {"epoch", "step", "train_loss", "val_loss", "val_iou_mining", "val_miou"} <= columns
    summary = json.loads((d / "train_summary.json").read_text())
    for key in ("seconds", "epochs", "patches_per_s", "params", "best_epoch", "best_score", "threshold", "split_hash"):
        assert key in summary, key
    assert summary["epochs"] == 2
    for path in (d / "model.pt", d / "checkpoints" / "best.ckpt"):
        network, card = load_model(path)
        assert card.threshold == run.card.threshold and card.channels == parse_bands("all")
        assert card.config["train"]["epochs"] == 2 and card.stats.channels == card.channels
    assert json.loads((d / "stats.json").read_text())["channels"] == list(parse_bands("all"))


def test_fit_is_reproducible_and_resumes(run, synth_root, tmp_path):
    with pytest.raises(ConfigError, match="--resume"):
        fit("tiny", [f"data.root={synth_root}", *FAST], out=run.run_dir)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        fit("tiny", [f"data.root={synth_root}", *FAST], out=tmp_path / "empty", resume=True)
    # same seed, same weights: a second run from scratch matches the first
    again = fit("tiny", [f"data.root={synth_root}", *FAST], out=tmp_path / "again")
    for a, b in zip(run.network.state_dict().values(), again.network.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    resumed = fit("tiny", [f"data.root={synth_root}", *FAST, "train.epochs=3"], out=tmp_path / "again", resume=True)
    assert resumed.summary["resumed_from_epoch"] == 2 and resumed.summary["epochs"] == 3
    with open(tmp_path / "again" / "logs" / "metrics.csv") as fh:
        epochs = {int(float(r["epoch"])) for r in csv.DictReader(fh) if r["epoch"]}
    assert epochs == {0, 1, 2}


def _falling_val_iou(monkeypatch):
    """Make validation mining IoU fall every epoch, so the best epoch (0) is never the last one."""
    from smallmines.training.task import SegmentationTask

    original = SegmentationTask._log_epoch

    def log_epoch(self, stage):
        if stage != "val":
            return original(self, stage)
        metric = self.metrics["val_metrics"]
        values = metric.compute()
        metric.reset()
        values["iou_mining"] = torch.tensor(1.0 / (self.current_epoch + 1))
        for name, value in values.items():
            self.log(f"val_{name}", value)

    monkeypatch.setattr(SegmentationTask, "_log_epoch", log_epoch)


def _network_state(path):
    blob = torch.load(path, map_location="cpu", weights_only=False)
    return {k[len("network."):]: v for k, v in blob["state_dict"].items() if k.startswith("network.")}


def test_last_checkpoint_is_the_last_epoch_and_resume_continues_from_it(synth_root, tmp_path, monkeypatch):
    _falling_val_iou(monkeypatch)
    out = tmp_path / "falling"
    result = fit("tiny", [f"data.root={synth_root}", *FAST, "train.epochs=3"], out=out)
    ckpts = out / "checkpoints"
    epoch = lambda path: torch.load(path, map_location="cpu", weights_only=False)["epoch"]  # noqa: E731
    assert result.summary["best_epoch"] == 0 and epoch(ckpts / "best.ckpt") == 0
    assert epoch(ckpts / "last.ckpt") == 2  # the last epoch, not a copy of the best one
    # the final weights are kept beside the best ones, as a model file with its own threshold
    final_net, final_card = load_model(out / "model-final.pt")
    last = _network_state(ckpts / "last.ckpt")
    assert all(torch.equal(v, last[k]) for k, v in final_net.state_dict().items())
    best_net, _ = load_model(out / "model.pt")
    assert any(not torch.equal(v, best_net.state_dict()[k]) for k, v in final_net.state_dict().items())
    assert result.summary["final"]["path"] == "model-final.pt" and 0 < final_card.threshold < 1
    resumed = fit("tiny", [f"data.root={synth_root}", *FAST, "train.epochs=4"], out=out, resume=True)
    assert resumed.summary["resumed_from_epoch"] == 3 and resumed.summary["epochs"] == 4
    assert epoch(ckpts / "last.ckpt") == 3


def test_max_time_stops_training_and_is_reported(synth_root, tmp_path):
    with pytest.raises(ConfigError, match="max_time"):
        load_config("tiny", ["train.max_time=soon"])
    result = fit("tiny", [f"data.root={synth_root}", *FAST, "train.epochs=500", "train.max_time=2s"],
                 out=tmp_path / "timed")
    assert result.summary["time_limited"] and result.summary["max_time"] == "2s"
    assert result.summary["epochs"] < 500 and (tmp_path / "timed" / "model.pt").is_file()


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_cpu_when_the_cpu_has_it(synth_root, tmp_path, monkeypatch, caplog, native):
    import smallmines.training.trainer as trainer

    monkeypatch.setattr(trainer, "cpu_has_bf16", lambda: native)
    with caplog.at_level("WARNING", logger="smallmines.training.trainer"):
        result = fit("tiny", [f"data.root={synth_root}", *FAST, "train.epochs=1", "train.precision=bf16-mixed"],
                     out=tmp_path / f"bf16-{native}")
    assert result.summary["precision"] == ("bf16-mixed" if native else "32-true")
    assert native or "training in 32-true" in caplog.text
    with open(tmp_path / f"bf16-{native}" / "logs" / "metrics.csv") as fh:
        losses = [float(r["train_loss"]) for r in csv.DictReader(fh) if r.get("train_loss")]
    assert losses and all(np.isfinite(losses))
    assert all(torch.isfinite(v).all() for v in result.network.state_dict().values() if v.is_floating_point())


def test_faithful_preset_needs_local_imagenet_weights(synth_root, tmp_path):
    out = tmp_path / "faithful"
    with pytest.raises(ConfigError, match="encoder_weights=PATH"):
        fit("official-unet-r50-6band", [f"data.root={synth_root}"], out=out)
    assert not out.exists()  # refused before anything is written


def test_fine_tune_evaluates_before_and_after(run, synth_root, tmp_path):
    result = fit("tiny", [f"data.root={synth_root}", "train.epochs=1", f"model.init={run.model_path}",
                          "model.freeze_encoder=true", "model.stats=keep"], out=tmp_path / "ft")
    assert result.card.stats == run.card.stats and result.card.model_args == run.card.model_args
    before, after = result.transfer["before"], result.transfer["after"]
    assert before.overall == pytest.approx(result.summary["transfer"]["before"], nan_ok=True)
    assert (tmp_path / "ft" / "evaluation" / "init" / "test" / "metrics.json").is_file()
    assert (tmp_path / "ft" / "evaluation" / "test" / "metrics.json").is_file()
    assert len(before.per_patch) == len(after.per_patch)
    init_encoder = load_model(run.model_path)[0].encoder.state_dict()
    for key, value in result.network.encoder.state_dict().items():
        assert torch.equal(value, init_encoder[key]), key


# ---------------------------------------------------------------- CLI and benchmark
def test_cli_train_evaluate_benchmark(synth_root, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(app, ["train", "tiny", "--data", str(synth_root), "-o", str(out), "--epochs", "1",
                              "--set", "model.args={widths: [8, 16]}", "--batch-size", "8"])
    assert res.exit_code == 0, res.output
    assert "trained tiny" in res.output
    res = runner.invoke(app, ["evaluate", str(out / "model.pt"), "--split", "test"])
    assert res.exit_code == 0, res.output
    assert (out / "evaluation" / "test" / "per_patch.csv").is_file()
    res = runner.invoke(app, ["train", "no-such-preset", "--data", str(synth_root)])
    assert res.exit_code == 1 and "neither a preset" in res.output
    assert "official-prithvi-600" in runner.invoke(app, ["train", "--list-presets"]).output
    bench = tmp_path / "bench"
    res = runner.invoke(app, ["benchmark", "tiny", "pixel-lgbm", "--data", str(synth_root), "--seeds", "0,1",
                              "-o", str(bench), "--set", "train.epochs=1", "--set", "train.batch_size=8",
                              "--max-time", "30m"])
    assert res.exit_code == 0, res.output
    tiny_run = json.loads(next(bench.rglob("tiny*/**/train_summary.json")).read_text())
    assert tiny_run["max_time"] == "30m" and not tiny_run["time_limited"]
    bad = runner.invoke(app, ["benchmark", "tiny", "--data", str(synth_root), "-o", str(tmp_path / "b2"),
                              "--max-time", "tomorrow"])
    assert bad.exit_code == 1 and "max_time" in bad.output
    assert "| Config | Model | Bands | Params | Train time | Mining IoU" in (bench / "benchmark.md").read_text()
    with open(bench / "benchmark.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["config"] for r in rows] == ["tiny", "pixel-lgbm"] and all(r["seeds"] == "2" for r in rows)
    with open(bench / "runs.csv") as fh:
        assert len({r["split_hash"] for r in csv.DictReader(fh)}) == 1
