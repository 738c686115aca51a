"""Scene input: band identification, alignment of separate rasters, tiles, scale, AOI and the guards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _scene_data import COARSE, FINE, LEVELS, ORIGIN, SPREAD, scene_array, write_raster, write_separate, write_stack
from rasterio.transform import from_origin

from smallmines.bands import BAND_NAMES, parse_bands
from smallmines.data.scene import aoi_mask, aoi_region, identify_bands, load_aoi, open_scene, parse_scale
from smallmines.data.stats import BandStats
from smallmines.data.windows import Span
from smallmines.errors import BandError, ConfigError, CorruptFileError, SceneMismatchError
from smallmines.mapping.guards import compare_to_training, enforce

H = W = 96


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return scene_array(H, W, seed=3)


@pytest.fixture(scope="module")
def stacked(tmp_path_factory: pytest.TempPathFactory, data: np.ndarray) -> Path:
    return write_stack(tmp_path_factory.mktemp("stack") / "scene.tif", data)


@pytest.fixture(scope="module")
def separate(tmp_path_factory: pytest.TempPathFactory, data: np.ndarray) -> dict[str, Path]:
    return write_separate(data, tmp_path_factory.mktemp("separate"))


def test_identify_bands_by_description_alias_count_and_order() -> None:
    assert identify_bands("f", "s2", 3, ("B4", "B8A", "QA60")) == ("red", "rededge4", None)
    assert identify_bands("f", "s2", 6, (None,) * 6) == COARSE
    assert identify_bands("f", "s1", 2, ("", "")) == ("vv", "vh")
    assert identify_bands("f", "stacked", 2, ("a", "b"), band_order=["B11", "vh"]) == ("swir1", "vh")
    with pytest.raises(BandError, match="cannot tell which bands.*5 bands"):
        identify_bands("f.tif", "s2", 5, (None,) * 5)
    with pytest.raises(BandError, match="names 2 bands but the file has 3"):
        identify_bands("f.tif", "stacked", 3, (None,) * 3, band_order=["red", "nir"])
    with pytest.raises(BandError, match="more than once"):
        identify_bands("f.tif", "s2", 2, ("red", "B4"))


def test_stacked_scene_reads_raw_values_with_nodata(tmp_path: Path, data: np.ndarray) -> None:
    holed = data.copy()
    holed[:, :5, :7] = -9999
    holed[3, 10, 10] = np.nan
    scene = open_scene(stacked=write_stack(tmp_path / "s.tif", holed))
    assert scene.bands == BAND_NAMES and scene.grid.width == W and scene.grid.res == 10
    with scene.open() as reader:
        out = reader.read(("red", "rededge1"), Span(0, 20), Span(0, 20))
    assert out.shape == (2, 20, 20)
    assert np.isnan(out[:, :5, :7]).all() and np.isnan(out[1, 10, 10]) and not np.isnan(out[0, 10, 10])
    np.testing.assert_array_equal(out[0, 5:], data[2, 5:20, :20])


def test_missing_band_is_named_with_the_fix(tmp_path: Path, data: np.ndarray) -> None:
    six = parse_bands("official6")
    path = write_raster(tmp_path / "six.tif", data[[BAND_NAMES.index(b) for b in six]], descriptions=six)
    scene = open_scene(stacked=path)
    scene.require(six)
    with pytest.raises(BandError, match=r"needs band\(s\) rededge1, nir, vv, vh.*--band-order"):
        scene.require(("rededge1", "nir", "vv", "vh"))


def test_separate_rasters_align_onto_the_10m_grid(separate: dict[str, Path], data: np.ndarray) -> None:
    scene = open_scene(s2=[separate["s2_20m"], separate["s2_10m"]], s1=separate["s1"], dem=separate["dem"])
    assert scene.grid.res == 10 and (scene.grid.height, scene.grid.width) == (H, W)
    assert scene.grid.transform.c == ORIGIN[0] and scene.bands == BAND_NAMES
    warped = {s.kind: s.resampling for s in scene.sources if s.offset is None}
    assert warped == {"s2": "bilinear", "s1": "bilinear", "dem": "cubic"}
    with scene.open() as reader:
        out = reader.read(BAND_NAMES, Span(0, H), Span(0, W))
    inner = (slice(None), slice(4, -4), slice(4, -4))
    error = np.abs(out - data)[inner] / SPREAD[:, None, None]
    fine = [BAND_NAMES.index(b) for b in FINE]
    assert error[fine].max() == 0  # 10 m bands are read as they are
    assert error.mean(axis=(1, 2)).max() < 0.08  # resampled bands within a few % of their spread
    # a meaningful tolerance: any band taken for its neighbour would be far off
    swapped = np.abs(out[[4, 3]] - data[[3, 4]])[inner] / SPREAD[[3, 4], None, None]
    assert swapped.mean() > 1.0


def test_tiles_mosaic_equals_the_whole(tmp_path: Path, data: np.ndarray) -> None:
    left = write_stack(tmp_path / "left.tif", data[:, :60, :50])
    right = write_stack(tmp_path / "right.tif", data[:, 40:, 50:], transform=from_origin(ORIGIN[0] + 500,
                                                                                       ORIGIN[1] - 400, 10, 10))
    scene = open_scene(stacked=[left, right])
    assert (scene.grid.height, scene.grid.width) == (H, W)
    with scene.open() as reader:
        out = reader.read(("blue", "dem"), Span(0, H), Span(0, W))
    np.testing.assert_array_equal(out[:, :60, :50], data[[0, 12], :60, :50])
    np.testing.assert_array_equal(out[:, 40:, 50:], data[[0, 12], 40:, 50:])
    assert np.isnan(out[:, 70:, :40]).all()  # covered by no tile


def test_vrt_is_a_stacked_input(tmp_path: Path, stacked: Path, data: np.ndarray) -> None:
    bands = "".join(f'<VRTRasterBand dataType="Float32" band="{b}"><Description>{name}</Description>'
                    f'<NoDataValue>-9999</NoDataValue><SimpleSource><SourceFilename relativeToVRT="0">{stacked}'
                    f'</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>'
                    for b, name in enumerate(BAND_NAMES, start=1))
    vrt = tmp_path / "scene.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="{W}" rasterYSize="{H}"><SRS>EPSG:32630</SRS><GeoTransform>'
                   f'{ORIGIN[0]}, 10, 0, {ORIGIN[1]}, 0, -10</GeoTransform>{bands}</VRTDataset>')
    scene = open_scene(stacked=vrt)
    with scene.open() as reader:
        np.testing.assert_array_equal(reader.read(BAND_NAMES, Span(0, H), Span(0, W)), data)


def test_inputs_are_validated(tmp_path: Path, stacked: Path, separate: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="no scene"):
        open_scene()
    with pytest.raises(ConfigError, match="not both"):
        open_scene(stacked=stacked, s1=separate["s1"])
    with pytest.raises(ConfigError, match="at least one --s2"):
        open_scene(s1=separate["s1"])
    with pytest.raises(ConfigError, match="--band-order names the bands of a stacked"):
        open_scene(s2=separate["s2_10m"], band_order="red")
    bad = tmp_path / "bad.tif"
    bad.write_text("not a raster")
    with pytest.raises(CorruptFileError, match="bad.tif"):
        open_scene(stacked=bad)


def test_band_order_and_scale_apply_on_read(tmp_path: Path, data: np.ndarray) -> None:
    order = ("nir", "red", "green", "blue")
    path = write_raster(tmp_path / "four.tif", data[[6, 2, 1, 0]] / 10000)
    scene = open_scene(stacked=path, band_order=",".join(order)).with_scale(parse_scale("10000"))
    with scene.open() as reader:
        out = reader.read(("blue", "nir"), Span(0, 8), Span(0, 8))
    np.testing.assert_allclose(out, data[[0, 6], :8, :8], rtol=1e-5)


def test_parse_scale() -> None:
    assert parse_scale("10000") == dict.fromkeys(BAND_NAMES[:10], 10000.0)
    assert parse_scale("dem=0.3048,B8A=2") == {"dem": 0.3048, "rededge4": 2.0}
    assert parse_scale(None) == {}
    for bad in ("0", "s2=-1", "x"):
        with pytest.raises(ConfigError, match="positive number"):
            parse_scale(bad)
    with pytest.raises(ConfigError, match="index"):
        parse_scale("ndvi=2")


def test_aoi_region_and_mask(tmp_path: Path, stacked: Path) -> None:
    scene = open_scene(stacked=stacked)
    from pyproj import Transformer

    to_ll = Transformer.from_crs("EPSG:32630", "EPSG:4326", always_xy=True)
    ring = [to_ll.transform(ORIGIN[0] + x, ORIGIN[1] - y) for x, y in ((105, 105), (505, 105), (505, 305), (105, 305))]
    path = tmp_path / "aoi.geojson"
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]}}
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))  # GeoJSON: WGS84
    geometry = load_aoi(path, scene.grid.crs)
    rows, cols = aoi_region(scene.grid, geometry)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (10, 31, 10, 51)
    mask = aoi_mask(scene.grid, geometry, rows, cols)
    assert mask[1:-1, 1:-1].all() and mask.sum() == pytest.approx(40 * 20, abs=45)
    far = geometry.buffer(0).envelope
    from shapely import affinity

    with pytest.raises(ConfigError, match="does not overlap"):
        aoi_region(scene.grid, affinity.translate(far, 1e5, 0))


# ----------------------------------------------------------------------------------------------
# Guards
# ----------------------------------------------------------------------------------------------

def _train() -> BandStats:
    channels = (*BAND_NAMES, "ndvi")
    return BandStats(channels, (*map(float, LEVELS), 0.4), (*map(float, SPREAD), 0.15))


def _sample(seed: int = 0, n: int = 5000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (LEVELS[:, None] + SPREAD[:, None] * rng.standard_normal((13, n))).astype(np.float32)


def test_matching_scene_passes() -> None:
    check = compare_to_training(_sample(), BAND_NAMES, _train())
    assert not check.problems and not check.warnings
    assert [c.channel for c in check.channels] == [*BAND_NAMES, "ndvi"]
    enforce(check)
    json.dumps(check.to_dict())


def test_zero_one_export_is_refused_naming_bands_and_fix() -> None:
    sample = _sample()
    sample[:10] /= 10000
    check = compare_to_training(sample, BAND_NAMES, _train())
    assert check.fixes == ["--scale 10000"]
    with pytest.raises(SceneMismatchError) as info:
        enforce(check)
    message = str(info.value)
    assert "blue, green, red" in message and "swir2" in message and "--scale 10000" in message
    assert "--force" in message
    enforce(check, force=True)  # logs, does not raise


def test_s1_in_linear_power_is_refused() -> None:
    sample = _sample()
    sample[10:12] = 10 ** (sample[10:12] / 10)
    check = compare_to_training(sample, BAND_NAMES, _train())
    assert any("linear power" in p for p in check.problems)


def test_swapped_bands_are_detected_with_the_order_fix() -> None:
    sample = _sample()
    sample[[3, 6]] = sample[[6, 3]]  # rededge1 and nir exchanged
    file_bands = (*BAND_NAMES, None)  # a 14-band stack whose last band is not used
    check = compare_to_training(sample, BAND_NAMES, _train(), file_bands)
    assert any("rededge1 looks like nir" in p and "nir looks like rededge1" in p for p in check.problems)
    (fix,) = check.fixes
    order = fix.split()[1].split(",")
    assert order[3] == "nir" and order[6] == "rededge1" and order[-1] == "-"
    assert identify_bands("f", "stacked", 14, (None,) * 14, order)[3] == "nir"
    with pytest.raises(SceneMismatchError, match="rerun with --band-order"):
        enforce(check)
    check = compare_to_training(sample, BAND_NAMES, _train())
    assert "band descriptions" in check.fixes[0]


def test_drift_is_a_warning_not_a_problem() -> None:
    sample = _sample()
    sample[12] += 5 * SPREAD[12]  # a higher region: DEM far from training, not wrong
    check = compare_to_training(sample, BAND_NAMES, _train())
    assert not check.problems and any(w.startswith("dem") for w in check.warnings)
    assert next(c for c in check.channels if c.channel == "dem").status == "warn"


def test_too_small_sample_skips_the_comparison() -> None:
    check = compare_to_training(_sample(n=10), BAND_NAMES, _train())
    assert not check.channels and "not compared" in check.warnings[0]


def test_dem_in_feet_is_refused_with_the_metre_factor() -> None:
    sample = _sample()
    sample[12] /= 0.3048
    check = compare_to_training(sample, BAND_NAMES, _train())
    assert "--scale dem=0.3048" in check.fixes and any("feet" in p for p in check.problems)
    with pytest.raises(SceneMismatchError, match="dem=0.3048"):
        enforce(check)
    higher = _sample()
    higher[12] += 2.28 * LEVELS[12]  # a higher region: the mean moves, the spread does not
    assert not any("feet" in p for p in compare_to_training(higher, BAND_NAMES, _train()).problems)


@pytest.mark.parametrize("pair", [(2, 6), (0, 2), (4, 5), (8, 9), (1, 7)])
def test_a_proposed_band_order_never_names_a_band_twice(pair: tuple[int, int]) -> None:
    sample = _sample(seed=pair[0])
    sample[list(pair)] = sample[list(pair[::-1])]  # red and nir, blue and red, ... exchanged
    check = compare_to_training(sample, BAND_NAMES, _train(), BAND_NAMES)
    for fix in check.fixes:
        if fix.startswith("--band-order"):
            order = fix.split()[1].split(",")
            assert len(set(order)) == len(order) == 13, order


def test_an_order_fix_that_would_name_a_band_twice_is_not_proposed(monkeypatch: pytest.MonkeyPatch) -> None:
    import smallmines.mapping.guards as guards

    sample = _sample()
    sample[[2, 6]] = sample[[6, 2]]
    monkeypatch.setattr(guards, "_misplaced", lambda levels, train, sensor: {"red": "nir", "blue": "green"}
                        if sensor == "s2" else {})  # a partial assignment: "nir" and "green" would appear twice
    check = compare_to_training(sample, BAND_NAMES, _train(), BAND_NAMES)
    assert check.problems and not any(f.startswith("--band-order") for f in check.fixes)
    assert any("band descriptions" in f for f in check.fixes)
