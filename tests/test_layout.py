"""Finding files (layout) and reading one patch (io)."""

import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smallmines.data.io import read_image, read_info, read_mask, read_patch
from smallmines.data.layout import PatchKey, discover, find_split_files, image_name, mask_name, parse_name, read_text
from smallmines.errors import CorruptFileError, DataFormatError, DatasetNotFoundError


def touch(root: Path, *members: str) -> Path:
    """Empty files under the given relative names: discover only looks at names."""
    for member in members:
        path = root / member
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return root


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "kind", "key"),
    [
        ("IMG_GH_0001_2016.tif", "IMG", PatchKey("0001", 2016, "GH")),
        ("MASK_GH_0042_2022.tif", "MASK", PatchKey("0042", 2022, "GH")),
        ("IMG_0007_2016.tif", "IMG", PatchKey("0007", 2016, "")),
        ("mask_ci_12_2019.TIFF", "MASK", PatchKey("12", 2019, "CI")),
        ("a/b/IMG_BFA_0003_2023.tif", "IMG", PatchKey("0003", 2023, "BFA")),
    ],
)
def test_parse_name(name, kind, key):
    assert parse_name(name) == (kind, key)


@pytest.mark.parametrize("name", ["IMG_GH_0001.tif", "IMG_GH_0001_2016.png", "preview.tif", "IMG_GH_x1_2016.tif"])
def test_parse_name_rejects(name):
    assert parse_name(name) is None


@given(st.integers(0, 99999), st.integers(1900, 2100), st.sampled_from(["GH", "CI", "BFA", None]))
def test_names_round_trip(tile, year, country):
    for kind, name in (("IMG", image_name(tile, year, country)), ("MASK", mask_name(tile, year, country))):
        parsed_kind, key = parse_name(name)
        assert parsed_kind == kind
        assert (int(key.tile), key.year, key.country or None) == (tile, year, country)
        assert key.id == (f"{country}_" if country else "") + f"{tile:04d}_{year}"


# ----------------------------------------------------------------------------- discover


def test_discover_folder(synth_root):
    layout = discover(synth_root)
    assert not layout.is_zip
    assert layout.years == [2016, 2022]
    assert len(layout.patches) == 32 and not layout.orphans
    assert sorted(layout.split_files) == [2016, 2022]
    first = layout.patches[0]
    assert first.id == "GH_0001_2016" and first.key.site == "GH_0001"
    assert Path(first.image).name == "IMG_GH_0001_2016.tif" and Path(first.mask).name == "MASK_GH_0001_2016.tif"
    # sorted by year, then tile
    assert [p.year for p in layout.patches] == sorted(p.year for p in layout.patches)


def test_discover_zip_in_place(synth_zip):
    layout = discover(synth_zip)
    assert layout.is_zip and len(layout.patches) == 32
    assert layout.patches[0].image.startswith("/vsizip/") and layout.patches[0].image.endswith("IMG_GH_0001_2016.tif")
    assert read_image(layout.patches[0].image).shape == (13, 128, 128)
    assert "patch_name" in read_text(layout.split_files[2016])


def test_discover_the_smallminesds_folder_itself(synth_root):
    layout = discover(Path(synth_root) / "SmallMinesDS")
    assert len(layout.patches) == 32 and not layout.split_files
    # the split files beside it are still found
    assert sorted(find_split_files(layout)) == [2016, 2022]


def test_discover_without_country(synth_nocountry):
    layout = discover(synth_nocountry)
    assert len(layout.patches) == 32
    assert layout.patches[0].id == "0001_2016" and layout.patches[0].key.country == ""


def test_discover_other_countries_years_orphans_and_junk(tmp_path):
    touch(tmp_path, "CI/2019/IMAGE/IMG_CI_0002_2019.tif", "CI/2019/MASK/MASK_CI_0002_2019.tif",
          "x/IMG_GH_0010_2016.tif", "x/MASK_GH_0010_2016.tif", "x/IMG_GH_0009_2016.tif", "x/MASK_GH_0009_2016.tif",
          "x/IMG_GH_10000_2016.tif", "x/MASK_GH_10000_2016.tif",
          "x/IMG_GH_0003_2016.tif",  # no mask
          "x/MASK_GH_0004_2016.tif",  # no image
          "y/IMG_GH_0010_2016.tiff",  # duplicate
          "x/notes.tif", "__MACOSX/x/._IMG_GH_0010_2016.tif", "x/.IMG_GH_0011_2016.tif",
          "scenes/scene_2016.tif", "scenes/scene_2016_dem.tif")  # rasters beside the dataset: not misnamed patches
    layout = discover(tmp_path)
    assert [p.id for p in layout.patches] == ["GH_0009_2016", "GH_0010_2016", "GH_10000_2016", "CI_0002_2019"]
    assert sorted(Path(o).name for o in layout.orphans) == ["IMG_GH_0003_2016.tif", "MASK_GH_0004_2016.tif"]
    assert [Path(d).name for d in layout.duplicates] == ["IMG_GH_0010_2016.tiff"]
    assert [Path(i).name for i in layout.ignored] == ["notes.tif"]
    assert layout.years == [2016, 2019]


def test_discover_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no such file"):
        discover(tmp_path / "missing")
    touch(tmp_path, "empty/readme.txt")
    with pytest.raises(DatasetNotFoundError, match="no SmallMinesDS patches"):
        discover(tmp_path / "empty")
    bad_zip = tmp_path / "SmallMinesDS.zip"
    bad_zip.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(CorruptFileError) as info:
        discover(bad_zip)
    assert info.value.path == str(bad_zip)
    # a folder holding only the zip suggests the zip
    with pytest.raises(DatasetNotFoundError, match="did you mean"):
        discover(tmp_path)


def test_read_text_zip_member_bom_and_missing(tmp_path):
    archive = tmp_path / "odd.name.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data_splits/train_test_splits_2016.csv", "\ufeffpatch_name,split\nGH_0001_2016,train\n")
    text = read_text(f"/vsizip/{archive}/data_splits/train_test_splits_2016.csv")
    assert text.startswith("patch_name")
    with pytest.raises(DatasetNotFoundError):
        read_text(f"/vsizip/{archive}/nope.csv")
    with pytest.raises(DatasetNotFoundError):
        read_text(tmp_path / "nope.csv")


def test_split_files_beside_a_zip(synth_zip, tmp_path):
    # a zip without split members, with data_splits/ next to it
    stripped = tmp_path / "SmallMinesDS.zip"
    with zipfile.ZipFile(synth_zip) as src, zipfile.ZipFile(stripped, "w") as dst:
        for item in src.infolist():
            if not item.filename.startswith("data_splits"):
                dst.writestr(item, src.read(item))
    layout = discover(stripped)
    assert not layout.split_files
    touch(tmp_path, "data_splits/train_test_splits_2016.csv")
    assert list(find_split_files(layout)) == [2016]


# ----------------------------------------------------------------------------- io


def test_read_patch_values(synth_root):
    layout = discover(synth_root)
    with_nodata = []
    for ref in layout.patches:
        image, mask = read_patch(ref)
        assert image.shape == (13, 128, 128) and image.dtype == np.float32
        assert mask.shape == (128, 128) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1, 255}
        assert not (image == -9999).any()
        # every NaN pixel is nodata in the mask
        assert (mask[np.isnan(image).any(axis=0)] == 255).all()
        if np.isnan(image).any():
            with_nodata.append(ref.id)
    assert with_nodata, "the synthetic data should hold some nodata to test"
    info = read_info(layout.patches[0].image)
    assert (info.count, info.height, info.width, info.dtype, info.nodata) == (13, 128, 128, "float32", -9999)
    assert info.crs == "EPSG:32630"


@pytest.mark.parametrize(
    ("breaker", "error", "message"),
    [
        ("bad_band_count", DataFormatError, "has 12 bands, expected 13"),
        ("wrong_dtype", DataFormatError, "dtype float64, expected float32"),
        ("wrong_shape", DataFormatError, "64 x 128 pixels but its mask"),
        ("truncate", CorruptFileError, "cannot be decoded, the file is probably truncated"),
        ("truncate_header", CorruptFileError, "cannot be opened as a GeoTIFF"),
        ("not_a_tiff", CorruptFileError, "cannot be opened as a GeoTIFF"),
        ("mask_value", DataFormatError, "values 7 outside"),
        ("all_nodata", DataFormatError, "every pixel is nodata"),
    ],
)
def test_read_patch_errors_name_the_file(broken, breaker, error, message):
    path = getattr(broken, breaker)()
    with pytest.raises(error, match=message) as info:
        read_patch(broken.ref(0))
    assert info.value.path == path
    assert str(info.value).startswith(path)


def test_read_mask_accepts_integer_valued_floats(write_tif, tmp_path):
    path = write_tif(tmp_path / "m.tif", np.array([[[0.0, 1.0], [255.0, 1.0]]], np.float32))
    np.testing.assert_array_equal(read_mask(str(path), size=2), [[0, 1], [255, 1]])
    path = write_tif(tmp_path / "f.tif", np.array([[[0.5, 1.0], [0.0, 1.0]]], np.float32))
    with pytest.raises(DataFormatError, match="non-integer"):
        read_mask(str(path), size=2)


def test_read_image_rejects_stored_nan(write_tif, tmp_path):
    data = np.ones((13, 128, 128), np.float32)
    data[0, 0, 0] = np.nan
    path = write_tif(tmp_path / "nan.tif", data)
    with pytest.raises(DataFormatError, match="NaN or infinite"):
        read_image(str(path))
