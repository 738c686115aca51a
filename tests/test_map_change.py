"""``smallmines map --before A --after B --model CHANGE_MODEL``: a bi-temporal model maps two scenes (issue 12).

Two 192 x 224 scenes on one grid (years in the file names) and tiny change models; windows of 128
with 64 of overlap and blocks of 192, so the run crosses window and block boundaries.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import torch
from _scene_data import card_for, save_tiny, scene_array, write_stack
from rasterio.transform import from_origin
from torch import nn
from typer.testing import CliRunner

from smallmines.bands import BAND_NAMES, IMAGE_NODATA, compute_channels
from smallmines.cli import app
from smallmines.data.pairs import date_channels
from smallmines.data.stats import compute_stats
from smallmines.data.windows import pad_to_multiple, pad_window
from smallmines.errors import ChangeError, ConfigError
from smallmines.legend import CHANGE_NODATA, change_colormap
from smallmines.mapping.bitemporal import map_change_raster
from smallmines.mapping.mapper import map_scene
from smallmines.models.registry import ModelCard, load_model, register_model

H, W = 192, 224
TILING = {"window": 128, "overlap": 64, "block": 192}
CHANNELS = (*BAND_NAMES, "ndvi")


@register_model("_test_change_conv3")
def _change_conv3(in_channels: int, channels: tuple[str, ...] = (), width: int = 8) -> nn.Module:
    """Three 3x3 convolutions to 4 change classes: a receptive field of 7 pixels, so tiled output is exact."""
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 4, 3, padding=1))


def _change_card(a: np.ndarray, b: np.ndarray, model: str, args: dict) -> ModelCard:
    raw = [np.where(x == IMAGE_NODATA, np.nan, x) for x in (a, b)]
    one = compute_stats([compute_channels(r, CHANNELS) for r in raw], CHANNELS, source="test scenes")
    stats = type(one)(date_channels(CHANNELS), one.mean * 2, one.std * 2, one.count, one.source)
    return ModelCard(model, args, date_channels(CHANNELS), stats, 0.5)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("map_change")
    a, b = scene_array(H, W, seed=1), scene_array(H, W, seed=2)
    b[:, :16, :24] = IMAGE_NODATA  # nodata in the later scene only
    return {
        "root": root, "a": a, "b": b,
        "before": write_stack(root / "scene_2016.tif", a),
        "after": write_stack(root / "scene_2022.tif", b),
        "conv": save_tiny(root / "conv.pt", _change_card(a, b, "_test_change_conv3", {})),
        "siamese": save_tiny(root / "siamese.pt", _change_card(a, b, "siamese-lite", {"widths": [4, 8]})),
        "single": save_tiny(root / "single.pt", card_for(a, CHANNELS)),
    }


def _whole_image(model: Path, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Reference change classes: both whole scenes through the network at once."""
    network, card = load_model(model)
    xs, valid = [], np.ones((H, W), bool)
    mean, std = card.stats.arrays()
    for x in (a, b):
        raw = np.where(x == IMAGE_NODATA, np.float32(np.nan), x)
        channels = compute_channels(raw, CHANNELS)
        valid &= np.isfinite(channels).all(axis=0)
        xs.append(channels)
    x = (np.concatenate(xs) - mean) / std
    x[~np.isfinite(x)] = 0
    x = pad_window(x.astype(np.float32), pad_to_multiple(H), pad_to_multiple(W))
    with torch.inference_mode():
        classes = network(torch.from_numpy(x)[None])[0, :, :H, :W].argmax(0).numpy()
    return np.where(valid, classes, CHANGE_NODATA).astype(np.uint8)


def test_change_raster_equals_whole_image(scenes: dict) -> None:
    result = map_change_raster(scenes["conv"], scenes["before"], scenes["after"], scenes["root"] / "conv", **TILING)
    with rasterio.open(result.change_tif) as src:
        change = src.read(1)
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and src.nodata == CHANGE_NODATA
    np.testing.assert_array_equal(change, _whole_image(scenes["conv"], scenes["a"], scenes["b"]))
    assert (change[:16, :24] == CHANGE_NODATA).all()
    assert (result.year_a, result.year_b) == (2016, 2022)
    assert result.summary["timing"]["blocks"] > 1
    assert set(result.summary["band_check"]) == {"before", "after"}


def test_map_change_writes_a_change_folder_the_report_reads(scenes: dict, tmp_path: Path) -> None:
    from smallmines.analysis.change import map_change
    from smallmines.report.build import build_report

    out = tmp_path / "change"
    result = map_change(scenes["siamese"], scenes["before"], scenes["after"], out, figures=False, **TILING)
    assert sorted(p.name for p in out.iterdir()) == ["areas.csv", "change.gpkg", "change.tif", "change.tif.aux.xml",
                                                     "summary.json"]  # .aux.xml: the category names for GIS
    with rasterio.open(result.change_tif) as src:
        assert src.colormap(1)[1] == change_colormap()[1] and src.colormap(1)[3] == change_colormap()[3]
        assert "1=new mining" in src.tags()["classes"] and src.tags()["year_b"] == "2022"
        assert src.crs == "EPSG:32630" and src.transform == from_origin(600_000.0, 700_000.0, 10, 10)
        change = src.read(1)
    frame = pyogrio.read_dataframe(result.polygons, layer="change")
    assert set(frame.columns) >= {"id", "class", "code", "area_ha"} and frame.geometry.is_valid.all()
    counted = {c: int((change == c).sum()) * 100 / 1e4 for c in (1, 2, 3)}
    for code, ha in counted.items():
        assert frame.loc[frame["code"] == code, "area_ha"].sum() == pytest.approx(ha)
    summary = json.loads(result.summary_json.read_text())
    assert (summary["year_a"], summary["year_b"]) == (2016, 2022)
    assert summary["inputs"]["method"] == "bi-temporal model" and summary["mapping"]["model"]["architecture"]
    assert summary["classes"]["new"]["area_ha"] == pytest.approx(counted[1])
    assert summary["run_id"]
    with pytest.raises(ConfigError, match="give --overwrite"):  # a finished folder is not replaced silently
        map_change(scenes["siamese"], scenes["before"], scenes["after"], out, overwrite=False, **TILING)
    with pytest.raises(ChangeError, match="zones file not found"):  # refused before the folder is touched
        map_change(scenes["siamese"], scenes["before"], scenes["after"], out, zones=tmp_path / "none.gpkg", **TILING)
    assert json.loads(result.summary_json.read_text())["run_id"] == summary["run_id"]
    html = build_report(out, tmp_path / "report.html")
    text = html.read_text(encoding="utf-8")
    assert 'id="change"' in text and "new mining" in text
    from smallmines.analysis.sampling import draw_sample

    sample = draw_sample(out, 20, out_dir=tmp_path / "sample")  # the Olofsson workflow reads the folder alike
    assert len(sample.points) >= 20 and sample.gpkg.is_file()


def test_wrong_models_and_grids_get_one_clear_line(scenes: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="single-date model"):
        map_change_raster(scenes["single"], scenes["before"], scenes["after"], tmp_path / "a", **TILING)
    with pytest.raises(ConfigError, match="bi-temporal change model"):
        map_scene(scenes["conv"], tmp_path / "b", stacked=scenes["before"], **TILING)
    shifted = write_stack(tmp_path / "shifted_2022.tif", scenes["b"],
                          transform=from_origin(600_010.0, 700_000.0, 10, 10))
    with pytest.raises(ConfigError, match=r"not on one grid .*gdalwarp") as caught:
        map_change_raster(scenes["conv"], scenes["before"], shifted, tmp_path / "c", **TILING)
    assert "scene_2016.tif" in str(caught.value) and "shifted_2022.tif" in str(caught.value)
    smaller = write_stack(tmp_path / "small_2022.tif", scenes["b"][:, :160])
    with pytest.raises(ConfigError, match="size 224 x 192 vs 224 x 160"):
        map_change_raster(scenes["conv"], scenes["before"], smaller, tmp_path / "d", **TILING)
    with pytest.raises(ConfigError, match="must be after"):
        map_change_raster(scenes["conv"], scenes["after"], scenes["before"], tmp_path / "e", **TILING)

    cases = {
        "single-date model": ["map", "--before", str(scenes["before"]), "--after", str(scenes["after"]),
                              "--model", str(scenes["single"]), "-o", str(tmp_path / "f")],
        "not on one grid": ["map", "--before", str(scenes["before"]), "--after", str(shifted),
                            "--model", str(scenes["conv"]), "-o", str(tmp_path / "g")],
        "two scenes, not one": ["map", str(scenes["conv"]), str(scenes["before"]), "-o", str(tmp_path / "h")],
        "give both --before": ["map", "--before", str(scenes["before"]), "--model", str(scenes["conv"])],
        "--block -5: need at least 1": ["map", "--before", str(scenes["before"]), "--after", str(scenes["after"]),
                                        "--model", str(scenes["conv"]), "--block", "-5", "-o", str(tmp_path / "i")],
    }
    for message, args in cases.items():
        res = CliRunner().invoke(app, args)
        assert res.exit_code != 0, message
        assert message in " ".join(res.output.split()) and "Traceback" not in res.output, res.output


def test_cli_maps_change(scenes: dict, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["map", "--before", str(scenes["before"]), "--after", str(scenes["after"]),
                                   "--model", str(scenes["conv"]), "-o", str(out), "--window", "128",
                                   "--overlap", "64", "--year-a", "2017", "--year-b", "2021"])
    assert res.exit_code == 0, res.output
    assert "new mining" in res.output and (out / "change.gpkg").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["year_a"], summary["year_b"]) == (2017, 2021)
    assert not (out / ".work").exists() and not (out / ".smallmines.lock").exists()
    again = CliRunner().invoke(app, ["map", "--before", str(scenes["before"]), "--after", str(scenes["after"]),
                                     "--model", str(scenes["single"]), "-o", str(out)])
    assert again.exit_code != 0 and (out / "summary.json").is_file()  # a refused run leaves the folder as it was


def test_onnx_change_model_maps_like_pytorch(scenes: dict, tmp_path: Path) -> None:
    from smallmines.models.export import export_onnx

    exported = export_onnx(scenes["conv"], tmp_path / "conv.onnx")
    assert exported.max_abs_diff < 1e-4  # every change class's probability, not a 2-class formula
    torch_run = map_change_raster(scenes["conv"], scenes["before"], scenes["after"], tmp_path / "t", **TILING)
    onnx_run = map_change_raster(None, scenes["before"], scenes["after"], tmp_path / "o", onnx=exported.path, **TILING)
    with rasterio.open(torch_run.change_tif) as a, rasterio.open(onnx_run.change_tif) as b:
        assert (a.read(1) == b.read(1)).mean() > 0.999
    assert onnx_run.summary["backend"]["engine"] == "onnxruntime"
