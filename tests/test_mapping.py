"""Whole-scene mapping end to end on small synthetic scenes with tiny models.

The scene is 256 x 320 pixels with a nodata corner; windows are 128 pixels with 64 of overlap and
blocks of two by two windows (four blocks), so every test crosses window and block boundaries in both directions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import torch
from _scene_data import TINY_UNET, card_for, save_tiny, scene_array, write_raster, write_separate, write_stack
from typer.testing import CliRunner

from smallmines.bands import BAND_NAMES, IMAGE_NODATA, compute_channels, parse_bands
from smallmines.cli import app
from smallmines.data.windows import pad_to_multiple, pad_window
from smallmines.errors import BandError, SceneMismatchError
from smallmines.mapping.mapper import map_scene
from smallmines.models.registry import load_model

H, W = 256, 320
TILING = {"window": 128, "overlap": 64, "block": 192, "min_area_ha": 0.0}
CHANNELS = (*BAND_NAMES, "ndvi")


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    image = scene_array(H, W, seed=0)
    image[:, :20, :30] = IMAGE_NODATA
    return image


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, data: np.ndarray) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mapping")
    clean = scene_array(H, W, seed=0)  # the card's statistics come from the scene itself
    return {
        "root": root,
        "stacked": write_stack(root / "scene.tif", data),
        "conv": save_tiny(root / "conv.pt", card_for(clean, CHANNELS)),
        "unet": save_tiny(root / "unet.pt", card_for(clean, CHANNELS, "unet", TINY_UNET)),
    }


@pytest.fixture(scope="module")
def base(files: dict[str, Path]) -> object:
    return map_scene(files["conv"], files["root"] / "base", stacked=files["stacked"], **TILING)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def _whole_image(model: Path, data: np.ndarray) -> np.ndarray:
    """Reference: the whole scene through the network at once (padded like an edge window)."""
    network, card = load_model(model)
    raw = np.where(data == IMAGE_NODATA, np.float32(np.nan), data)
    channels = compute_channels(raw, card.channels)
    valid = np.isfinite(channels).all(axis=0)
    mean, std = card.stats.arrays()
    x = (channels - mean) / std
    x[~np.isfinite(x)] = 0
    x = pad_window(x, pad_to_multiple(H), pad_to_multiple(W))
    with torch.inference_mode():
        p = torch.softmax(network(torch.from_numpy(x)[None]), 1)[0, 1, :H, :W].numpy()
    return np.where(valid, p, -1.0)


def test_outputs_are_georeferenced_cogs(base: object, files: dict[str, Path]) -> None:
    with rasterio.open(files["stacked"]) as src:
        crs, transform = src.crs, src.transform
    for path, dtype, nodata in ((base.probability, "float32", -1.0), (base.mines, "uint8", 255)):
        with rasterio.open(path) as out:
            assert out.crs == crs and out.transform == transform and out.shape == (H, W)
            assert out.dtypes[0] == dtype and out.nodata == nodata
            assert out.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert out.compression.name == "deflate"
    probability, mines = _read(base.probability), _read(base.mines)
    assert (probability[:20, :30] == -1).all() and (mines[:20, :30] == 255).all()
    valid = probability != -1
    assert valid.sum() == H * W - 600 and (probability[valid] >= 0).all() and (probability[valid] <= 1).all()
    assert set(np.unique(mines[valid])) <= {0, 1}
    assert pyogrio.read_info(base.polygons, layer="mines")["crs"] == "EPSG:32630"
    summary = json.loads(base.summary_path.read_text())
    assert summary["areas"]["scene_km2"] == pytest.approx(H * W * 100 / 1e6)
    assert summary["areas"]["valid_fraction"] == pytest.approx(1 - 600 / (H * W))
    assert summary["timing"]["blocks"] == 4 and summary["band_check"]["problems"] == []
    assert summary["scene"]["output_grid"]["crs"] == "EPSG:32630" and summary["year"] is None
    leftovers = [p.name for p in base.out_dir.iterdir()]
    assert sorted(leftovers) == ["mines.gpkg", "mines.tif", "mines.tif.aux.xml", "probability.tif", "summary.json"]


def test_tiled_equals_whole_image_for_a_bounded_receptive_field(base: object, files: dict[str, Path],
                                                                 data: np.ndarray) -> None:
    np.testing.assert_allclose(_read(base.probability), _whole_image(files["conv"], data), atol=2e-6)


def test_blending_leaves_no_seams_with_a_unet(files: dict[str, Path], data: np.ndarray) -> None:
    """A U-Net sees far beyond a window; overlap and blending keep it close to the whole image."""
    reference = _whole_image(files["unet"], data)[32:-32, 32:-32]
    errors = {}
    for overlap in (0, 64):
        result = map_scene(files["unet"], files["root"] / f"unet{overlap}", stacked=files["stacked"],
                           **{**TILING, "overlap": overlap})
        errors[overlap] = np.abs(_read(result.probability)[32:-32, 32:-32] - reference)
    assert errors[64].max() < 0.5 * errors[0].max()
    assert errors[64].mean() < 0.01
    # no step at window edges: the error at rows where a window starts is like anywhere else
    stride_rows = np.arange(64, H - 64, 64) - 32
    assert errors[64][stride_rows].mean() < 2 * errors[64].mean()


def test_separate_rasters_equal_the_stacked_scene(base: object, files: dict[str, Path], data: np.ndarray) -> None:
    parts = write_separate(scene_array(H, W, seed=0), files["root"] / "separate")
    result = map_scene(files["conv"], files["root"] / "from_separate", s2=[parts["s2_10m"], parts["s2_20m"]],
                       s1=parts["s1"], dem=parts["dem"], **TILING)
    with rasterio.open(result.probability) as a, rasterio.open(base.probability) as b:
        assert a.transform == b.transform and a.crs == b.crs
    ours, stacked = _read(result.probability)[30:-8, 8:-8], _read(base.probability)[30:-8, 8:-8]
    difference = np.abs(ours - stacked)
    # a stacked scene with two bands exchanged: the yardstick for "different"
    swapped = data.copy()
    swapped[[4, 5]] = swapped[[5, 4]]
    wrong = map_scene(files["conv"], files["root"] / "swapped", stacked=write_stack(files["root"] / "sw.tif", swapped),
                      force=True, **TILING)
    wrong_difference = np.abs(_read(wrong.probability)[30:-8, 8:-8] - stacked)
    assert difference.mean() < 0.1 * wrong_difference.mean()
    assert difference.mean() < 0.01


def test_polygon_area_equals_mask_area(base: object) -> None:
    mines = _read(base.mines)
    frame = pyogrio.read_dataframe(base.polygons)
    assert list(frame.columns) == ["id", "area_ha", "mean_prob", "geometry"]
    assert frame["area_ha"].sum() == pytest.approx((mines == 1).sum() * 0.01)
    assert frame.geometry.area.sum() / 1e4 == pytest.approx((mines == 1).sum() * 0.01)
    assert base.mined_area_ha == pytest.approx(frame["area_ha"].sum())
    assert (frame["mean_prob"] >= 0.5).all() and (frame["id"] == np.arange(1, len(frame) + 1)).all()


def test_min_area_filter_applies_to_mask_and_polygons(files: dict[str, Path], base: object) -> None:
    result = map_scene(files["conv"], files["root"] / "filtered", stacked=files["stacked"],
                       **{**TILING, "min_area_ha": 0.05})
    frame = pyogrio.read_dataframe(result.polygons)
    mines = _read(result.mines)
    assert (frame["area_ha"] >= 0.05).all() and len(frame) < len(pyogrio.read_dataframe(base.polygons))
    assert frame["area_ha"].sum() == pytest.approx((mines == 1).sum() * 0.01)
    areas = result.summary["areas"]
    assert areas["mined_ha_before_min_area"] == pytest.approx(base.mined_area_ha)
    assert areas["mined_ha"] < areas["mined_ha_before_min_area"]


def test_onnx_equals_torch(files: dict[str, Path], data: np.ndarray) -> None:
    model = files["root"] / "unet.onnx"
    run = CliRunner().invoke(app, ["export", str(files["unet"]), str(model)])
    assert run.exit_code == 0, run.output
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    assert meta["channels"].split(",") == list(CHANNELS) and float(meta["threshold"]) == 0.5
    assert json.loads(meta["stats"])["channels"] == list(CHANNELS)
    torch_map = map_scene(files["unet"], files["root"] / "unet_torch", stacked=files["stacked"], **TILING)
    onnx_map = map_scene(None, files["root"] / "unet_onnx", stacked=files["stacked"], onnx=model, **TILING)
    np.testing.assert_allclose(_read(onnx_map.probability), _read(torch_map.probability), atol=1e-4)
    assert onnx_map.summary["backend"]["engine"] == "onnxruntime"


def test_dask_equals_single_process(files: dict[str, Path], base: object) -> None:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        result = map_scene(files["conv"], files["root"] / "dask", stacked=files["stacked"], cluster=client, **TILING)
    np.testing.assert_allclose(_read(result.probability), _read(base.probability), atol=1e-6)
    np.testing.assert_array_equal(_read(result.mines), _read(base.mines))
    assert result.summary["backend"]["cluster"]


@pytest.mark.slow
def test_local_worker_processes_equal_single_process(files: dict[str, Path]) -> None:
    single = map_scene(files["unet"], files["root"] / "unet_single", stacked=files["stacked"], **TILING)
    spread = map_scene(files["unet"], files["root"] / "unet_workers", stacked=files["stacked"], workers=2, **TILING)
    np.testing.assert_allclose(_read(spread.probability), _read(single.probability), atol=1e-5)


def test_resume_after_interruption(files: dict[str, Path], base: object) -> None:
    out = files["root"] / "resumed"

    class Stop(Exception):
        pass

    calls = []

    def interrupt(done: float, total: float) -> None:
        calls.append(done)
        if len(calls) == 10:  # the first call reports 0 km2; blocks 0 and 1 hold 4 windows each
            raise Stop

    with pytest.raises(Stop):
        map_scene(files["conv"], out, stacked=files["stacked"], progress=interrupt, **TILING)
    assert not (out / "probability.tif").exists()  # nothing half-written under a final name
    assert len(list((out / ".work" / "blocks").glob("*.npy"))) == 2
    result = map_scene(files["conv"], out, stacked=files["stacked"], **TILING)
    assert result.summary["timing"]["blocks_reused"] == 2 and result.summary["timing"]["blocks_computed"] == 2
    np.testing.assert_array_equal(_read(result.probability), _read(base.probability))
    assert not (out / ".work").exists()


def test_zero_one_scene_is_refused_then_fixed_by_scale(files: dict[str, Path], data: np.ndarray, base: object) -> None:
    scaled = data.copy()
    valid = scaled[:10] != IMAGE_NODATA
    scaled[:10][valid] /= 10000
    path = write_stack(files["root"] / "zero_one.tif", scaled)
    with pytest.raises(SceneMismatchError) as info:
        map_scene(files["conv"], files["root"] / "refused", stacked=path, **TILING)
    message = str(info.value)
    assert all(band in message for band in BAND_NAMES[:10]) and "--scale 10000" in message
    assert not (files["root"] / "refused" / "probability.tif").exists()
    fixed = map_scene(files["conv"], files["root"] / "fixed", stacked=path, scale=10000, **TILING)
    assert fixed.check["problems"] == []
    np.testing.assert_allclose(_read(fixed.probability), _read(base.probability), atol=1e-4)


def test_missing_band_is_named(files: dict[str, Path], data: np.ndarray) -> None:
    six = parse_bands("official6")
    path = write_raster(files["root"] / "six.tif", data[[BAND_NAMES.index(b) for b in six]], descriptions=six)
    with pytest.raises(BandError, match=r"rededge1, rededge2, rededge3, nir, vv, vh, dem"):
        map_scene(files["conv"], files["root"] / "six", stacked=path, **TILING)


def test_area_of_interest_crops_and_masks(files: dict[str, Path], base: object) -> None:
    import geopandas as gpd
    import shapely

    left, top = 600_000 + 10 * 100, 700_000 - 10 * 60
    triangle = shapely.Polygon([(left, top), (left + 1500, top), (left, top - 1200)])
    aoi = files["root"] / "aoi.gpkg"
    gpd.GeoDataFrame(geometry=[triangle], crs="EPSG:32630").to_file(aoi)
    result = map_scene(files["conv"], files["root"] / "aoi", stacked=files["stacked"], aoi=aoi, **TILING)
    probability = _read(result.probability)
    with rasterio.open(result.probability) as src:
        assert src.shape == (120, 150) and src.transform.c == left and src.transform.f == top
    assert probability[-1, -1] == -1 and probability[0, 0] != -1  # outside / inside the triangle
    inside = probability != -1
    ours = _read(base.probability)[60:180, 100:250]
    np.testing.assert_allclose(probability[4:-4, 4:-4][inside[4:-4, 4:-4]], ours[4:-4, 4:-4][inside[4:-4, 4:-4]],
                               atol=2e-6)
    assert result.summary["areas"]["scene_km2"] == pytest.approx(triangle.area / 1e6, rel=0.03)


def test_cli_map_and_its_errors(files: dict[str, Path]) -> None:
    runner = CliRunner()
    out = files["root"] / "cli"
    run = runner.invoke(app, ["map", str(files["conv"]), str(files["stacked"]), "-o", str(out), "--window", "128",
                              "--overlap", "64", "--min-area", "0"])
    assert run.exit_code == 0, run.output
    assert (out / "mines.gpkg").is_file() and "mining" in run.output
    bad = runner.invoke(app, ["map", str(files["conv"]), str(files["stacked"]), "-o", str(out), "--overlap", "48",
                                     "--overwrite"])
    assert bad.exit_code == 1 and "overlap=48" in bad.output
    no_model = runner.invoke(app, ["map", str(files["stacked"]), "-o", str(out)])
    assert no_model.exit_code == 1 and "model file" in no_model.output


def test_last_window_is_shifted_inward_not_mirror_padded(tmp_path: Path) -> None:
    """At the right and bottom edges a U-Net agrees with the whole-scene pass as well as inside.

    224 x 288 px with 128-px windows every 64 px: the last window used to be cut to 96 px and mirror-padded
    by 32, with edge errors ten times those inside; shifted inward, it holds real pixels only.
    """
    h, w = 224, 288
    image = scene_array(h, w, seed=1)
    model = save_tiny(tmp_path / "unet.pt", card_for(image, CHANNELS, "unet", TINY_UNET))
    result = map_scene(model, tmp_path / "map", stacked=write_stack(tmp_path / "scene.tif", image), window=128,
                       overlap=64, block=192, min_area_ha=0.0)
    network, card = load_model(model)
    mean, std = card.stats.arrays()
    x = np.nan_to_num((compute_channels(image, card.channels) - mean) / std)
    with torch.inference_mode():
        whole = torch.softmax(network(torch.from_numpy(x.astype(np.float32))[None]), 1)[0, 1].numpy()
    error = np.abs(_read(result.probability) - whole)
    inside = error[32:-64, 32:-64].mean()
    assert error[32:-64, -64:].mean() < 2 * inside and error[-64:, 32:-64].mean() < 2 * inside


def test_the_year_comes_from_the_option_provenance_or_file_name(tmp_path: Path) -> None:
    from smallmines.mapping.mapper import _scene_year

    assert _scene_year(str(tmp_path / "scene_2016.tif")) == 2016 and _scene_year(str(tmp_path / "scene.tif")) is None
    assert _scene_year(str(tmp_path / "S2_20221105_T30N.tif")) is None  # a date, not a year
    (tmp_path / "fetch.json").write_text(json.dumps({"year": 2024}))
    assert _scene_year(str(tmp_path / "scene.tif")) == 2024


def test_the_guards_sample_is_the_same_read_by_several_threads(files: dict[str, Path]) -> None:
    from smallmines.data.scene import open_scene
    from smallmines.data.windows import Span
    from smallmines.mapping.guards import sample_scene

    scene = open_scene(files["stacked"])
    rows, cols = Span(0, H), Span(0, W)
    with scene.open() as reader:
        one = sample_scene(reader, BAND_NAMES, rows, cols, size=64, threads=1)
        several = sample_scene(reader, BAND_NAMES, rows, cols, size=64, threads=3)  # 16 windows, uneven shares
    assert one.shape[0] == len(BAND_NAMES) and one.shape[1] > 16 * 64 * 32
    np.testing.assert_array_equal(several, one)
