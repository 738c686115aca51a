"""Change between two mine maps and between the two years of a dataset: classes, areas, zones, files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import Resampling, calculate_default_transform, reproject
from shapely.geometry import box
from typer.testing import CliRunner

from smallmines.analysis.areas import change_classes, growth
from smallmines.analysis.change import compare_maps
from smallmines.analysis.maps import read_binary_map
from smallmines.analysis.tiles import dataset_change
from smallmines.errors import ChangeError, DataFormatError, MapNotFoundError
from smallmines.legend import CHANGE_NODATA, ChangeClass
from smallmines.report.figures import CHANGE_COLOURS, downsample_classes, hex_to_rgba

CRS = "EPSG:32630"
X0, Y0 = 600_000.0, 700_000.0  # upper-left corner, UTM 30N (southern Ghana)
PIXEL_HA = 0.01  # 10 m pixels


def write_raster(path: Path, data: np.ndarray, crs: str = CRS, transform=None, nodata=255) -> Path:
    transform = transform or from_origin(X0, Y0, 10, 10)
    data = data if data.ndim == 3 else data[None]
    profile = {"driver": "GTiff", "height": data.shape[1], "width": data.shape[2], "count": data.shape[0],
               "dtype": data.dtype.name, "crs": crs, "transform": transform, "nodata": nodata}
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.fixture
def maps(tmp_path: Path) -> tuple[Path, Path]:
    """Two 100 x 100 maps with known change.

    2016: mining in rows 10-19, cols 10-39 (300 px); rows 90-99 are nodata.
    2022: mining in rows 10-19, cols 20-59 (400 px): cols 10-19 ceased (100), 20-39 persistent (200),
    40-59 new (200); plus a new block rows 50-59, cols 50-59 (100 px). So: new 300, persistent 200,
    ceased 100, valid 9000 (rows 0-89).
    """
    a = np.zeros((100, 100), np.uint8)
    a[10:20, 10:40] = 1
    a[90:, :] = 255
    b = np.zeros((100, 100), np.uint8)
    b[10:20, 20:60] = 1
    b[50:60, 50:60] = 1
    return write_raster(tmp_path / "a.tif", a), write_raster(tmp_path / "b.tif", b)


def test_change_classes_cover_every_combination():
    a = np.array([[0, 0, 1, 1, 255, 0]], np.uint8)
    b = np.array([[0, 1, 1, 0, 1, 255]], np.uint8)
    assert change_classes(a, b).tolist() == [[0, 1, 2, 3, 255, 255]]
    with pytest.raises(ChangeError, match="shapes"):
        change_classes(a, b[:, :3])


def test_growth_net_relative_and_compound_rate():
    g = growth(10.0, 20.0, 2016, 2022)
    assert g["net_growth_ha"] == pytest.approx(10.0)
    assert g["net_growth_pct"] == pytest.approx(100.0)
    assert g["annual_growth_ha"] == pytest.approx(10 / 6)
    assert g["annual_growth_rate_pct"] == pytest.approx(100 * (2 ** (1 / 6) - 1))
    # compounding the rate over six years gives back the second year
    assert 10.0 * (1 + g["annual_growth_rate_pct"] / 100) ** 6 == pytest.approx(20.0)
    none_before = growth(0.0, 5.0, 2016, 2022)
    assert none_before["net_growth_pct"] is None and none_before["annual_growth_rate_pct"] is None


def test_compare_maps_writes_cog_polygons_table_and_summary(maps, tmp_path):
    out = tmp_path / "change"
    result = compare_maps(*maps, out, figures=False)

    with rasterio.open(result.change_tif) as src:
        assert src.crs.to_string() == CRS
        assert src.nodata == CHANGE_NODATA
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.colormap(1)[int(ChangeClass.NEW)] == hex_to_rgba(CHANGE_COLOURS[ChangeClass.NEW])
        change = src.read(1)
    counts = {c: int((change == c).sum()) for c in ChangeClass}
    assert counts == {ChangeClass.NO_MINING: 8400, ChangeClass.NEW: 300, ChangeClass.PERSISTENT: 200,
                      ChangeClass.CEASED: 100}
    assert (change[90:] == CHANGE_NODATA).all()

    table = pd.read_csv(result.areas_csv).set_index("class")
    assert table.loc["new mining", "area_ha"] == pytest.approx(300 * PIXEL_HA)
    assert table.loc["ceased mining", "pct_valid"] == pytest.approx(100 * 100 / 9000)
    assert table.loc["mining 2016", "area_ha"] == pytest.approx(3.0)
    assert table.loc["mining 2022", "area_ha"] == pytest.approx(5.0)
    assert table.loc["valid area", "area_ha"] == pytest.approx(90.0)
    assert table.loc[["no mining", "new mining", "persistent mining", "ceased mining"], "pct_valid"].sum() == \
        pytest.approx(100.0)

    summary = json.loads(result.summary_json.read_text())
    assert summary["net_growth_ha"] == pytest.approx(2.0)
    assert summary["annual_growth_rate_pct"] == pytest.approx(100 * ((5 / 3) ** (1 / 6) - 1))
    assert summary["overlap_fraction_a"] == pytest.approx(1.0)

    polygons = gpd.read_file(result.polygons, layer="change")
    assert polygons.crs.to_epsg() == 32630
    assert set(polygons["class"]) == {"new mining", "persistent mining", "ceased mining"}
    by_class = polygons.groupby("class")["area_ha"].sum()
    assert by_class["new mining"] == pytest.approx(3.0)
    assert by_class["ceased mining"] == pytest.approx(1.0)
    assert len(polygons[polygons["class"] == "new mining"]) == 2  # two separate new patches
    # no temporary files are left behind
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_map_in_another_crs_and_grid_is_aligned(maps, tmp_path):
    """The same 2022 map warped to EPSG:4326 gives (nearly) the same change as on the original grid."""
    with rasterio.open(maps[1]) as src:
        data, crs, transform, bounds = src.read(1), src.crs, src.transform, src.bounds
    dst_transform, w, h = calculate_default_transform(crs, "EPSG:4326", 100, 100, *bounds)
    warped = np.full((h, w), 255, np.uint8)
    reproject(data, warped, src_transform=transform, src_crs=crs, src_nodata=255, dst_transform=dst_transform,
              dst_crs="EPSG:4326", dst_nodata=255, resampling=Resampling.nearest)
    b_geo = write_raster(tmp_path / "b_4326.tif", warped, "EPSG:4326", dst_transform)

    same = compare_maps(maps[0], maps[1], tmp_path / "same", figures=False).summary
    moved = compare_maps(maps[0], b_geo, tmp_path / "moved", figures=False).summary
    assert moved["grid"]["crs"] == CRS  # compared on map A's projected grid
    for key in ("new", "persistent", "ceased"):
        assert moved["classes"][key]["area_ha"] == pytest.approx(same["classes"][key]["area_ha"], rel=0.15)
    assert moved["mining_b_ha"] == pytest.approx(5.0, rel=0.1)


def test_partly_overlapping_maps_are_compared_on_the_overlap(maps, tmp_path):
    b_shifted = tmp_path / "b_shift.tif"
    with rasterio.open(maps[1]) as src:
        write_raster(b_shifted, src.read(1), transform=from_origin(X0 + 500, Y0, 10, 10))  # 50 px east
    result = compare_maps(maps[0], b_shifted, tmp_path / "shift", figures=False)
    assert result.summary["grid"]["bounds"] == pytest.approx([X0 + 500, Y0 - 1000, X0 + 1000, Y0])
    assert result.summary["overlap_fraction_a"] == pytest.approx(0.5)
    assert result.summary["overlap_fraction_b"] == pytest.approx(0.45)  # its rows 90-99 are nodata in A


def test_geographic_map_a_is_measured_in_utm(maps, tmp_path):
    with rasterio.open(maps[0]) as src:
        data, crs, transform, bounds = src.read(1), src.crs, src.transform, src.bounds
    dst_transform, w, h = calculate_default_transform(crs, "EPSG:4326", 100, 100, *bounds)
    warped = np.full((h, w), 255, np.uint8)
    reproject(data, warped, src_transform=transform, src_crs=crs, src_nodata=255, dst_transform=dst_transform,
              dst_crs="EPSG:4326", dst_nodata=255, resampling=Resampling.nearest)
    a_geo = write_raster(tmp_path / "a_4326.tif", warped, "EPSG:4326", dst_transform)
    summary = compare_maps(a_geo, maps[1], tmp_path / "geo", figures=False).summary
    assert summary["grid"]["crs"] == "EPSG:32630"
    assert summary["mining_a_ha"] == pytest.approx(3.0, rel=0.1)


def test_zones_report_coverage_and_per_zone_tables(maps, tmp_path):
    zones = gpd.GeoDataFrame(
        {"NAME": ["inside", "half out", "far away"]},
        geometry=[box(X0, Y0 - 300, X0 + 600, Y0),  # rows 0-29, cols 0-59: the top mining blocks
                  box(X0 + 500, Y0 - 400, X0 + 1500, Y0 - 300),  # cols 50-149: half beyond the maps
                  box(X0 + 5000, Y0, X0 + 6000, Y0 + 1000)],
        crs=CRS,
    ).to_crs("EPSG:4326")  # zones in another CRS than the maps
    zones_path = tmp_path / "zones.gpkg"
    zones.to_file(zones_path)
    result = compare_maps(*maps, tmp_path / "z", zones=zones_path, zone_field="NAME", figures=False)

    table = pd.read_csv(result.zones_csv).set_index("zone")
    assert table.loc["inside", "coverage"] == "full"
    assert table.loc["inside", "covered_fraction"] == pytest.approx(1.0)
    assert table.loc["inside", "new_ha"] == pytest.approx(200 * PIXEL_HA)  # rows 10-19, cols 40-59
    assert table.loc["inside", "ceased_ha"] == pytest.approx(100 * PIXEL_HA)
    assert table.loc["inside", "mining_2016_ha"] == pytest.approx(3.0)
    assert table.loc["half out", "coverage"] == "partial"
    assert table.loc["half out", "covered_fraction"] == pytest.approx(0.5, abs=0.03)
    assert table.loc["far away", "coverage"] == "outside"
    assert table.loc["far away", "covered_fraction"] == 0
    assert math.isnan(table.loc["far away", "new_ha"])
    assert result.summary["zones"]["partial"] == ["half out"]
    assert result.summary["zones"]["outside"] == ["far away"]

    written = gpd.read_file(result.zones_gpkg, layer="zones")
    assert len(written) == 3 and "covered_fraction" in written.columns
    assert written.crs.to_epsg() == 4326  # the zones keep their own CRS


def test_bad_zone_field_lists_the_fields(maps, tmp_path):
    zones = gpd.GeoDataFrame({"district": ["a"]}, geometry=[box(X0, Y0 - 100, X0 + 100, Y0)], crs=CRS)
    with pytest.raises(ChangeError, match="district"):
        compare_maps(*maps, tmp_path / "z", zones=zones, zone_field="NAME", figures=False)


def test_probability_maps_and_missing_maps_are_refused(maps, tmp_path):
    prob = write_raster(tmp_path / "probability.tif", np.full((10, 10), 0.3, np.float32), nodata=-1)
    with pytest.raises(DataFormatError, match="probability"):
        read_binary_map(prob)
    odd = write_raster(tmp_path / "odd.tif", np.full((10, 10), 7, np.uint8))
    with pytest.raises(DataFormatError, match="7"):
        read_binary_map(odd)
    with pytest.raises(MapNotFoundError, match="nowhere"):
        compare_maps(tmp_path / "nowhere.tif", maps[1], tmp_path / "x")
    with pytest.raises(MapNotFoundError, match="mines.tif"):
        compare_maps(tmp_path, maps[1], tmp_path / "x")  # a folder without mines.tif


def test_disjoint_maps_and_reversed_years_are_errors(maps, tmp_path):
    far = write_raster(tmp_path / "far.tif", np.zeros((10, 10), np.uint8), transform=from_origin(X0 + 1e5, Y0, 10, 10))
    with pytest.raises(ChangeError, match="do not overlap"):
        compare_maps(maps[0], far, tmp_path / "x", figures=False)
    with pytest.raises(ChangeError, match="after"):
        compare_maps(*maps, tmp_path / "x", year_a=2022, year_b=2016, figures=False)


def test_years_come_from_map_folders(maps, tmp_path):
    folders = []
    for year, src in zip((2018, 2021), maps, strict=True):
        folder = tmp_path / "maps" / f"scene{year}"
        folder.mkdir(parents=True)
        (folder / "mines.tif").write_bytes(src.read_bytes())
        (folder / "summary.json").write_text(json.dumps({"year": year}))
        folders.append(folder)
    result = compare_maps(*folders, tmp_path / "c", year_a=None, year_b=None, figures=False)
    assert (result.summary["year_a"], result.summary["year_b"]) == (2018, 2021)
    assert "mining 2021" in set(result.table["class"])


def test_figures_are_written_for_papers(maps, tmp_path):
    result = compare_maps(*maps, tmp_path / "f", figures=True)
    names = sorted(p.name for p in result.figures)
    assert names == ["areas.pdf", "areas.png", "change_map.pdf", "change_map.png"]
    assert all(p.stat().st_size > 1000 for p in result.figures)


def test_overviews_keep_small_new_mines():
    change = np.zeros((64, 64), np.uint8)
    change[5, 5] = ChangeClass.NEW
    change[40:64, 40:64] = ChangeClass.PERSISTENT
    change[0:8, 56:64] = CHANGE_NODATA
    small = downsample_classes(change, 8)
    assert small.shape == (8, 8)
    assert small[0, 0] == ChangeClass.NEW  # one new pixel survives an 8x reduction
    assert small[0, 7] == CHANGE_NODATA
    assert small[6, 6] == ChangeClass.PERSISTENT


# ------------------------------------------------------------------------------------------------
# the dataset, tile by tile


def write_patch(root: Path, tile: int, year: int, mask: np.ndarray, nodata_rows: int = 0) -> None:
    """One published-layout patch at a known footprint; image bands hold -9999 in the first rows."""
    transform = from_origin(X0 + tile * 2000, Y0, 10, 10)
    image = np.full((13, 128, 128), 1000, np.float32)
    image[:, :nodata_rows] = -9999
    write_raster(root / "SmallMinesDS" / str(year) / "IMAGE" / f"IMG_GH_{tile:04d}_{year}.tif", image,
                 transform=transform, nodata=-9999)
    write_raster(root / "SmallMinesDS" / str(year) / "MASK" / f"MASK_GH_{tile:04d}_{year}.tif", mask,
                 transform=transform)


@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    empty = np.zeros((128, 128), np.uint8)
    appeared = empty.copy()
    appeared[0:10, 0:10] = 1  # 100 px
    grew_a = empty.copy()
    grew_a[50:60, 0:20] = 1  # 200 px
    grew_b = empty.copy()
    grew_b[50:60, 10:40] = 1  # 300 px, 100 of them overlap grew_a
    write_patch(root, 1, 2016, empty)
    write_patch(root, 1, 2022, appeared)
    write_patch(root, 2, 2016, grew_a)
    write_patch(root, 2, 2022, grew_b, nodata_rows=8)  # 8 nodata rows in 2022: never counted as change
    write_patch(root, 3, 2016, grew_a)  # no 2022 partner
    return root


def test_dataset_change_per_tile_and_overall(small_dataset, tmp_path):
    result = dataset_change(small_dataset, tmp_path / "dc", figures=True)
    tiles = pd.read_csv(result.tiles_csv).set_index("site")
    assert list(tiles.index) == ["GH_0001", "GH_0002"]
    assert tiles.loc["GH_0001", "status"] == "appeared"
    assert tiles.loc["GH_0001", "new_ha"] == pytest.approx(100 * PIXEL_HA)
    assert tiles.loc["GH_0002", "status"] == "grew"
    assert tiles.loc["GH_0002", "persistent_ha"] == pytest.approx(100 * PIXEL_HA)
    assert tiles.loc["GH_0002", "ceased_ha"] == pytest.approx(100 * PIXEL_HA)
    assert tiles.loc["GH_0002", "new_ha"] == pytest.approx(200 * PIXEL_HA)
    assert tiles.loc["GH_0002", "valid_ha"] == pytest.approx((128 - 8) * 128 * PIXEL_HA)
    assert tiles.loc["GH_0002", "growth_pp"] == pytest.approx(100 * 100 / ((128 - 8) * 128))

    s = json.loads(result.summary_json.read_text())
    assert s["tiles_paired"] == 2 and s["unpaired_ids"] == ["GH_0003_2016"]
    assert s["mining_a_ha"] == pytest.approx(2.0) and s["mining_b_ha"] == pytest.approx(4.0)
    assert s["annual_growth_rate_pct"] == pytest.approx(100 * (2 ** (1 / 6) - 1))
    assert s["tiles_by_status"]["appeared"] == 1 and s["tiles_by_status"]["grew"] == 1

    footprints = gpd.read_file(result.tiles_gpkg, layer="tiles").set_index("site")
    assert footprints.crs.to_epsg() == 32630
    assert footprints.loc["GH_0002"].geometry.bounds == pytest.approx((X0 + 4000, Y0 - 1280, X0 + 5280, Y0))
    assert {p.name for p in result.figures} >= {"tile_growth.png", "tile_growth.pdf"}


def test_dataset_with_one_year_is_an_error(tmp_path):
    root = tmp_path / "one"
    write_patch(root, 1, 2016, np.zeros((128, 128), np.uint8))
    with pytest.raises(ChangeError, match="two years"):
        dataset_change(root, tmp_path / "x")


# ------------------------------------------------------------------------------------------------
# command line


def test_cli_change_maps_and_dataset(maps, small_dataset, tmp_path):
    from smallmines.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["change", str(maps[0]), str(maps[1]), "-o", str(tmp_path / "cli"), "--no-figures"])
    assert res.exit_code == 0, res.output
    assert "+2.0 ha" in res.output and (tmp_path / "cli" / "change.tif").is_file()
    assert not (tmp_path / "cli" / "figures").exists()

    res = runner.invoke(app, ["change", "--dataset", str(small_dataset), "-o", str(tmp_path / "cli_ds"),
                              "--no-figures"])
    assert res.exit_code == 0, res.output
    assert "2 tiles" in res.output and (tmp_path / "cli_ds" / "tiles.gpkg").is_file()

    res = runner.invoke(app, ["change", str(maps[0])])
    assert res.exit_code == 2 and "two maps" in res.output

    prob = write_raster(tmp_path / "p.tif", np.full((10, 10), 0.4, np.float32), nodata=-1)
    res = runner.invoke(app, ["change", str(maps[0]), str(prob), "-o", str(tmp_path / "bad")])
    assert res.exit_code == 1 and "probability" in res.output


def test_change_polygons_are_valid_where_pixels_meet_at_a_corner():
    from smallmines.analysis.maps import Grid
    from smallmines.analysis.zones import change_polygons

    change = np.zeros((6, 6), np.uint8)
    change[1, 1] = change[2, 2] = change[1, 3] = ChangeClass.NEW  # a checkerboard: corners only
    change[3:5, 3:5] = ChangeClass.CEASED
    change[2, 4] = ChangeClass.CEASED  # joins the block by an edge
    grid = Grid(rasterio.crs.CRS.from_epsg(32630), from_origin(600_000, 700_000, 10, 10), 6, 6)
    polygons = change_polygons(change, grid)
    assert polygons.geometry.is_valid.all()
    assert (polygons["class"] == "new mining").sum() == 3 and (polygons["class"] == "ceased mining").sum() == 1
    assert polygons["area_ha"].sum() == pytest.approx(8 * 100 / 1e4)
