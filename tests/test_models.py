"""Model registry, model files, fusion, Prithvi behind its extra, the LightGBM network wrapper."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

from smallmines.bands import parse_bands
from smallmines.data.pairs import date_channels
from smallmines.data.stats import BandStats
from smallmines.errors import CheckpointError, ConfigError, OptionalDependencyError
from smallmines.models.change import is_change_model
from smallmines.models.networks import is_optical, mining_probability
from smallmines.models.pixel import PixelGBM
from smallmines.models.registry import (
    MODELS,
    ModelCard,
    build_model,
    count_parameters,
    freeze_encoder,
    load_model,
    register_model,
    save_model,
)
from smallmines.training.config import list_presets, load_config

ALL13 = parse_bands("all")


def _stats(channels):
    return BandStats(tuple(channels), (0.0,) * len(channels), (1.0,) * len(channels))


@pytest.mark.parametrize("arch", ["unet", "unetplusplus", "deeplabv3plus", "fpn", "segformer", "upernet", "pspnet",
                                  "manet", "linknet"])
def test_smp_architectures_give_two_class_logits(arch):
    net = build_model(arch, ALL13, encoder="resnet18").eval()
    with torch.no_grad():
        assert net(torch.randn(1, 13, 64, 64)).shape == (1, 2, 64, 64)


def test_unknown_model_and_bad_arguments_name_the_choices():
    with pytest.raises(ConfigError, match="unet"):
        build_model("resnet-unet", ALL13)
    with pytest.raises(ConfigError, match="no_such_encoder"):
        build_model("unet", ALL13, encoder="no_such_encoder")


def test_lite_unet_keeps_full_resolution_and_freezes():
    net = build_model("unet-lite", ALL13, widths=[8, 16, 32])
    assert net(torch.randn(2, 13, 32, 32)).shape == (2, 2, 32, 32)
    freeze_encoder(net)
    net.train()
    assert not any(p.requires_grad for p in net.encoder.parameters())
    assert not net.encoder.training and net.decoder.training


def test_twostream_routes_channels_by_sensor():
    channels = parse_bands("s2,ndvi,s1,dem,vvvh")
    assert [is_optical(c) for c in ("ndvi", "vvvh", "dem", "swir2")] == [True, False, False, True]
    net = build_model("twostream", channels, encoder="resnet18", aux_encoder="resnet18")
    assert net.optical_index.tolist() == list(range(11))
    assert net.aux_index.tolist() == [11, 12, 13, 14]
    assert net(torch.randn(2, len(channels), 64, 64)).shape == (2, 2, 64, 64)
    # the radar stream matters: changing only S1/DEM changes the output
    net.eval()
    x = torch.randn(1, len(channels), 64, 64)
    y = x.clone()
    y[:, 11:] += 3
    with torch.no_grad():
        assert not torch.allclose(net(x), net(y))
    freeze_encoder(net)
    net.train()
    assert not any(p.requires_grad for p in net.aux_encoder.parameters())
    assert not net.encoder.training and net.decoder.training


def test_twostream_needs_both_modalities():
    with pytest.raises(ConfigError, match="radar/terrain"):
        build_model("twostream", parse_bands("s2"))


def test_encoder_weights_come_from_a_local_file_and_rgb_conv_is_adapted(tmp_path):
    rgb = build_model("unet", parse_bands("rgb"), encoder="resnet18")
    path = tmp_path / "enc.pth"
    torch.save(rgb.encoder.state_dict(), path)
    net = build_model("unet", ALL13, encoder="resnet18", encoder_weights=str(path))
    expected = rgb.encoder.conv1.weight.mean(dim=1, keepdim=True).repeat(1, 13, 1, 1) * (3 / 13)
    assert torch.allclose(net.encoder.conv1.weight, expected)
    assert torch.equal(net.encoder.layer1[0].conv1.weight, rgb.encoder.layer1[0].conv1.weight)
    with pytest.raises(CheckpointError, match="never downloaded"):
        build_model("unet", ALL13, encoder="resnet18", encoder_weights=str(tmp_path / "missing.pth"))


def test_mining_probability_is_sigmoid_of_the_margin():
    logits = torch.randn(2, 2, 4, 4)
    assert torch.allclose(mining_probability(logits), torch.sigmoid(logits[:, 1] - logits[:, 0]), atol=1e-6)


def test_model_file_round_trip_and_lightning_prefix(tmp_path):
    net = build_model("unet", ALL13, encoder="resnet18").eval()
    card = ModelCard("unet", {"encoder": "resnet18"}, ALL13, _stats(ALL13), threshold=0.37, config={"name": "x"})
    loaded, card2 = load_model(save_model(tmp_path / "model.pt", net, card))
    x = torch.randn(1, 13, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x), loaded(x))
    assert card2.threshold == 0.37 and card2.channels == ALL13 and card2.stats == card.stats
    ckpt = tmp_path / "best.ckpt"
    torch.save({"smallmines": card.to_dict(), "state_dict": {f"network.{k}": v for k, v in net.state_dict().items()},
                "epoch": 3}, ckpt)
    with torch.no_grad():
        assert torch.allclose(load_model(ckpt)[0](x), net(x))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_model(tmp_path / "bad.pt")
    torch.save({"state_dict": {}}, tmp_path / "nocard.pt")
    with pytest.raises(CheckpointError, match="no smallmines model card"):
        load_model(tmp_path / "nocard.pt")


def test_pixel_gbm_is_a_network_and_survives_save_load(tmp_path):
    import lightgbm

    channels = parse_bands("s2,ndvi")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, len(channels))).astype(np.float32)
    y = (x[:, 3] + 0.1 * rng.normal(size=2000) > 0.5).astype(int)
    net = build_model("lightgbm", channels, num_leaves=7)
    with pytest.raises(CheckpointError, match="not been fitted"):
        net(torch.zeros(1, len(channels), 4, 4))
    net.booster = lightgbm.train({"objective": "binary", "num_leaves": 7, "verbose": -1}, lightgbm.Dataset(x, y), 20)
    image = torch.from_numpy(rng.normal(size=(2, len(channels), 8, 8)).astype(np.float32))
    logits = net(image)
    assert logits.shape == (2, 2, 8, 8)
    expected = net.booster.predict(image.permute(0, 2, 3, 1).reshape(-1, len(channels)).numpy())
    assert np.allclose(mining_probability(logits).reshape(-1).numpy(), expected, atol=1e-5)
    assert count_parameters(net) > 20
    card = ModelCard("lightgbm", {"num_leaves": 7}, channels, _stats(channels))
    loaded, _ = load_model(save_model(tmp_path / "gbm.pt", net, card))
    assert isinstance(loaded, PixelGBM)
    assert torch.allclose(loaded(image), logits)


def test_prithvi_without_terratorch_says_how_to_install(monkeypatch):
    if importlib.util.find_spec("terratorch") is not None:
        pytest.skip("terratorch is installed")
    with pytest.raises(OptionalDependencyError, match=r"smallmines\[foundation\]"):
        build_model("prithvi", parse_bands("official6"), size=300)


def test_prithvi_builds_the_authors_setup_through_terratorch(monkeypatch, tmp_path):
    calls = {}

    class Output:
        def __init__(self, output):
            self.output = output

    class FakeModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Conv2d(6, 4, 1)
            self.decoder = torch.nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return Output(self.decoder(self.encoder(x)))

    class FakeFactory:
        def build_model(self, **kwargs):
            calls.update(kwargs)
            return FakeModel()

    fake = types.ModuleType("terratorch")
    fake_models = types.ModuleType("terratorch.models")
    fake_models.EncoderDecoderFactory = FakeFactory
    fake.models = fake_models
    monkeypatch.setitem(sys.modules, "terratorch", fake)
    monkeypatch.setitem(sys.modules, "terratorch.models", fake_models)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "terratorch" else None)
    weights = tmp_path / "Prithvi_EO_V2_600M.pt"
    weights.write_bytes(b"")
    net = build_model("prithvi", parse_bands("official6"), size=600, weights=str(weights))
    assert calls["backbone"] == "prithvi_eo_v2_600" and calls["decoder"] == "UperNetDecoder"
    assert calls["necks"][0] == {"name": "SelectIndices", "indices": [7, 15, 23, 31]}
    assert calls["backbone_bands"] == ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"]
    assert calls["backbone_pretrained"] is True and calls["backbone_ckpt_path"] == str(weights)
    assert net(torch.randn(1, 6, 16, 16)).shape == (1, 2, 16, 16)
    freeze_encoder(net)
    assert not any(p.requires_grad for p in net.encoder.parameters())
    with pytest.raises(CheckpointError, match="not found"):
        build_model("prithvi", parse_bands("official6"), weights=str(tmp_path / "missing.pt"))


def test_every_preset_resolves_and_its_network_builds():
    presets = list_presets()
    for name in ("official-unet-r50-6band", "official-unet-r50-6band-unfrozen", "official-prithvi-300",
                 "official-prithvi-600", "unet-r34-all13", "twostream-r34", "pixel-lgbm", "tiny"):
        assert name in presets and presets[name]
    for name in presets:
        config = load_config(name)
        if config.model.name == "prithvi":
            continue
        channels = parse_bands(config.data.bands)
        if is_change_model(config.model.name):  # two dates: a:X..., b:X...
            channels = date_channels(channels)
        args = dict(config.model.args)
        if args.get("encoder_weights") == "imagenet":  # the faithful recipe: a local file must be given
            with pytest.raises(ConfigError, match="encoder_weights=PATH"):
                build_model(config.model.name, channels, **args)
            args["encoder_weights"] = None
        net = build_model(config.model.name, channels, **args)
        assert count_parameters(net) >= 0, name
    official = load_config("official-unet-r50-6band")
    assert official.model.freeze_encoder and not load_config("official-unet-r50-6band-unfrozen").model.freeze_encoder
    # their script keeps TerraTorch's pretrained: True (ImageNet, frozen) and its freeze leaves batch norm training
    assert official.model.args["encoder_weights"] == "imagenet" and official.model.frozen_batch_norm == "train"
    scratch = load_config("official-unet-r50-6band-scratch")
    assert scratch.model.args["encoder_weights"] is None and scratch.model.freeze_encoder
    assert parse_bands(official.data.bands) == parse_bands("official6")
    assert official.loss.class_weights == [0.1, 0.9] and official.optimizer.lr == 1e-4
    assert official.train.batch_size == 4 and official.train.epochs == 100 and official.train.augment == "flips"
    assert load_config("official-prithvi-600").model.args["size"] == 600


def test_registry_is_extensible():
    @register_model("constant-test")
    def build(in_channels, channels, **kw):
        return torch.nn.Conv2d(in_channels, 2, 1)

    try:
        assert build_model("constant-test", ALL13)(torch.zeros(1, 13, 4, 4)).shape == (1, 2, 4, 4)
    finally:
        MODELS.pop("constant-test")


@pytest.mark.parametrize("mode", ["fixed", "train"])
def test_frozen_encoder_batch_norm_is_fixed_or_follows_the_batches(mode):
    torch.manual_seed(0)
    net = build_model("unet", parse_bands("official6"), encoder="resnet18")
    freeze_encoder(net, mode)
    net.train()
    norms = [m for m in net.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in norms]
    weights = [p.clone() for p in net.encoder.parameters()]
    net(torch.randn(2, 6, 64, 64) * 3 + 1).sum().backward()
    changed = any(not torch.equal(a, m.running_mean) for a, m in zip(before, norms, strict=True))
    assert changed == (mode == "train")  # TerraTorch's freeze: statistics move, weights do not
    assert all(p.grad is None and not p.requires_grad for p in net.encoder.parameters())
    assert all(torch.equal(a, b) for a, b in zip(weights, net.encoder.parameters(), strict=True))
    with pytest.raises(ConfigError, match="frozen_batch_norm"):
        freeze_encoder(build_model("unet", parse_bands("official6"), encoder="resnet18"), "half")


def test_imagenet_first_convolution_is_tiled_like_smp_and_not_needed_to_reload(tmp_path):
    import segmentation_models_pytorch as smp

    rgb = smp.encoders.get_encoder("resnet18", in_channels=3, weights=None)
    torch.save(rgb.state_dict(), tmp_path / "resnet18-imagenet.pth")
    channels = parse_bands("official6")
    original = rgb.state_dict()["conv1.weight"]
    tiled = build_model("unet", channels, encoder="resnet18", encoder_weights=str(tmp_path / "resnet18-imagenet.pth"),
                        first_conv="tile")
    expected = original[:, [i % 3 for i in range(6)]] * 0.5
    assert torch.allclose(tiled.encoder.conv1.weight, expected)
    mean = build_model("unet", channels, encoder="resnet18", encoder_weights=str(tmp_path / "resnet18-imagenet.pth"))
    assert torch.allclose(mean.encoder.conv1.weight[:, 0], original.mean(1) * 0.5, atol=1e-6)
    card = ModelCard("unet", {"encoder": "resnet18", "encoder_weights": str(tmp_path / "resnet18-imagenet.pth"),
                              "first_conv": "tile"}, channels, BandStats(channels, (0.0,) * 6, (1.0,) * 6), 0.5, {})
    save_model(tmp_path / "model.pt", tiled, card)
    (tmp_path / "resnet18-imagenet.pth").unlink()  # a model file loads where the initial weights do not exist
    loaded, _ = load_model(tmp_path / "model.pt")
    assert torch.equal(loaded.encoder.conv1.weight, tiled.encoder.conv1.weight)
