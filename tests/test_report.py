"""The HTML report: what it finds, what it shows, and that it is self-contained."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from shapely.geometry import box
from typer.testing import CliRunner

from smallmines.analysis.change import compare_maps
from smallmines.errors import SmallminesError
from smallmines.report.build import build_report
from smallmines.report.figures import CHANGE_COLOURS, hex_to_rgba
from smallmines.report.inputs import find_inputs

CRS = "EPSG:32630"
X0, Y0 = 620_000.0, 720_000.0
SIZE = 160
MAX_PX = 96


def _write(path: Path, data: np.ndarray, nodata: float, transform=None) -> Path:
    data = data if data.ndim == 3 else data[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
                       dtype=data.dtype.name, crs=CRS, transform=transform or from_origin(X0, Y0, 10, 10),
                       nodata=nodata) as dst:
        dst.write(data)
    return path


def mining_masks() -> dict[int, np.ndarray]:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    a = ((yy - 50) ** 2 + (xx - 50) ** 2 < 15**2).astype(np.uint8)
    b = a | ((yy - 110) ** 2 + (xx - 100) ** 2 < 20**2)
    return {2016: a, 2022: b.astype(np.uint8)}


def write_scene(path: Path, mining: np.ndarray) -> Path:
    """A 13-band scene in the published order: forest green, mined ground bright brown, a nodata corner."""
    forest = np.array([300, 600, 350, 900, 2200, 2600, 2800, 2900, 1500, 700, -8, -14, 100], np.float32)
    soil = np.array([900, 1100, 1400, 1600, 1800, 1900, 2000, 2100, 2600, 2300, -6, -12, 100], np.float32)
    image = np.where(mining[None] == 1, soil[:, None, None], forest[:, None, None]).astype(np.float32)
    image[:, :12, :30] = -9999
    return _write(path, image, -9999)


def write_map(folder: Path, year: int, mining: np.ndarray, scene: Path | None) -> Path:
    mines = mining.copy()
    mines[:12, :30] = 255
    probability = np.where(mines == 255, -1, 0.05 + 0.9 * mining).astype(np.float32)
    _write(folder / "probability.tif", probability, -1)
    _write(folder / "mines.tif", mines, 255)
    summary = {"year": year, "inputs": {"stacked": str(scene)}} if scene else {"year": year}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def write_training(run: Path, data: Path, ids: list[str]) -> None:
    import torch

    from smallmines.bands import BAND_NAMES
    from smallmines.data.stats import BandStats
    from smallmines.models.registry import ModelCard, build_model, save_model

    (run / "config.yaml").write_text(f"data:\n  root: {data}\n  bands: all\nmodel:\n  name: unet-lite\n")
    (run / "train_summary.json").write_text(json.dumps({"seconds": 90.0, "epochs": 3, "best_epoch": 2,
                                                        "best_score": 0.42, "params": 1234}))
    rows = ["epoch,step,train_loss,val_loss,val_iou_mining,val_miou"]
    for epoch in range(3):
        rows += [f"{epoch},{epoch * 4 + 3},{0.9 - 0.2 * epoch},,,", f"{epoch},{epoch * 4 + 3},,{0.8 - 0.1 * epoch},"
                 f"{0.2 + 0.1 * epoch},{0.5 + 0.05 * epoch}"]
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "metrics.csv").write_text("\n".join(rows) + "\n")
    scores = {"iou_mining": 0.4321, "iou_background": 0.97, "miou": 0.70, "f1_mining": 0.60,
              "precision_mining": 0.65, "recall_mining": 0.55, "accuracy": 0.96}
    ev = run / "evaluation" / "test"
    ev.mkdir(parents=True)
    (ev / "metrics.json").write_text(json.dumps({
        "split": "test", "threshold": 0.5, "patches": 4, "overall": scores,
        "per_year": {"2016": {**scores, "patches": 2}, "2022": {**scores, "patches": 2}},
        "per_bin": {"2": {**scores, "patches": 4, "label": "1-5 %"}},
        "confusion": [[9000, 300], [200, 500]]}))
    pd.DataFrame({"id": ids[:4], "year": [int(i[-4:]) for i in ids[:4]], "mining_share": [3.0, 2.0, 1.0, 0.0],
                  "iou_mining": [0.9, 0.5, 0.1, np.nan], "fp": [1, 2, 3, 40]}).to_csv(ev / "per_patch.csv",
                                                                                      index=False)
    torch.manual_seed(0)
    card = ModelCard("unet-lite", {"widths": [4, 8]}, BAND_NAMES,
                     BandStats(BAND_NAMES, (1000.0,) * 13, (500.0,) * 13), threshold=0.5)
    save_model(run / "model.pt", build_model("unet-lite", BAND_NAMES, widths=[4, 8]), card)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory, synth_small: Path) -> dict:
    """A training run with a dataset, model, evaluation, two maps, change with zones; and its report."""
    from smallmines.data.layout import discover

    root = tmp_path_factory.mktemp("report_run")
    run = root / "run"
    masks = mining_masks()
    for year, mining in masks.items():
        scene = write_scene(root / "scenes" / f"scene_{year}.tif", mining)
        write_map(run / "maps" / str(year), year, mining, scene)
    zones = gpd.GeoDataFrame({"NAME": ["north", "beyond"]},
                             geometry=[box(X0, Y0 - 800, X0 + 1600, Y0),
                                       box(X0 + 1200, Y0 - 1600, X0 + 2400, Y0 - 800)],
                             crs=CRS)
    change = compare_maps(run / "maps" / "2016", run / "maps" / "2022", run / "change", zones=zones,
                          zone_field="NAME", figures=False)
    write_training(run, synth_small, [p.id for p in discover(synth_small).patches])
    html_path = build_report(run, root / "report.html", figures_dir=root / "figures", max_overlay_px=MAX_PX)
    return {"run": run, "html": html_path, "text": html_path.read_text(encoding="utf-8"), "change": change,
            "figures": root / "figures", "scene": root / "scenes" / "scene_2022.tif"}


def map_payload(text: str) -> dict:
    match = re.search(r'<script type="application/json" id="map-data">(.*?)</script>', text, re.S)
    assert match, "the report has no map data"
    return json.loads(match.group(1))


def decode_png(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def test_report_is_self_contained(full_run):
    text = full_run["text"]
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I), "scripts must be inlined"
    assert not re.search(r"<link[^>]*\bhref\s*=", text, re.I), "stylesheets must be inlined"
    assert not re.search(r"""\bsrc\s*=\s*["']?(https?:)?//""", text, re.I)
    assert not re.search(r"url\(\s*['\"]?(?!data:|#)", text), "every CSS url() must be a data URI"
    assert "L.imageOverlay" in text  # our map script
    assert re.search(r't\.version="1\.9\.4"', text)  # Leaflet's own code is inside the page


def test_report_shows_every_part_of_a_full_run(full_run):
    text = full_run["text"]
    for section in ("webmap", "change", "dataset", "training", "evaluation", "samples", "maps"):
        assert f'id="{section}"' in text, section
    # order: the map and the change come before the model
    assert text.index('id="webmap"') < text.index('id="change"') < text.index('id="training"')
    assert "IoU mining (test)" in text and "0.432" in text  # the card and the metrics table
    summary = full_run["change"].summary
    assert f"{summary['net_growth_ha']:+,.1f} ha" in text  # net growth as computed by compare_maps
    assert "north" in text and "beyond" in text  # per-zone table
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', text)
    for alt in ("training curves", "confusion matrix, test", "sample predictions", "tile pairs",
                "mined area in both years", "tile footprints coloured by growth"):
        assert alt in images, alt


def test_web_map_layers_are_reprojected_and_reduced(full_run):
    payload = map_payload(full_run["text"])
    layers = {layer["plain"]: layer for layer in payload["layers"]}
    assert {"true colour 2016", "true colour 2022", "probability 2016", "probability 2022", "mines 2016",
            "mines 2022", "change 2016-2022"} <= set(layers)
    assert layers["true colour 2022"]["group"] == "base" and layers["true colour 2022"]["visible"]
    assert layers["change 2016-2022"]["group"] == "overlay" and layers["change 2016-2022"]["visible"]
    with rasterio.open(full_run["scene"]) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    (s, w), (n, e) = layers["true colour 2022"]["bounds"]
    assert (s, w, n, e) == pytest.approx((south, west, north, east), abs=2e-4)  # ~20 m
    for layer in layers.values():
        image = decode_png(layer["url"])
        assert image.ndim == 3 and image.shape[2] == 4
        assert max(image.shape[:2]) <= MAX_PX + 2
    change = decode_png(layers["change 2016-2022"]["url"]).reshape(-1, 4)
    colours = {tuple(p) for p in change[change[:, 3] > 0]}
    assert tuple(hex_to_rgba(CHANGE_COLOURS[1])) in colours  # new mining drawn red
    assert colours <= {tuple(hex_to_rgba(CHANGE_COLOURS[c])) for c in (1, 2, 3)}  # no mining is transparent
    rgb = decode_png(layers["true colour 2022"]["url"])
    assert (rgb[..., 3] == 0).any() and rgb[..., :3].std() > 10  # nodata corner transparent, image not flat
    vectors = {v["name"]: v for v in payload["vectors"]}
    zones = next(v for name, v in vectors.items() if "Zones" in name)
    assert len(zones["data"]["features"]) == 2
    assert any("Dataset tiles" in name for name in vectors)
    assert "new mining" in payload["legend"] and "Mining probability" in payload["legend"]


def test_sample_predictions_follow_per_patch_scores(full_run):
    text = full_run["text"]
    assert "best IoU 0.90" not in text  # labels are drawn into the figure, not the HTML
    assert "patches from the test split chosen by IoU" in text


def test_figures_for_papers(full_run):
    names = {p.name for p in full_run["figures"].iterdir()}
    for stem in ("training_curves", "confusion_test", "samples", "change_areas", "change_map", "zones", "tile_growth",
                 "dataset_overview", "preview_pairs"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names, stem
    assert (full_run["figures"] / "change_areas.pdf").read_bytes().startswith(b"%PDF")


def test_find_inputs_reads_the_folder_contract(full_run):
    found = find_inputs(full_run["run"])
    assert [m.year for m in found.maps] == [2016, 2022]
    assert found.maps[1].scene == full_run["scene"]
    assert found.data is not None and found.data_origin == "config.yaml data.root"
    assert set(found.evaluations) == {"test"} and found.model.name == "model.pt"
    assert [c.kind for c in found.changes] == ["maps"]


def test_report_of_a_dataset_alone(synth_small, tmp_path):
    out = build_report(synth_small, tmp_path / "dataset.html")
    text = out.read_text()
    assert 'id="dataset"' in text and 'id="training"' not in text and 'id="evaluation"' not in text
    assert "SmallMinesDS overview" in text
    payload = map_payload(text)
    assert payload["layers"] == [] and any("Dataset tiles" in v["name"] for v in payload["vectors"])
    features = next(v for v in payload["vectors"] if "Dataset tiles" in v["name"])["data"]["features"]
    assert len(features) == 4  # one footprint per paired tile
    (s, w), (n, e) = payload["bounds"]
    assert -20 < w < e < 20 and -10 < s < n < 30  # footprints brought to lat/lon near Ghana


def test_report_of_a_training_run_alone(tmp_path, synth_small):
    run = tmp_path / "run"
    run.mkdir()
    from smallmines.data.layout import discover

    write_training(run, synth_small, [p.id for p in discover(synth_small).patches])
    (run / "config.yaml").write_text("data:\n  root: /nowhere/SmallMinesDS.zip\n")
    (run / "model.pt").unlink()
    text = build_report(run, tmp_path / "r.html").read_text()
    assert 'id="training"' in text and 'id="evaluation"' in text
    assert 'id="dataset"' not in text and 'id="webmap"' not in text and "map-data" not in text
    assert "pass --data PATH" in text  # the missing dataset is named, not silently skipped
    assert "<script>" not in text  # no map, so no Leaflet either


def test_two_maps_without_change_folder_are_compared_on_the_fly(tmp_path):
    run = tmp_path / "maps_only"
    for year, mining in mining_masks().items():
        write_map(run / "maps" / str(year), year, mining, scene=None)
    text = build_report(run, tmp_path / "m.html", max_overlay_px=MAX_PX).read_text()
    assert 'id="change"' in text and "Computed for this report" in text
    assert "no true-colour background" in text  # summary.json names no scene
    names = {layer["plain"] for layer in map_payload(text)["layers"]}
    assert names == {"probability 2016", "probability 2022", "mines 2016", "mines 2022", "change 2016-2022"}


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(SmallminesError, match="nothing to report"):
        build_report(tmp_path, tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_cli_report(full_run, tmp_path):
    from smallmines.cli import app

    out = tmp_path / "cli.html"
    res = CliRunner().invoke(app, ["report", str(full_run["run"] / "change"), "-o", str(out),
                                   "--max-overlay-px", "64"])
    assert res.exit_code == 0, res.output
    assert "report written" in res.output and out.stat().st_size > 10_000
    res = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert res.exit_code == 2


def test_scene_found_through_the_map_summary_sources(tmp_path):
    """``smallmines map`` lists its inputs under scene.sources; a 4-band S2 file gives red from band 3."""
    mining = mining_masks()[2022]
    s2 = np.zeros((4, SIZE, SIZE), np.float32)  # blue, green, red, nir
    s2[0], s2[1], s2[2], s2[3] = 200, 400, 2500, 3000
    scene = _write(tmp_path / "scene_2022_s2_10m.tif", s2, -9999)
    folder = tmp_path / "maps" / "m"  # no year in the folder name: it comes from the scene's name
    write_map(folder, 2022, mining, scene=None)
    (folder / "summary.json").write_text(json.dumps({"scene": {"sources": [
        {"path": str(scene), "kind": "s2", "bands": ["blue", "green", "red", "nir"]}]}}))
    found = find_inputs(tmp_path)
    assert found.maps[0].year == 2022 and found.maps[0].rgb_bands == (3, 2, 1)
    text = build_report(tmp_path, tmp_path / "r.html", max_overlay_px=MAX_PX).read_text()
    layer = next(x for x in map_payload(text)["layers"] if x["group"] == "base")
    rgb = decode_png(layer["url"])[..., :3].astype(int)
    assert (rgb[..., 0] > rgb[..., 2] + 100).mean() > 0.9  # red band drawn red, not blue


# ---------------------------------------------------------------------------------------------
# context: Natural Earth countries and --context polygons


def _districts(path: Path) -> Path:
    """Two districts over the maps (in degrees, as users' files usually are), one named ``DISTRICT``."""
    halves = [box(X0, Y0 - SIZE * 10, X0 + SIZE * 5, Y0), box(X0 + SIZE * 5, Y0 - SIZE * 10, X0 + SIZE * 10, Y0)]
    gpd.GeoDataFrame({"DISTRICT": ["Amansie West", "Amansie Central"]}, geometry=halves, crs=CRS).to_crs(
        "EPSG:4326").to_file(path)
    return path


def test_countries_layer_is_small_public_domain_and_places_ghana():
    from importlib import resources

    from smallmines.report.context import countries, country_of

    asset = resources.files("smallmines.report") / "assets" / "natural_earth"
    assert len((asset / "countries.geojson").read_bytes()) < 200_000
    assert "public domain" in (asset / "README.md").read_text()
    assert len(countries()["features"]) > 170
    near = {f["properties"]["name"] for f in countries((-2.0, 6.0, -1.5, 6.5))["features"]}
    assert {"Ghana", "Côte d'Ivoire", "Togo", "Burkina Faso"} <= near and "Brazil" not in near
    assert country_of(-1.6, 6.2) == "Ghana" and country_of(-30.0, 0.0) is None


def test_report_map_has_countries_and_context_with_zones_on_the_fly(tmp_path):
    run = tmp_path / "maps_only"
    for year, mining in mining_masks().items():
        write_map(run / "maps" / str(year), year, mining, scene=None)
    districts = _districts(tmp_path / "districts.gpkg")
    text = build_report(run, tmp_path / "m.html", max_overlay_px=MAX_PX, context=districts,
                        context_field="DISTRICT", figures_dir=tmp_path / "fig").read_text()
    payload = map_payload(text)
    names = [v["name"] for v in payload["vectors"]]
    assert "Countries (Natural Earth)" in names[0]  # drawn first, under the zones
    ghana = [f for f in payload["vectors"][0]["data"]["features"] if f["properties"]["_tip"] == "Ghana"]
    assert len(ghana) == 1
    (s, w), (n, e) = payload["bounds"]
    assert n - s < 0.1 and e - w < 0.1  # the view fits the maps, not the countries
    assert "country borders (Natural Earth)" in payload["legend"]
    zones = next(v for v in payload["vectors"] if "Zones" in v["name"])  # the change was compared per district
    assert sorted(f["properties"]["_tip"] for f in zones["data"]["features"]) == ["Amansie Central", "Amansie West"]
    assert "Per zone" in text and "Amansie West" in text
    assert {"change_map.png", "change_map.pdf"} <= {p.name for p in (tmp_path / "fig").iterdir()}


def test_report_context_gives_zones_to_a_change_folder_without_them(tmp_path):
    run = tmp_path / "run"
    masks = mining_masks()
    for year, mining in masks.items():
        write_map(run / "maps" / str(year), year, mining, scene=None)
    compare_maps(run / "maps" / "2016", run / "maps" / "2022", run / "change", figures=False)
    districts = _districts(tmp_path / "districts.gpkg")
    text = build_report(run, tmp_path / "r.html", max_overlay_px=MAX_PX, context=districts,
                        context_field="DISTRICT").read_text()
    assert "computed for this report over districts.gpkg" in text and "Amansie Central" in text
    assert not (run / "change" / "zones.csv").exists()  # the change folder is left as it was
    # without a change raster to count, the context is drawn as plain outlines
    only = tmp_path / "only_one_map"
    write_map(only / "maps" / "2022", 2022, masks[2022], scene=None)
    payload = map_payload(build_report(only, tmp_path / "o.html", max_overlay_px=MAX_PX, context=districts,
                                       context_field="DISTRICT").read_text())
    context = next(v for v in payload["vectors"] if "Context polygons" in v["name"])
    assert len(context["data"]["features"]) == 2


def test_bad_context_is_one_clear_line(tmp_path):
    from smallmines.cli import app

    run = tmp_path / "maps_only"
    write_map(run / "maps" / "2022", 2022, mining_masks()[2022], scene=None)
    districts = _districts(tmp_path / "districts.gpkg")
    res = CliRunner().invoke(app, ["report", str(run), "-o", str(tmp_path / "x.html"), "--context", str(districts),
                                   "--context-field", "REGION"])
    assert res.exit_code == 1 and "has no field 'REGION'" in res.output and "DISTRICT" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "x.html").exists()
    garbage = tmp_path / "zones.geojson"
    garbage.write_text("not json")
    with pytest.raises(SmallminesError, match="zones.geojson: cannot be read as a vector layer"):
        build_report(run, tmp_path / "y.html", context=garbage)


def test_local_paths_become_relative_but_embedded_data_is_untouched(tmp_path: Path) -> None:
    from smallmines.report.build import _without_local_paths
    from smallmines.report.inputs import ReportInputs

    run = tmp_path / "project" / "run"
    image = f"data:image/png;base64,AAAA{run}/BBBB=="  # base64 may spell a path by chance
    page = f'<p>model {run}/model.pt</p><img src="{image}">'
    clean = _without_local_paths(page, tmp_path / "project" / "report.html", ReportInputs(run))
    assert "<p>model run/model.pt</p>" in clean and image in clean
