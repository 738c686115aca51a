"""The synthetic twin: published layout, georeference, determinism, realism and seamless scenes."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from smallmines.bands import BAND_NAMES, IMAGE_NODATA, MASK_NODATA
from smallmines.data import synth
from smallmines.data.layout import discover, split_csv_name
from smallmines.errors import ConfigError

YEARS = (2016, 2022)
TARGETS = {  # mean and std of the real dataset (January composites)
    "blue": (1474, 223), "green": (1703, 286), "red": (1697, 414),
    "rededge4": (3832, 390), "swir1": (3156, 451), "swir2": (2226, 468),
}


@pytest.fixture(scope="module")
def dataset64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth.synthesize_dataset(tmp_path_factory.mktemp("synth64"), tiles=64, seed=0)


@pytest.fixture(scope="module")
def patches64(dataset64: Path) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray, Affine]]:
    """(tile, year) -> (raw image, mask, transform) of the 64-tile dataset."""
    out = {}
    for ref in discover(dataset64).patches:
        with rasterio.open(ref.image) as img, rasterio.open(ref.mask) as msk:
            out[int(ref.key.tile), ref.year] = (img.read(), msk.read(1), img.transform)
    return out


def _members(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def _row_col(transform: Affine) -> tuple[int, int]:
    """World pixel of a raster's top-left corner."""
    return (round((synth.WORLD_ORIGIN[1] - transform.f) / synth.PIXEL_SIZE),
            round((transform.c - synth.WORLD_ORIGIN[0]) / synth.PIXEL_SIZE))


# ---------------------------------------------------------------------------- layout and formats


def test_layout_is_exactly_the_published_one(synth_root: Path) -> None:
    names = set(_members(synth_root))
    expected = {f"data_splits/{split_csv_name(y)}" for y in YEARS}
    for year in YEARS:
        for tile in range(1, 17):
            expected |= {f"SmallMinesDS/{year}/IMAGE/IMG_GH_{tile:04d}_{year}.tif",
                         f"SmallMinesDS/{year}/MASK/MASK_GH_{tile:04d}_{year}.tif"}
    assert names == expected


def test_country_none_drops_the_code(synth_nocountry: Path) -> None:
    names = set(_members(synth_nocountry))
    assert "SmallMinesDS/2016/IMAGE/IMG_0001_2016.tif" in names
    assert "SmallMinesDS/2022/MASK/MASK_0016_2022.tif" in names
    assert not any("_GH_" in n for n in names)


def test_image_and_mask_formats(synth_root: Path) -> None:
    ref = discover(synth_root).patches[0]
    with rasterio.open(ref.image) as img:
        assert (img.count, img.height, img.width, img.dtypes[0]) == (13, 128, 128, "float32")
        assert img.nodata == IMAGE_NODATA and img.descriptions == BAND_NAMES
        assert img.crs.to_epsg() == 32630 and img.res == (10.0, 10.0)
    with rasterio.open(ref.mask) as msk:
        assert (msk.count, msk.height, msk.width, msk.dtypes[0]) == (1, 128, 128, "uint8")
        assert msk.nodata == MASK_NODATA and msk.crs.to_epsg() == 32630
        assert set(np.unique(msk.read())) <= {0, 1, MASK_NODATA}


def test_footprints_are_distinct_in_ghana_and_fixed_across_years(patches64: dict) -> None:
    footprints = {year: {tile: t for (tile, y), (_, _, t) in patches64.items() if y == year}
                  for year in YEARS}
    assert footprints[2016] == footprints[2022]
    corners = [_row_col(t) for t in footprints[2016].values()]
    assert len(set(corners)) == 64
    rows, cols = np.array(corners).T
    near = np.abs(rows[:, None] - rows[None]) < 128
    overlap = near & (np.abs(cols[:, None] - cols[None]) < 128)
    assert overlap.sum() == 64  # only each tile with itself
    for t in footprints[2016].values():
        assert 550_000 < t.c < 750_000 and 550_000 < t.f < 800_000  # south-western Ghana, UTM 30N


def test_dem_is_the_same_ground_in_both_years(patches64: dict) -> None:
    for tile in (1, 20, 40):
        dem16, dem22 = patches64[tile, 2016][0][12], patches64[tile, 2022][0][12]
        valid = (dem16 != IMAGE_NODATA) & (dem22 != IMAGE_NODATA)
        np.testing.assert_array_equal(dem16[valid], dem22[valid])
        assert 40 < dem16[valid].min() and dem16[valid].max() < 400


# ---------------------------------------------------------------------------- determinism


def test_same_seed_same_files_and_zip_holds_them(synth_root: Path, synth_zip: Path) -> None:
    folder = _members(synth_root)
    with zipfile.ZipFile(synth_zip) as archive:
        zipped = {n: archive.read(n) for n in archive.namelist() if not n.endswith("/")}
    assert synth_zip.name == "SmallMinesDS.zip"
    assert zipped == folder  # built twice, independently (1 and 2 processes): byte-identical
    assert not (synth_zip.parent / "SmallMinesDS").exists()


def test_another_seed_gives_another_world(synth_root: Path, tmp_path: Path) -> None:
    other = synth.synthesize_dataset(tmp_path, tiles=16, seed=1, years=(2016,))
    a = discover(synth_root).patches[0]
    b = discover(other).patches[0]
    with rasterio.open(a.image) as x, rasterio.open(b.image) as y:
        assert x.transform != y.transform or not np.array_equal(x.read(), y.read())
    first, second = (synth.render(0, 0, 32, 32, 2016, seed)[0] for seed in (0, 1))
    assert not np.array_equal(first, second)


def test_render_is_deterministic_and_windows_are_seamless() -> None:
    image, mask = synth.render(1001, 2003, 200, 180, 2022, seed=5)
    again, _ = synth.render(1001, 2003, 200, 180, 2022, seed=5)
    assert image.dtype == np.float32 and image.shape == (13, 200, 180) and mask.shape == (200, 180)
    np.testing.assert_array_equal(image, again)
    for row, col, h, w in [(1001, 2003, 7, 9), (1050, 2100, 77, 51), (1102, 2050, 99, 128)]:
        part, part_mask = synth.render(row, col, h, w, 2022, seed=5)
        rows, cols = slice(row - 1001, row - 1001 + h), slice(col - 2003, col - 2003 + w)
        np.testing.assert_array_equal(part, image[:, rows, cols])
        np.testing.assert_array_equal(part_mask, mask[rows, cols])


def test_patches_are_renders_of_the_world(patches64: dict) -> None:
    for tile, year in [(3, 2016), (30, 2022)]:
        image, mask, transform = patches64[tile, year]
        world, world_mask = synth.render(*_row_col(transform), 128, 128, year, seed=0)
        valid = mask != MASK_NODATA
        np.testing.assert_array_equal(image[:, valid], world[:, valid])
        np.testing.assert_array_equal(mask[valid], world_mask[valid])


# ---------------------------------------------------------------------------- realism


def test_mining_shares_and_split_files(dataset64: Path, patches64: dict) -> None:
    shares = {}
    for year in YEARS:
        masks = np.stack([m for (_, y), (_, m, _) in patches64.items() if y == year])
        valid = masks != MASK_NODATA
        shares[year] = 100 * (masks[valid] == 1).mean()
        with open(dataset64 / "data_splits" / split_csv_name(year), newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == 64 and {r["split"] for r in rows} == {"train", "test"}
        tile_share = {int(r["patch_name"].split("_")[2]): float(r["class_percentage"])
                      for r in rows}
        per_tile = [100 * (m[m != MASK_NODATA] == 1).mean()
                    for (_, y), (_, m, _) in sorted(patches64.items()) if y == year]
        np.testing.assert_allclose([tile_share[t] for t in range(1, 65)], per_tile, atol=1e-3)
        counts = np.array(per_tile)
        assert (counts == 0).sum() >= 5 and (counts > 10).sum() >= 5  # none, a little and a lot
    assert 3.0 < shares[2016] < 9.0
    assert 4.0 < shares[2022] < 12.0
    assert shares[2022] > 1.1 * shares[2016]


def test_mining_persists_grows_and_sometimes_ceases(patches64: dict) -> None:
    m16 = np.stack([patches64[t, 2016][1] for t in range(1, 65)])
    m22 = np.stack([patches64[t, 2022][1] for t in range(1, 65)])
    both_valid = (m16 != MASK_NODATA) & (m22 != MASK_NODATA)
    old, new = (m16 == 1) & both_valid, (m22 == 1) & both_valid
    assert (old & new).sum() > 0.8 * old.sum()  # most 2016 sites persist
    assert (new & ~old).sum() > 0.15 * new.sum()  # and mining spreads
    assert (old & ~new).sum() > 0  # a little ceases


def test_mining_sits_on_valley_floors(patches64: dict) -> None:
    lower = []
    for image, mask, _ in patches64.values():
        if (mask == 1).sum() >= 50:
            dem = image[12]
            lower.append(dem[mask == 1].mean() < dem[mask != MASK_NODATA].mean())
    assert len(lower) >= 20 and np.mean(lower) > 0.8


def test_mining_is_bare_and_wet_but_not_trivially_separable(patches64: dict) -> None:
    images = np.stack([i for i, _, _ in patches64.values()])
    masks = np.stack([m for _, m, _ in patches64.values()])
    red, nir, swir1, vv = (images[:, BAND_NAMES.index(b)] for b in ("red", "nir", "swir1", "vv"))
    ndvi = (nir - red) / (nir + red)
    mining, other = masks == 1, masks == 0
    forest = other & (ndvi > np.percentile(ndvi[other], 50))
    assert ndvi[mining].mean() < ndvi[forest].mean() - 0.2
    assert swir1[mining].mean() > swir1[forest].mean()
    assert vv[mining].mean() < vv[forest].mean() - 2
    # confusers (bare fields, roads, settlements, turbid rivers): no NDVI threshold finds mining
    valid = mining | other
    scores = -ndvi[valid]
    f1 = [2 * ((scores > t) & mining[valid]).sum() / ((scores > t).sum() + mining.sum())
          for t in np.quantile(scores, np.linspace(0.5, 0.995, 60))]
    assert 0.3 < max(f1) < 0.75


def test_band_statistics_match_the_real_dataset(patches64: dict) -> None:
    images = np.stack([i for i, _, _ in patches64.values()])
    valid = (images != IMAGE_NODATA).all(axis=1)
    for name, (mean, std) in TARGETS.items():
        values = images[:, BAND_NAMES.index(name)][valid]
        assert abs(values.mean() - mean) < 0.08 * mean, name
        assert 0.75 * std < values.std() < 1.3 * std, name
    vv, vh = images[:, 10][valid], images[:, 11][valid]
    assert -10 < vv.mean() < -5 and -17 < vh.mean() < -11


def test_nodata_regions_are_partial_aligned_and_independent_between_years(patches64: dict) -> None:
    holes = {year: set() for year in YEARS}
    for (tile, year), (image, mask, _) in patches64.items():
        missing = image == IMAGE_NODATA
        assert (missing.all(axis=0) == missing.any(axis=0)).all()  # all 13 bands or none
        np.testing.assert_array_equal(mask == MASK_NODATA, missing[0])
        assert not missing[0].all()
        if missing.any():
            holes[year].add(tile)
    assert all(holes.values()) and holes[2016] != holes[2022]


def test_progress_and_errors(tmp_path: Path) -> None:
    calls = []
    synth.synthesize_dataset(tmp_path, tiles=3, years=(2022,),
                             progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(ConfigError):
        synth.synthesize_dataset(tmp_path, tiles=0)
    with pytest.raises(ConfigError):
        synth.synthesize_dataset(tmp_path, tiles=2, years=(2016, 2016))
    with pytest.raises(ConfigError):
        synth.synthesize_scene(tmp_path, size=101)


# ---------------------------------------------------------------------------- scenes


@pytest.fixture(scope="module")
def scene768(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, Path]]:
    """Two scene blocks per side (512 + 256), so block borders can be checked."""
    out = tmp_path_factory.mktemp("scene768")
    return synth.synthesize_scene(out, size=768, seed=0, years=(2022,))


def test_scene_files_resolutions_and_crs(synth_scene: dict) -> None:
    expected = {"stacked": (13, 10.0, 512), "truth": (1, 10.0, 512), "s2_10m": (4, 10.0, 512),
                "s2_20m": (6, 20.0, 256), "s1": (2, 20.0, 256)}
    for year in YEARS:
        files = synth_scene[year]
        assert set(files) == {*expected, "dem"}
        assert files["stacked"].name == f"scene_{year}.tif"
        assert files["dem"].name == f"scene_{year}_dem.tif"
        for name, (count, res, size) in expected.items():
            with rasterio.open(files[name]) as src:
                shape = (src.count, src.res, src.width, src.height)
                assert shape == (count, (res, res), size, size), name
                assert src.crs.to_epsg() == 32630 and all(src.descriptions), name
        with rasterio.open(files["dem"]) as dem:
            assert dem.crs.to_epsg() == 4326 and dem.res == pytest.approx((1 / 3600, 1 / 3600))
            values = dem.read(1)
            assert 40 < values[values != IMAGE_NODATA].mean() < 400


def test_separate_files_are_the_stacked_scene(synth_scene: dict) -> None:
    files = synth_scene[2016]
    with rasterio.open(files["stacked"]) as src:
        stacked = src.read()
    with rasterio.open(files["s2_10m"]) as src:
        np.testing.assert_array_equal(src.read(), stacked[[0, 1, 2, 6]])
    with rasterio.open(files["s2_20m"]) as src:
        np.testing.assert_array_equal(src.read(), stacked[[3, 4, 5, 7, 8, 9], ::2, ::2])
    with rasterio.open(files["s1"]) as src:
        np.testing.assert_array_equal(src.read(), stacked[[10, 11], ::2, ::2])
    # the 20 m bands are constant over aligned 2 x 2 blocks
    np.testing.assert_array_equal(stacked[8, ::2, ::2], stacked[8, 1::2, 1::2])


def test_scene_is_the_world_model_and_seamless(scene768: dict) -> None:
    with rasterio.open(scene768[2022]["stacked"]) as src:
        stacked, transform = src.read(), src.transform
    with rasterio.open(scene768[2022]["truth"]) as src:
        truth = src.read(1)
    row, col = _row_col(transform)
    window, window_mask = synth.render(row + 480, col + 500, 64, 48, 2022, seed=0)
    np.testing.assert_array_equal(stacked[:, 480:544, 500:548], window)
    np.testing.assert_array_equal(truth[480:544, 500:548], window_mask)
    assert 0 < truth.mean() < 0.5
    # no jump at the block border (row/col 512): differences across it look like any other 20 m edge
    for axis in (1, 2):
        steps = np.abs(np.diff(stacked, axis=axis)).mean(axis=3 - axis)  # (bands, 767)
        across_20m = steps[:, 1::2]  # pairs (2k+1, 2k+2) straddle 20 m pixel edges, like 511 | 512
        border = steps[:, 511]
        assert (border <= 1.5 * np.median(across_20m, axis=1) + 1e-3).all(), axis


def test_scene_statistics_resemble_the_dataset(scene768: dict, patches64: dict) -> None:
    with rasterio.open(scene768[2022]["stacked"]) as src:
        scene = src.read()
    images = np.stack([i for (_, y), (i, _, _) in patches64.items() if y == 2022])
    for band in BAND_NAMES:
        b = BAND_NAMES.index(band)
        tiles = images[:, b][images[:, b] != IMAGE_NODATA]
        # one 7.7 km scene is one place and one haze: close to the dataset, not equal
        assert abs(scene[b].mean() - tiles.mean()) < 1.5 * tiles.std(), band
        # the DEM's spread is mostly regional (absolute elevation carries little per pixel), so one
        # scene samples less of it than tiles scattered over the whole world
        low = 0.3 if band == "dem" else 0.4
        assert low * tiles.std() < scene[b].std() < 2.5 * tiles.std(), band
