"""``smallmines build``: scene + polygons -> a SmallMinesDS-format dataset, checked, loaded and trained on.

The synthetic twin gives a scene and its true mining mask; the mask polygonised is the label layer,
so a built mask must equal the true mask pixel for pixel, and a built image the scene's pixels.
"""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from rasterio.features import shapes
from rasterio.windows import Window
from shapely.geometry import MultiPolygon, Point, Polygon, box, shape
from typer.testing import CliRunner

from smallmines.bands import IMAGE_NODATA, MASK_NODATA
from smallmines.cli import app
from smallmines.data.build.build import build_dataset
from smallmines.data.build.tiles import TileGrid
from smallmines.data.build.writer import read_record, read_split_rows
from smallmines.data.check import check_dataset
from smallmines.data.dataset import SmallMinesDS
from smallmines.data.io import read_image, read_mask
from smallmines.data.layout import discover
from smallmines.errors import ConfigError

SIZE = 384
YEARS = (2016, 2022)


def _polygons(truth: Path, out: Path, crs: int = 4326) -> Path:
    """Polygonise a true mask (value 1) into a GeoPackage in another CRS."""
    with rasterio.open(truth) as src:
        mask = src.read(1)
        geoms = [shape(g) for g, v in shapes(mask, mask=mask == 1, transform=src.transform) if v == 1]
        frame = gpd.GeoDataFrame({"id": range(len(geoms))}, geometry=geoms, crs=src.crs)
    frame.to_crs(crs).to_file(out)
    return out


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Synthetic scenes of two years (stacked and per sensor) and their polygonised true masks."""
    from smallmines.data.synth.scenes import synthesize_scene

    root = tmp_path_factory.mktemp("build_scene")
    paths = synthesize_scene(root / "scenes", size=SIZE, seed=0, years=YEARS)
    for year in YEARS:
        paths[year]["labels"] = _polygons(paths[year]["truth"], root / f"mines_{year}.gpkg")
    return paths


@pytest.fixture(scope="module")
def built(scene: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both years built into one folder: 2016 from the stacked scene, 2022 from the per-sensor files."""
    out = tmp_path_factory.mktemp("built") / "ds"
    build_dataset(out, scene[2016]["labels"], "GH", 2016, stacked=scene[2016]["stacked"])
    s = scene[2022]
    build_dataset(out, s["labels"], "GH", 2022, s2=[s["s2_10m"], s["s2_20m"]], s1=s["s1"], dem=s["dem"])
    return out


def _window(path: Path, grid: TileGrid, number: int, bands: int | None = None) -> np.ndarray:
    cell = grid.cell(number)
    with rasterio.open(path) as src:
        return src.read(window=Window(cell.cols.start, cell.rows.start, grid.tile, grid.tile))


def test_round_trip_reproduces_the_scene_and_the_true_mask(built: Path, scene: dict) -> None:
    grid = TileGrid.from_dict(read_record(built)["grid"])
    layout = discover(built)
    assert layout.years == list(YEARS)
    assert (grid.rows, grid.columns) == (SIZE // 128, SIZE // 128)
    for ref in layout.patches:
        number = int(ref.key.tile)
        with rasterio.open(ref.image) as img, rasterio.open(ref.mask) as msk:
            assert img.count == 13 and img.dtypes[0] == "float32" and img.nodata == IMAGE_NODATA
            assert msk.dtypes[0] == "uint8" and msk.nodata == MASK_NODATA
            assert img.crs == msk.crs and img.crs is not None
            assert img.transform == grid.transform(grid.cell(number)) == msk.transform
            image, mask = img.read(), msk.read(1)
        truth = _window(scene[ref.year]["truth"], grid, number)[0]
        valid = mask != MASK_NODATA
        np.testing.assert_array_equal(mask[valid], truth[valid])  # pixel-aligned polygons: the centre rule is exact
        if ref.year == 2016:  # the stacked scene lies on the grid: pixels copied exactly
            np.testing.assert_array_equal(image, _window(scene[2016]["stacked"], grid, number))
            assert valid.all()
        else:  # 20 m files warped onto the grid: bilinear leaves the scene's last pixel column without data
            assert valid[:, :-1].all() or valid.mean() > 0.99
    report = check_dataset(built)
    assert report.ok, report.problems
    assert {y: c["usable"] for y, c in report.counts.items()} == {2016: 9, 2022: 9}
    assert all(c["unassigned"] == 0 and c["test"] > 0 for c in report.counts.values())


def test_built_dataset_loads_like_the_published_one(built: Path, tmp_path: Path) -> None:
    ds = SmallMinesDS(built, split=None)
    assert len(ds) == 18
    layout = discover(built).by_id()
    for i in (0, 11):
        image, mask = ds.raw(i)
        ref = layout[ds.ids[i]]
        np.testing.assert_array_equal(image, read_image(ref.image))
        np.testing.assert_array_equal(mask, np.where(np.isnan(image).any(0), MASK_NODATA, read_mask(ref.mask)))
    # the same files in the published zip form give identical samples
    archive = tmp_path / "SmallMinesDS.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(built.rglob("*")):
            if path.is_file() and path.parts[len(built.parts)] in ("SmallMinesDS", "data_splits"):
                zf.write(path, path.relative_to(built).as_posix())
    zipped = SmallMinesDS(archive, split="test")
    folder = SmallMinesDS(built, split="test")
    assert zipped.ids == folder.ids and len(folder) > 0
    for a, b in zip(zipped, folder, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"]) and a["id"] == b["id"]
    train = SmallMinesDS(built, split="train")
    sites = lambda d: {i.rsplit("_", 1)[0] for i in d.ids}  # noqa: E731
    assert not sites(train) & sites(folder)  # site-grouped across years


def test_second_year_pairs_tile_for_tile_and_reruns_are_identical(built: Path, scene: dict, tmp_path: Path) -> None:
    rows = read_split_rows(built)
    by_year = {y: {r.key.tile: r.split for r in rows.values() if r.key.year == y} for y in YEARS}
    assert by_year[2016].keys() == by_year[2022].keys()
    assert by_year[2016] == by_year[2022]  # a site is in the same split in both years
    tiles = gpd.read_file(built / "tiles.gpkg", layer="tiles")
    assert set(tiles.columns) >= {"id", "year", "split", "mining_share", "geometry"}
    a, b = (tiles[tiles.year == y].set_index("tile").sort_index() for y in YEARS)
    assert a.geometry.geom_equals(b.geometry).all()
    # --like: the second year in another folder reuses the grid and ids
    other = tmp_path / "other"
    build_dataset(other, scene[2022]["labels"], "GH", 2022, stacked=scene[2022]["stacked"], like=built)
    assert read_record(other)["grid"] == read_record(built)["grid"]
    assert sorted(p.id for p in discover(other).patches) == sorted(r for r in rows if r.endswith("2022"))
    # a rerun rewrites the same ids, splits and pixels
    again = tmp_path / "again"
    build_dataset(again, scene[2016]["labels"], "GH", 2016, stacked=scene[2016]["stacked"])
    for name in ("data_splits/train_test_splits_2016.csv", "SmallMinesDS/2016/MASK/MASK_GH_0005_2016.tif",
                 "SmallMinesDS/2016/IMAGE/IMG_GH_0005_2016.tif"):
        assert (again / name).read_bytes() == (built / name).read_bytes()


def test_rasterised_area_matches_polygons_within_a_pixel_along_boundaries(scene: dict, tmp_path: Path) -> None:
    with rasterio.open(scene[2016]["stacked"]) as src:
        left, top, crs = src.bounds.left, src.bounds.top, src.crs
    centre = (left + 1234.5, top - 1777.7)
    ring = Point(centre).buffer(700)
    donut = Point(centre).buffer(700).difference(Point(centre).buffer(250))  # a hole
    tilted = Polygon([(left + 2500, top - 300), (left + 3500, top - 900), (left + 3100, top - 1700),
                      (left + 2300, top - 1000)])
    shapes_ = [MultiPolygon([donut, tilted]), ring.buffer(0).difference(ring)]  # second: empty after difference
    gpd.GeoDataFrame({"id": [1, 2]}, geometry=shapes_, crs=crs).to_crs(4326).to_file(tmp_path / "m.gpkg")
    result = build_dataset(tmp_path / "ds", tmp_path / "m.gpkg", "CI", 2016, stacked=scene[2016]["stacked"])
    assert result.labels[0]["empty"] and result.labels[0]["mining"] == 1
    mined = sum(int((read_mask(p.mask) == 1).sum()) for p in discover(tmp_path / "ds").patches) * 100.0
    polygon = MultiPolygon([donut, tilted])
    assert abs(mined - polygon.area) <= polygon.length * 10.0
    assert discover(tmp_path / "ds").patches[0].id.startswith("CI_")


def test_bad_features_unknown_areas_and_selection(scene: dict, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with rasterio.open(scene[2016]["stacked"]) as src:
        left, top, crs = src.bounds.left, src.bounds.top, src.crs
    bowtie = Polygon([(left + 100, top - 100), (left + 600, top - 600), (left + 600, top - 100),
                      (left + 100, top - 600)])  # self-intersecting
    unknown = box(left + 1400, top - 600, left + 1900, top - 100)
    outside = box(left - 9000, top + 9000, left - 8000, top + 8000)
    frame = gpd.GeoDataFrame({"name": ["bowtie", "cloudy", "far", "empty", "well"],
                              "cls": ["mine", "Unknown", "mine", "mine", "mine"]},
                             geometry=[bowtie, unknown, outside, Polygon(), Point(left + 50, top - 50)], crs=crs)
    frame.to_file(tmp_path / "m.gpkg", layer="mines")
    gpd.GeoDataFrame({"x": [1]}, geometry=[box(left + 3000, top - 3000, left + 3300, top - 2700)],
                     crs=crs).to_file(tmp_path / "m.gpkg", layer="doubt")
    # nodata: most of tile 4 (skipped), and three bands of a corner of tile 5 (kept, mask 255 there)
    stacked = tmp_path / "scene.tif"
    shutil.copy(scene[2016]["stacked"], stacked)
    with rasterio.open(stacked, "r+") as dst:
        data = dst.read(window=Window(0, 128, 256, 128))
        data[:, :, :100] = IMAGE_NODATA  # 78 % of tile 4
        data[:3, :10, 128:138] = IMAGE_NODATA  # blue, green, red only, in tile 5
        dst.write(data, window=Window(0, 128, 256, 128))
    with caplog.at_level(logging.WARNING):
        result = build_dataset(tmp_path / "ds", tmp_path / "m.gpkg", "GH", 2016, stacked=stacked, layer="mines",
                               class_field="cls", unknown="doubt")
    assert "feature" in caplog.text and "bowtie" in caplog.text and "repaired" in caplog.text
    report = result.labels[0]
    assert len(report["repaired"]) == 1 and len(report["outside"]) == 1 and len(report["empty"]) == 1
    assert len(report["not_polygon"]) == 1 and report["mining"] == 1 and report["unknown"] == 1
    assert result.labels[1]["unknown"] == 1
    assert result.skipped["nodata"] == 1 and "GH_0004_2016" not in result.patches
    folder = tmp_path / "ds" / "SmallMinesDS" / "2016"
    first = read_mask(str(folder / "MASK/MASK_GH_0001_2016.tif"))
    assert (first[10:60, 10:60] == 1).sum() > 0  # the repaired bow tie is mining
    second = read_mask(str(folder / "MASK/MASK_GH_0002_2016.tif"))
    assert (second[10:60, 12:62] == MASK_NODATA).all()  # the unknown feature (scene columns 140-190)
    ninth = read_mask(str(folder / "MASK/MASK_GH_0009_2016.tif"))
    assert (ninth[14:44, 44:74] == MASK_NODATA).all()  # the unknown layer (scene rows 270-300, columns 300-330)
    fifth = read_mask(str(folder / "MASK/MASK_GH_0005_2016.tif"))
    assert (fifth[:10, :10] == MASK_NODATA).all() and (fifth[10:, 10:] != MASK_NODATA).all()
    with rasterio.open(folder / "IMAGE/IMG_GH_0005_2016.tif") as src:
        image = src.read()
    assert (image[:3, :10, :10] == IMAGE_NODATA).all() and (image[3:, :10, :10] != IMAGE_NODATA).all()
    # negative sampling is a per-tile draw: keep_empty=0 drops every mining-free tile, in any year
    sampled = build_dataset(tmp_path / "neg", scene[2016]["labels"], "GH", 2016, stacked=scene[2016]["stacked"],
                            keep_empty=0.0, min_share=1.0)
    assert all(share >= 1.0 for share in sampled.shares.values())
    assert sampled.skipped["empty_not_drawn"] + sampled.skipped["below_min_share"] == 9 - len(sampled.patches)


def test_interrupted_build_leaves_nothing_that_looks_complete(scene: dict, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def stop(done: int, total: int) -> None:
        if done >= 3:  # after the first block of tiles is written
            raise KeyboardInterrupt

    monkeypatch.setattr("smallmines.data.build.blocks.BLOCK_TILES", 3)

    with pytest.raises(KeyboardInterrupt):
        build_dataset(tmp_path, scene[2016]["labels"], "GH", 2016, stacked=scene[2016]["stacked"], progress=stop)
    assert not (tmp_path / "SmallMinesDS").exists() and not (tmp_path / "data_splits").exists()
    assert not list(tmp_path.glob(".build-*")) and not (tmp_path / "build.json").exists()


def test_option_errors_name_the_value_and_the_fix(scene: dict, built: Path, tmp_path: Path) -> None:
    stacked, labels = scene[2016]["stacked"], scene[2016]["labels"]
    with pytest.raises(ConfigError, match="country code 'Ghana'"):
        build_dataset(tmp_path, labels, "Ghana", 2016, stacked=stacked)
    with pytest.raises(ConfigError, match="no build.json"):
        build_dataset(tmp_path / "x", labels, "GH", 2016, stacked=stacked, like=tmp_path)
    with pytest.raises(ConfigError, match="--tile-size 64 differs from 128 of the tile grid"):
        build_dataset(tmp_path / "y", labels, "GH", 2016, stacked=stacked, like=built, tile=64)
    with pytest.raises(ConfigError, match="smaller than one"):
        build_dataset(tmp_path / "z", labels, "GH", 2016, stacked=stacked, tile=512)
    grid = TileGrid.covering(TileGrid.from_dict(read_record(built)["grid"]).grid, 100, 50)
    assert (grid.rows, grid.columns, grid.cell(grid.columns + 2).cols.start) == (6, 6, 50)


def test_cli_build_prints_a_summary_and_errors_in_one_line(scene: dict, tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "200"})
    args = ["build", "--scene", str(scene[2016]["stacked"]), "--labels", str(scene[2016]["labels"]),
            "--year", "2016", "-o", str(tmp_path / "ds")]
    result = runner.invoke(app, [*args, "--country", "GH"])
    assert result.exit_code == 0, result.output
    assert "9 patches" in result.output and "tiles.gpkg" in result.output
    assert (tmp_path / "ds" / "README.md").read_text().count("## ") >= 6
    bad = runner.invoke(app, [*args, "--country", "G1"])
    assert bad.exit_code == 1 and "error:" in bad.output and "country code 'G1'" in bad.output


def test_merge_keeps_ids_unique_and_samples_identical(built: Path, synth_zip: Path, tmp_path: Path) -> None:
    from smallmines.data.build.merge import merge_datasets

    merged = tmp_path / "merged"
    result = merge_datasets([synth_zip, built], merged)
    assert result.renamed[str(synth_zip)] == {}
    assert result.renamed[str(built)]["GH_0001_2016"] == "GH_10001_2016"  # the whole source shifted
    assert len(result.renamed[str(built)]) == 18 and not result.unassigned
    assert result.counts == {("GH", 2016): 16 + 9, ("GH", 2022): 16 + 9}
    report = check_dataset(merged)
    assert report.ok, report.problems
    assert all(c["unassigned"] == 0 for c in report.counts.values())
    pairs = [(SmallMinesDS(synth_zip, split=None), {}), (SmallMinesDS(built, split=None), result.renamed[str(built)])]
    whole = SmallMinesDS(merged, split=None)
    index = {pid: i for i, pid in enumerate(whole.ids)}
    for source, renamed in pairs:
        for i in (0, len(source) - 1):
            a, b = source[i], whole[index[renamed.get(source.ids[i], source.ids[i])]]
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    rows = read_split_rows(merged)
    assert rows["GH_10005_2016"].split == read_split_rows(built)["GH_0005_2016"].split
    tiles = gpd.read_file(merged / "tiles.gpkg", layer="tiles")
    assert len(tiles) == 50 and tiles.crs.to_epsg() == 4326 and tiles.id.is_unique
    runner = CliRunner(env={"COLUMNS": "200"})
    cli = runner.invoke(app, ["data", "merge", str(synth_zip), str(built), "-o", str(tmp_path / "m2")])
    assert cli.exit_code == 0 and "renumbered" in cli.output, cli.output
    bad = runner.invoke(app, ["data", "merge", str(built), "-o", str(tmp_path / "m3")])
    assert bad.exit_code == 1 and "at least two" in bad.output


def test_negative_sampling_keeps_years_paired(scene: dict, tmp_path: Path) -> None:
    def run(year: int) -> object:
        return build_dataset(tmp_path, scene[year]["labels"], "GH", year, stacked=scene[year]["stacked"],
                             keep_empty=0.0, min_share=2.0)

    first, second = run(2016), run(2022)
    assert first.skipped["empty_not_drawn"] + first.skipped["below_min_share"] > 0
    tiles = lambda r: {pid.split("_")[1] for pid in r.patches}  # noqa: E731
    assert tiles(first) <= tiles(second)  # 2016's tiles are kept in 2022 whatever their share
    assert second.unpaired
    assert second.unpaired == sorted(p for p in second.patches if p.split("_")[1] not in tiles(first))
    again = run(2016)  # rebuilding the first year pairs the tiles only the second year had
    assert tiles(again) == tiles(second) and again.unpaired == []
    assert read_record(tmp_path)["years"]["2016"]["unpaired"] == []


def test_split_by_country_and_metrics_per_country(built: Path, synth_root: Path, scene: dict, tmp_path: Path) -> None:
    from smallmines.data.build.merge import merge_datasets
    from smallmines.data.dataset import PatchSource, resolve_split
    from smallmines.data.splits import country_split
    from smallmines.errors import SplitError
    from smallmines.training.benchmarking import _aggregate, to_markdown
    from smallmines.training.evaluation import evaluate, summarize
    from smallmines.training.trainer import fit

    ci = tmp_path / "ci"
    build_dataset(ci, scene[2016]["labels"], "CI", 2016, stacked=scene[2016]["stacked"])
    merged = tmp_path / "merged"
    merge_datasets([synth_root, ci], merged)
    source = PatchSource(merged)
    split = resolve_split(source, "country", seed=0, val_fraction=0.2, test_countries=["ci"])
    countries = {name: {pid.split("_")[0] for pid, s in split.items() if s == name}
                 for name in ("train", "val", "test")}
    assert countries == {"train": {"GH"}, "val": {"GH"}, "test": {"CI"}}
    assert resolve_split(source, "country:GH>CI", seed=0, val_fraction=0.2) == split
    keys = dict(zip(source.ids, source.keys, strict=True))
    with pytest.raises(SplitError, match="in both train and test"):
        country_split(keys, source.shares, train_countries=["GH"], test_countries=["GH"])
    with pytest.raises(SplitError, match="no patch of test countries"):
        country_split(keys, source.shares, test_countries=["PE"])
    runner = CliRunner(env={"COLUMNS": "200"})
    csv_path = tmp_path / "gh2ci.csv"
    cli = runner.invoke(app, ["data", "split", str(merged), "--method", "country", "--test-countries", "CI",
                              "-o", str(csv_path)])
    assert cli.exit_code == 0, cli.output
    # train on Ghana, test on Côte d'Ivoire; metrics per country
    assert SmallMinesDS(merged, split="test", splits=csv_path).ids == SmallMinesDS(merged, split="test",
                                                                                     splits="country:CI").ids
    run = fit("tiny", [f"data.root={merged}", "data.splits=country:CI", "train.epochs=1", "train.batch_size=8",
                       "model.args={widths: [8, 16]}"], out=tmp_path / "run")
    scored = evaluate(run.model_path, split="test")  # the test split of the run: Côte d'Ivoire only
    metrics = json.loads((scored.out / "metrics.json").read_text())
    assert set(metrics["per_country"]) == {"CI"} and scored.per_patch[0]["country"] == "CI"
    counts = np.array([[90, 5, 3, 2], [80, 10, 4, 6], [70, 0, 0, 30]])
    result = summarize(counts, ["GH_0001_2016", "CI_0001_2016", "CI_0002_2022"], [2016, 2016, 2022], 0.5, "test",
                       np.array([5.0, 10.0, 30.0]))
    assert result.per_country["GH"]["patches"] == 1 and result.per_country["CI"]["patches"] == 2
    assert result.per_country["CI"]["iou_mining"] == pytest.approx(36 / (36 + 10 + 4))
    assert "| country CI | 2 |" in result.to_markdown() and "per_country" in result.to_dict()
    runs = [{"config": "tiny", "model": "unet", "bands": "all", "channels": 13, "params": 1000, "train_s": 1.0,
             "epochs": 1, "seed": s, "iou_mining": 0.5, "miou": 0.7, "f1_mining": 0.6, "precision_mining": 0.6,
             "recall_mining": 0.6, "iou_mining_country_GH": 0.6 + s / 10, "iou_mining_country_CI": 0.3}
            for s in (0, 1)]
    table = to_markdown(_aggregate(runs), "test", [0, 1])
    assert "Mining IoU per country" in table and "| unet | 65.00 ± 7.07 | 30.00 ± 0.00 |" in table


def test_dask_workers_write_the_same_files(scene: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("smallmines.data.build.blocks.BLOCK_TILES", 3)  # three blocks of one tile row
    stacked, labels = scene[2016]["stacked"], scene[2016]["labels"]
    here = build_dataset(tmp_path / "here", labels, "GH", 2016, stacked=stacked, keep_empty=0.5)
    there = build_dataset(tmp_path / "there", labels, "GH", 2016, stacked=stacked, keep_empty=0.5, workers=2)
    assert there.patches == here.patches and there.skipped == here.skipped
    for folder in ("SmallMinesDS/2016/IMAGE", "SmallMinesDS/2016/MASK", "data_splits"):
        for path in sorted((tmp_path / "here" / folder).iterdir()):
            assert path.read_bytes() == (tmp_path / "there" / folder / path.name).read_bytes()


def test_like_reads_a_scene_on_another_grid_onto_the_tile_grid(built: Path, scene: dict, tmp_path: Path) -> None:
    from rasterio.warp import Resampling, reproject

    with rasterio.open(scene[2022]["stacked"]) as src:  # the 2022 scene, resampled half a pixel off the grid
        profile = src.profile
        data = src.read()
        moved = src.transform * src.transform.translation(0.5, 0.5)
        target = np.full_like(data, IMAGE_NODATA)
        reproject(data, target, src_transform=src.transform, src_crs=src.crs, dst_transform=moved, dst_crs=src.crs,
                  src_nodata=IMAGE_NODATA, dst_nodata=IMAGE_NODATA, resampling=Resampling.bilinear)
    shifted = tmp_path / "shifted.tif"
    with rasterio.open(shifted, "w", **{**profile, "transform": moved}) as dst:
        dst.write(target)
    result = build_dataset(tmp_path / "ds", scene[2022]["labels"], "GH", 2022, stacked=shifted, like=built)
    grid = TileGrid.from_dict(read_record(built)["grid"])
    assert result.grid == grid and set(result.patches) == {p for p in read_split_rows(built) if p.endswith("2022")}
    record = read_record(tmp_path / "ds")["years"]["2022"]["scene"]["sources"][0]
    assert record["warped"]  # read through GDAL's warper onto the tile grid, as map does
    for ref in discover(tmp_path / "ds").patches:
        with rasterio.open(ref.image) as img:
            assert img.transform == grid.transform(grid.cell(int(ref.key.tile)))
