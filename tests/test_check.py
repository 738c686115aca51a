"""``check_dataset`` and ``smallmines data check``: every problem is found, named and never a traceback."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from smallmines.bands import BAND_NAMES
from smallmines.cli.data import app
from smallmines.data.check import ERROR, WARNING, check_dataset
from smallmines.data.io import read_patch
from smallmines.data.layout import discover
from smallmines.data.pack import pack_dataset

runner = CliRunner()


def run_check(*args: str):
    result = runner.invoke(app, ["check", *map(str, args)])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_clean_dataset(synth_root):
    report = check_dataset(synth_root)
    assert report.ok and report.problems == [] and report.kind == "folder"
    assert report.patches == report.usable == 32
    for year in (2016, 2022):
        row = report.counts[year]
        assert row["patches"] == row["usable"] == 16
        assert row["train"] + row["test"] == 16 and row["test"] > 0 and row["unassigned"] == 0
    # shares and band ranges agree with reading the patches directly
    images, masks = {2016: [], 2022: []}, {2016: [], 2022: []}
    for ref in discover(synth_root).patches:
        image, mask = read_patch(ref)
        images[ref.year].append(image)
        masks[ref.year].append(mask)
    for year in (2016, 2022):
        m = np.stack(masks[year])
        assert report.shares[year] == pytest.approx(100 * (m == 1).sum() / (m != 255).sum())
    stack = np.concatenate([np.stack(v) for v in images.values()])
    for i, band in enumerate(BAND_NAMES):
        r = report.band_ranges[band]
        assert r["min"] == pytest.approx(np.nanmin(stack[:, i]))
        assert r["max"] == pytest.approx(np.nanmax(stack[:, i]))
        assert r["mean"] == pytest.approx(np.nanmean(stack[:, i].astype(np.float64)), rel=1e-9)
    json.dumps(report.to_dict())


def test_zip_and_pack_reports_agree_with_folder(synth_root, synth_zip, tmp_path):
    folder = check_dataset(synth_root)
    zipped = check_dataset(synth_zip)
    assert zipped.kind == "zip" and zipped.ok
    assert (zipped.counts, zipped.shares, zipped.band_ranges) == (folder.counts, folder.shares, folder.band_ranges)
    packed = check_dataset(pack_dataset(synth_root, tmp_path / "p.smpack"))
    assert packed.kind == "pack" and packed.ok and packed.problems == []
    assert packed.counts == folder.counts and packed.shares == pytest.approx(folder.shares)
    for band in BAND_NAMES:
        assert packed.band_ranges[band] == pytest.approx(folder.band_ranges[band])


def test_cli_clean_dataset_and_json(synth_root, tmp_path):
    result = run_check(synth_root, "--json", tmp_path / "r" / "check.json")
    assert result.exit_code == 0
    assert "OK" in result.output and "mining share" in result.output and "swir2" in result.output
    saved = json.loads((tmp_path / "r" / "check.json").read_text())
    assert saved["ok"] is True and saved["counts"]["2016"]["patches"] == 16


CASES = [
    # breaker, level, fragment of the message
    ("bad_band_count", ERROR, "has 12 bands, expected 13"),
    ("wrong_dtype", ERROR, "dtype float64, expected float32"),
    ("wrong_shape", ERROR, "64 x 128 pixels"),
    ("truncate", ERROR, "probably truncated"),
    ("truncate_header", ERROR, "cannot be opened as a GeoTIFF"),
    ("not_a_tiff", ERROR, "cannot be opened as a GeoTIFF"),
    ("mask_value", ERROR, "values 7 outside"),
    ("mask_crs", ERROR, "is on CRS EPSG:32631 but its image"),
    ("remove_mask", ERROR, "has no mask MASK_GH_0001_2016.tif"),
    ("remove_image", ERROR, "has no image IMG_GH_0001_2016.tif"),
    ("remove_split", ERROR, "is missing: no official split"),
    ("all_nodata", WARNING, "every pixel is nodata"),
]


@pytest.mark.parametrize(("breaker", "level", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_each_problem_is_found_and_named(broken, breaker, level, fragment):
    path = getattr(broken, breaker)()
    report = check_dataset(broken.root)
    found = [p for p in report.problems if fragment in p.message]
    assert len(found) == 1, report.problems
    assert found[0].level == level
    assert found[0].path.endswith(path)
    assert report.ok is (level == WARNING)
    result = run_check(broken.root)
    assert result.exit_code == (0 if level == WARNING else 1)
    assert path in result.output and fragment in result.output
    assert ("NOT USABLE" in result.output) is (level == ERROR)


def test_problems_elsewhere_do_not_stop_the_check(broken):
    broken.bad_band_count(0)
    broken.mask_value(0)  # the same patch: both files reported
    broken.not_a_tiff(5)
    report = check_dataset(broken.root)
    assert len(report.errors) == 3
    assert report.patches == 8 and report.usable == 6
    assert report.counts[2016]["usable"] + report.counts[2022]["usable"] == 6


def test_split_file_problems(broken):
    csv = broken.root / "data_splits" / "train_test_splits_2022.csv"
    lines = csv.read_text().splitlines()
    dropped = lines.pop(3).split(",")[0]
    lines.append("IMG_GH_0099_2022.tif,1.0,1,train")
    csv.write_text("\n".join(lines) + "\n")
    report = check_dataset(broken.root)
    assert report.ok
    unmatched = [p for p in report.problems if "match no patch" in p.message]
    assert len(unmatched) == 1 and unmatched[0].path == str(csv) and "IMG_GH_0099_2022.tif" in unmatched[0].message
    absent = [p for p in report.problems if "absent from the split file" in p.message]
    assert len(absent) == 1 and Path(absent[0].path).name == dropped and absent[0].level == WARNING
    assert report.counts[2022]["unassigned"] == 1
    csv.write_text("name,split\nx,train\n")
    report = check_dataset(broken.root)
    assert not report.ok and any(p.path == str(csv) and "columns" in p.message for p in report.errors)


def test_crs_warnings(broken, write_tif):
    ref = broken.ref(2)
    data, transform, _ = broken._profile(ref.image)
    write_tif(ref.image, data, None, transform, nodata=-9999)
    report = check_dataset(broken.root)
    assert report.ok
    assert [p.path for p in report.warnings if "has no CRS" in p.message] == [ref.image]
    # both files on another CRS: consistent pair, but unlike the other tiles
    other = broken.ref(4)
    for path, nodata in ((other.image, -9999), (other.mask, 255)):
        data, transform, _ = broken._profile(path)
        write_tif(path, data, "EPSG:32631", transform, nodata=nodata)
    report = check_dataset(broken.root)
    assert [p.path for p in report.warnings if "is on CRS EPSG:32631 while" in p.message] == [other.image]


def test_footprint_mismatch(broken, write_tif):
    ref = broken.ref(1)
    data, transform, crs = broken._profile(ref.mask)
    write_tif(ref.mask, data, crs, transform @ transform.translation(5, 0), nodata=255)
    report = check_dataset(broken.root)
    assert not report.ok and [p.path for p in report.errors if "covers" in p.message] == [ref.mask]


def test_unusable_paths(tmp_path):
    missing = check_dataset(tmp_path / "nope")
    assert not missing.ok and "no such file" in missing.errors[0].message
    bad_zip = tmp_path / "SmallMinesDS.zip"
    bad_zip.write_bytes(b"garbage")
    report = check_dataset(bad_zip)
    assert not report.ok and report.errors[0].path == str(bad_zip)
    for path in (tmp_path / "nope", bad_zip):
        result = run_check(path)
        assert result.exit_code == 1 and str(path) in result.output


def test_many_problems_are_capped_in_the_terminal_not_in_json(broken, tmp_path, monkeypatch):
    monkeypatch.setattr("smallmines.cli.data.MAX_PROBLEMS", 3)
    for i in range(len(broken.layout.patches)):
        broken.remove_mask(i)
    (broken.root / "SmallMinesDS" / "2016" / "IMAGE" / "junk.tif").write_bytes(b"")
    report = check_dataset(broken.root)
    assert not report.ok and report.patches == 0
    assert any("no complete image/mask pair" in p.message for p in report.errors)
    result = run_check(broken.root, "--json", tmp_path / "all.json")
    assert result.exit_code == 1
    assert f"... and {len(report.problems) - 3} more problems" in result.output
    assert len(json.loads((tmp_path / "all.json").read_text())["problems"]) == len(report.problems)


def test_edge_patches_are_padded_used_and_reported_as_warnings(broken):
    from smallmines.data.io import read_patch

    path = broken.edge_patch(0, 13, 36)
    report = check_dataset(broken.root)
    assert report.ok and not report.errors
    (warning,) = [p for p in report.problems if "edge patch" in p.message]
    assert warning.level == WARNING and warning.path == path and "13 x 36" in warning.message
    image, mask = read_patch(broken.ref(0))
    assert image.shape == (13, 128, 128) and mask.shape == (128, 128)
    assert np.isnan(image[:, 13:, :]).all() and np.isnan(image[:, :, 36:]).all()
    assert (mask[13:, :] == 255).all() and (mask[:, 36:] == 255).all() and (mask[:13, :36] != 255).any()
    result = run_check(broken.root)
    assert result.exit_code == 0 and "edge patch" in result.output


def test_a_missing_dataset_is_one_error_naming_the_path_once(tmp_path):
    missing = tmp_path / "nowhere"
    report = check_dataset(missing)
    assert not report.usable and len(report.problems) == 1
    line = str(report.problems[0])
    assert line.count(str(missing)) == 1 and "no such file or folder" in line and "data synth" in line
