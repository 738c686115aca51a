"""Area estimates and accuracy of a change map from a labelled stratified sample (Olofsson et al., 2014).

The worked example is section 5 of Olofsson, P., Foody, G. M., Herold, M., Stehman, S. V., Woodcock,
C. E. and Wulder, M. A. (2014), Good practices for estimating area and assessing accuracy of land
change, Remote Sensing of Environment 148: 42-57: four strata (deforestation, forest gain, stable
forest, stable non-forest) of 200,000, 150,000, 3,200,000 and 6,450,000 mapped 30 m pixels (0.09 ha),
the sample counts of its Table 8, the area proportions of its Table 9 and the estimates its text
reports (areas in hectares with 95 % intervals, user's, producer's and overall accuracy).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.transform import from_origin
from typer.testing import CliRunner

from smallmines.analysis.accuracy import allocate_sample, error_matrix, estimate_areas
from smallmines.analysis.change import compare_maps
from smallmines.analysis.sampling import assess_change, draw_sample, sample_pixels
from smallmines.errors import ChangeError, DataFormatError

# Olofsson et al. (2014), Table 8: rows map class, columns reference class
COUNTS = np.array([[66, 0, 5, 4],
                   [0, 55, 8, 12],
                   [1, 0, 153, 11],
                   [2, 1, 9, 313]])
MAPPED = [200_000, 150_000, 3_200_000, 6_450_000]
PIXEL_HA = 0.09
TABLE9 = np.array([[0.0176, 0.0000, 0.0013, 0.0011],
                   [0.0000, 0.0110, 0.0016, 0.0024],
                   [0.0019, 0.0000, 0.2967, 0.0213],
                   [0.0040, 0.0020, 0.0179, 0.6212]])


def test_olofsson_2014_worked_example():
    est = estimate_areas(COUNTS, MAPPED, PIXEL_HA, ["deforestation", "forest gain", "stable forest",
                                                    "stable non-forest"])
    np.testing.assert_allclose(est.proportions, TABLE9, atol=5e-5)  # Table 9, four decimals
    # areas in ha with their 95 % half-widths, as the paper reports them (rounded to 1 ha)
    np.testing.assert_allclose(est.area_ha, [21_158, 11_686, 285_770, 581_386], atol=0.5)
    np.testing.assert_allclose(est.area_ci_ha, [6_158, 3_756, 15_510, 16_282], atol=0.5)
    # deforestation in pixels: 235,086 +- 68,418
    assert est.area_ha[0] / PIXEL_HA == pytest.approx(235_086, abs=1)
    assert est.area_ci_ha[0] / PIXEL_HA == pytest.approx(68_418, abs=1.5)
    np.testing.assert_allclose(est.users, [0.88, 0.73, 0.93, 0.96], atol=0.005)
    np.testing.assert_allclose(est.z * est.users_se, [0.07, 0.10, 0.04, 0.02], atol=0.005)
    np.testing.assert_allclose(est.producers, [0.75, 0.85, 0.93, 0.96], atol=0.005)
    assert est.overall == pytest.approx(0.95, abs=0.005)
    assert est.z * est.overall_se == pytest.approx(0.02, abs=0.005)
    # producer's accuracy intervals: the paper prints 0.21, 0.23, 0.03, 0.01; eq. 7 reproduces 0.21 and
    # 0.03, and gives 0.25 and 0.02 for forest gain and stable non-forest (as other implementations do)
    np.testing.assert_allclose(est.z * est.producers_se, [0.2133, 0.2544, 0.0343, 0.0184], atol=5e-4)
    table = est.table()
    assert table["ci_low_ha"].iloc[0] == pytest.approx(21_158 - 6_158, abs=1)
    assert table["mapped_ha"].sum() == pytest.approx(900_000)


def test_unsampled_mapped_stratum_and_shape_errors():
    counts = COUNTS.copy()
    counts[1] = 0
    with pytest.raises(ChangeError, match="forest gain"):
        estimate_areas(counts, MAPPED, labels=["deforestation", "forest gain", "sf", "snf"])
    with pytest.raises(ChangeError, match="4 x 4"):
        estimate_areas(COUNTS[:3], MAPPED)
    # an empty stratum without points is fine; one point gives an estimate but no standard error
    est = estimate_areas(np.array([[5, 1], [0, 0]]), [100, 0])
    assert est.area_ha.tolist() == pytest.approx([100 * 5 / 6, 100 / 6])
    single = estimate_areas(np.array([[1, 0], [0, 4]]), [10, 90])
    assert np.isnan(single.area_se_ha).all()


def test_error_matrix_counts_and_rejects_unknown_codes():
    m = error_matrix([0, 0, 1, 3, 3], [0, 1, 1, 3, 2], 4)
    assert m.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]]
    with pytest.raises(ChangeError, match="code 7"):
        error_matrix([0, 7], [0, 1], 4)


def test_allocation_minimum_for_rare_classes_rest_proportional():
    # 400 points: proportional shares would be 360, 2, 36, 2; three strata are lifted to the minimum
    assert allocate_sample([90_000, 500, 9_000, 500], 400, min_per_class=50).tolist() == [250, 50, 50, 50]
    # 1000 points: the two rare strata get 50, the other 900 go 90,000 : 9,000 (818.2 : 81.8)
    assert allocate_sample([90_000, 500, 9_000, 500], 1000).tolist() == [818, 50, 82, 50]
    # fewer points than strata x minimum: an equal share; a stratum never gets more than its pixels
    assert allocate_sample([1000, 1000, 1000, 1000], 40).tolist() == [10, 10, 10, 10]
    assert allocate_sample([1000, 3, 0, 1000], 60).tolist() == [29, 3, 0, 28]
    with pytest.raises(ChangeError, match="between 1 and"):
        allocate_sample([10, 0, 0, 0], 11)


# ------------------------------------------------------------------------------------------------
# Monte Carlo: the interval covers the true area at about the nominal rate


def _synthetic_truth_and_map(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A true change raster (blocks of mining, about 15 % of 300 x 300 pixels) and an error-prone map of it."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((300, 300), np.uint8)
    for code, blocks in ((1, 80), (2, 50), (3, 40)):
        for _ in range(blocks):
            r, c = rng.integers(0, 285, 2)
            truth[r:r + rng.integers(5, 15), c:c + rng.integers(5, 15)] = code
    confusion = np.array([[0.97, 0.02, 0.005, 0.005],  # row: true class, columns: mapped class
                          [0.10, 0.75, 0.10, 0.05],
                          [0.05, 0.10, 0.80, 0.05],
                          [0.12, 0.05, 0.13, 0.70]])
    u = rng.random(truth.shape)
    mapped = (u[..., None] > confusion.cumsum(axis=1)[truth]).sum(axis=-1).astype(np.uint8)
    return truth, mapped


def test_intervals_cover_the_true_area_at_the_nominal_rate():
    truth, mapped = _synthetic_truth_and_map()
    true_px = np.bincount(truth.ravel(), minlength=4)
    mapped_px = np.bincount(mapped.ravel(), minlength=4)
    assert abs(mapped_px[1] - true_px[1]) > 500  # the map's pixel count of new mining is biased
    sizes = allocate_sample(mapped_px, 800, min_per_class=60)
    rng = np.random.default_rng(0)
    flat_truth = truth.ravel()
    covered, total = np.zeros(4), np.zeros(4)
    repeats = 200
    for _ in range(repeats):
        flat, strata = sample_pixels(mapped, sizes, rng)
        est = estimate_areas(error_matrix(strata, flat_truth[flat], 4), mapped_px)
        covered += np.abs(est.area_ha - true_px) <= est.area_ci_ha
        total += est.area_ha
    rate = covered / repeats
    assert ((rate >= 0.88) & (rate <= 0.99)).all(), rate
    # unbiased: the mean estimate lies far closer to the truth than the pixel count
    assert abs(total[1] / repeats - true_px[1]) < abs(mapped_px[1] - true_px[1]) / 5


# ------------------------------------------------------------------------------------------------
# files: sample, label, estimate


CRS = "EPSG:32630"


def _write(path: Path, data: np.ndarray) -> Path:
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
                       dtype="uint8", crs=CRS, transform=from_origin(600_000, 700_000, 10, 10), nodata=255) as dst:
        dst.write(data, 1)
    return path


@pytest.fixture
def change_dir(tmp_path: Path) -> Path:
    a = np.zeros((100, 100), np.uint8)
    a[10:30, 10:40] = 1
    a[90:, :] = 255
    b = np.zeros((100, 100), np.uint8)
    b[10:30, 25:70] = 1
    b[50:60, 50:60] = 1
    compare_maps(_write(tmp_path / "a.tif", a), _write(tmp_path / "b.tif", b), tmp_path / "change", figures=False)
    return tmp_path / "change"


def test_sample_is_stratified_seeded_and_lies_on_its_strata(change_dir):
    res = draw_sample(change_dir, 120, seed=4, min_per_class=20)
    csv = pd.read_csv(res.csv, keep_default_na=False)
    assert list(csv.columns) == ["id", "x", "y", "lon", "lat", "stratum", "map_class", "reference"]
    assert (csv["reference"] == "").all() and len(csv) == 120
    with rasterio.open(change_dir / "change.tif") as src:
        data = src.read(1)
        cols, rows = ~src.transform * (csv["x"].to_numpy(), csv["y"].to_numpy())
    rows, cols = np.floor(rows).astype(int), np.floor(cols).astype(int)
    assert (data[rows, cols] == csv["stratum"].to_numpy()).all()
    assert csv["stratum"].value_counts().sort_index().tolist() == res.allocation["samples"].tolist()
    assert res.allocation["samples"].tolist()[1:] == [20, 20, 20]  # new, persistent, ceased: the minimum
    assert not csv.duplicated(["x", "y"]).any()
    assert csv["lon"].between(-3.1, -2.0).all() and csv["lat"].between(6.0, 6.4).all()
    import geopandas as gpd

    points = gpd.read_file(res.gpkg, layer="sample")
    assert points.crs.to_epsg() == 32630 and points.geometry.is_valid.all() and len(points) == 120
    again = draw_sample(change_dir, 120, seed=4, min_per_class=20, out_dir=change_dir / "again")
    assert again.points[["x", "y"]].equals(res.points[["x", "y"]])
    design = json.loads(res.design_json.read_text())
    assert design["seed"] == 4 and design["n"] == 120 and len(design["strata"]) == 4


def test_labelled_sample_gives_estimates_in_the_change_folder(change_dir):
    res = draw_sample(change_dir, 120, seed=1, min_per_class=20)
    csv = pd.read_csv(res.csv, keep_default_na=False)
    # the interpreter agrees with the map except: 5 "new" points are really no mining; one point skipped
    csv["reference"] = csv["map_class"]
    new = csv.index[csv["stratum"] == 1][:5]
    csv.loc[new, "reference"] = "0"
    csv.loc[csv.index[csv["stratum"] == 0][0], "reference"] = ""
    labelled = change_dir / "labelled.csv"
    csv.to_csv(labelled, index=False)
    out = assess_change(change_dir, labelled)
    assert out.labelled == 119 and out.unlabelled == 1
    table = pd.read_csv(change_dir / "area_estimates.csv")
    row = table.set_index("class").loc["new mining"]
    assert row["users_accuracy"] == pytest.approx(15 / 20)
    assert row["estimated_ha"] == pytest.approx(row["mapped_ha"] * 15 / 20)  # no omission found
    assert row["ci_low_ha"] < row["estimated_ha"] < row["ci_high_ha"]
    acc = json.loads((change_dir / "accuracy.json").read_text())
    assert np.sum(acc["error_matrix_proportions"]) == pytest.approx(1.0)
    assert acc["error_matrix_counts"][1][0] == 5
    summary = json.loads((change_dir / "summary.json").read_text())
    assert summary["area_estimates"]["classes"]["new"]["estimated_ha"] == pytest.approx(row["estimated_ha"])
    assert summary["classes"]["new"]["area_ha"] == pytest.approx(row["mapped_ha"])  # pixel counts kept

    import geopandas as gpd

    points = gpd.read_file(res.gpkg)
    points["reference"] = points["map_class"].str.upper()
    points.to_file(change_dir / "labelled.gpkg", driver="GPKG")
    assert assess_change(change_dir / "change.tif", change_dir / "labelled.gpkg").estimate.overall == 1.0


def test_bad_labels_and_foreign_samples_are_refused(change_dir, tmp_path):
    res = draw_sample(change_dir, 80, seed=2, min_per_class=15)
    csv = pd.read_csv(res.csv, keep_default_na=False)
    with pytest.raises(ChangeError, match="none of its 80 points"):
        assess_change(change_dir, res.csv)
    csv["reference"] = "mining"
    csv.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataFormatError, match="row 1: reference 'mining' is not a change class"):
        assess_change(change_dir, tmp_path / "bad.csv")
    csv["reference"] = csv["stratum"]
    csv["x"] += 1000.0  # drawn elsewhere
    csv.to_csv(tmp_path / "moved.csv", index=False)
    with pytest.raises(ChangeError, match="another change map"):
        assess_change(change_dir, tmp_path / "moved.csv")
    with pytest.raises(ChangeError, match="between 1 and"):
        draw_sample(change_dir, 10**6)


def test_cli_sample_and_change_with_reference(change_dir, tmp_path):
    from smallmines.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["sample", str(change_dir), "-n", "100", "--min-per-class", "20", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert "new mining" in res.output and (change_dir / "sample.gpkg").is_file()
    csv = pd.read_csv(change_dir / "sample.csv", keep_default_na=False)
    csv["reference"] = csv["stratum"]
    csv.to_csv(tmp_path / "labelled.csv", index=False)
    res = runner.invoke(app, ["change", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "-o", str(change_dir),
                              "--no-figures", "--overwrite", "--reference", str(tmp_path / "labelled.csv")])
    assert res.exit_code == 0, res.output
    assert "95 %" in res.output and "overall accuracy 1.00" in res.output
    assert (change_dir / "accuracy.json").is_file()
    (change_dir / "accuracy.json").unlink()
    res = runner.invoke(app, ["change", "-o", str(change_dir), "--reference", str(tmp_path / "labelled.csv")])
    assert res.exit_code == 0, res.output  # an existing change folder, assessed as it is
    assert "overall accuracy 1.00" in res.output and (change_dir / "accuracy.json").is_file()
    res = runner.invoke(app, ["sample", str(tmp_path / "nowhere"), "-n", "10"])
    assert res.exit_code == 1 and "no change raster" in res.output


def test_report_shows_estimates_beside_pixel_counts(change_dir):
    from smallmines.report.build import _change_section
    from smallmines.report.inputs import _change_folder
    from smallmines.report.sections import _Figures

    plain = _change_section(_change_folder(change_dir, []), _Figures(None), [], False)
    assert "labelled sample" not in str(plain.html)
    res = draw_sample(change_dir, 100, seed=5, min_per_class=20)
    csv = pd.read_csv(res.csv, keep_default_na=False)
    csv["reference"] = csv["stratum"]
    csv.to_csv(change_dir / "labelled.csv", index=False)
    assess_change(change_dir, change_dir / "labelled.csv")
    html = str(_change_section(_change_folder(change_dir, []), _Figures(None), [], False).html)
    assert "Area estimates from a labelled sample" in html and "100 labelled points" in html
    assert "overall accuracy 1.00" in html
