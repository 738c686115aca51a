"""``smallmines fetch`` end to end against a local STAC stand-in (see ``_stac_data``), offline.

The items are cut from the synthetic twin's world, so the clear-sky surface, the S1 backscatter in dB
and the elevation under every output pixel are known exactly. Outputs are checked against that truth
(clouds, shadow, cirrus and a swath edge removed; baseline offset harmonised; dB; mosaic), and
``smallmines map`` must accept the fetched scene without a guard complaint. The STAC API path is
exercised against a loopback HTTP server answering ``/search``.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from _stac_data import (
    CIRRUS,
    CLOUD,
    HAZE,
    ONLY_B,
    ORIGIN,
    SHADOW,
    SIDE,
    aoi_bounds,
    build_items,
    outside_swath,
    truth,
    write_item_collection,
)
from rasterio.warp import transform_bounds
from typer.testing import CliRunner

from smallmines.acquire import fetcher as fetch_module
from smallmines.acquire import sentinel1
from smallmines.acquire.fetcher import fetch, parse_months, season
from smallmines.bands import BAND_NAMES, IMAGE_NODATA
from smallmines.cli import app
from smallmines.data.synth.world import region_transform
from smallmines.errors import CatalogError, ConfigError

pytestmark = pytest.mark.filterwarnings(
    # odc-loader reprojects through rasterio in-memory datasets that rasterio reports as not georeferenced
    "ignore::rasterio.errors.NotGeoreferencedWarning")

CHUNK = 128
"""Small chunks so every product crosses chunk boundaries (the grid is about 258 pixels)."""


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return build_items(tmp_path_factory.mktemp("stac") / "assets")


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory, items: list[dict[str, Any]]) -> Path:
    return write_item_collection(tmp_path_factory.mktemp("catalogue"), items)


@pytest.fixture(scope="module")
def no_signing() -> Iterator[None]:
    """Local and loopback catalogues must never call the Planetary Computer signer."""
    import planetary_computer

    def refuse(obj: Any) -> Any:
        raise AssertionError("planetary_computer.sign_inplace called for a catalogue that is not the PC")

    original = planetary_computer.sign_inplace
    planetary_computer.sign_inplace = refuse
    yield
    planetary_computer.sign_inplace = original


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory, catalogue: Path, no_signing: None) -> Any:
    return fetch(aoi_bounds(), 2022, tmp_path_factory.mktemp("fetched"), stac=catalogue, chunk=CHUNK)


@pytest.fixture(scope="module")
def fetched_2016(tmp_path_factory: pytest.TempPathFactory, catalogue: Path, no_signing: None) -> Any:
    return fetch(aoi_bounds(), 2016, tmp_path_factory.mktemp("fetched_2016"), stac=catalogue, chunk=CHUNK)


def _read(path: Path) -> tuple[np.ndarray, Any]:
    with rasterio.open(path) as src:
        return src.read(), src.transform


def _offset(transform: Any) -> tuple[int, int]:
    """Row and column of an output grid's corner in the item rasters."""
    items = region_transform(*ORIGIN)
    return round((items.f - transform.f) / 10), round((transform.c - items.c) / 10)


def _on_grid(array: np.ndarray, transform: Any, shape: tuple[int, int]) -> np.ndarray:
    """Cut an item-grid array ``(..., SIDE, SIDE)`` to the output grid."""
    row, col = _offset(transform)
    return array[..., row:row + shape[0], col:col + shape[1]]


def _region(mask_slices: tuple[slice, slice]) -> np.ndarray:
    region = np.zeros((SIDE, SIDE), bool)
    region[mask_slices] = True
    return region


# ---------------------------------------------------------------------------------------------
# the scene


def test_scene_is_a_13_band_cog_on_the_aoi_utm_grid(fetched: Any) -> None:
    with rasterio.open(fetched.scene) as src:
        assert src.count == 13 and src.descriptions == BAND_NAMES
        assert src.crs.to_epsg() == 32630 and src.res == (10.0, 10.0)
        assert src.transform.c % 10 == 0 and src.transform.f % 10 == 0
        assert src.nodata == IMAGE_NODATA and src.dtypes[0] == "float32"
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        left, bottom, right, top = src.bounds
        scene = src.read()
    west, south, east, north = transform_bounds("EPSG:4326", "EPSG:32630", *aoi_bounds())
    assert left <= west and bottom <= south and right >= east and top >= north
    assert right - east < 10 and west - left < 10  # snapped, not padded
    parts = np.concatenate([_read(fetched.files[name])[0] for name in ("s2", "s1", "dem")])
    np.testing.assert_array_equal(scene, parts)
    assert (scene != IMAGE_NODATA).all()  # every pixel has a clear observation, S1 and elevation
    assert not list(fetched.out_dir.glob(".fetch-*"))


def test_composite_recovers_the_clear_sky_surface_under_clouds(fetched: Any) -> None:
    s2, transform = _read(fetched.files["s2"])
    expected = _on_grid(truth()[:10], transform, s2.shape[1:])
    error = np.abs(s2 - expected)
    assert error.max() <= 0.5  # the DN rounding of the synthetic surface, nothing else
    only_b = _on_grid(_region(ONLY_B), transform, s2.shape[1:])
    assert only_b.sum() > 4000
    np.testing.assert_allclose(s2[:, only_b], expected[:, only_b], atol=0.5)
    for damaged in (CLOUD, SHADOW, CIRRUS, HAZE):
        region = _on_grid(_region(damaged), transform, s2.shape[1:])
        assert np.abs(s2[:, region] - expected[:, region]).max() <= 0.5


def test_clear_observation_count_follows_the_scl_and_the_swath(fetched: Any) -> None:
    count, transform = _read(fetched.files["s2_count"])
    rows, cols = np.mgrid[:SIDE, :SIDE]
    valid_c = ~outside_swath(rows, cols)
    valid_c &= np.repeat(np.repeat(valid_c[::2, ::2], 2, 0), 2, 1)  # the 20 m bands and SCL of item C
    clear = ((~_region(CLOUD) & ~_region(SHADOW) & ~_region(HAZE)).astype(int) + ~_region(CIRRUS)
             + (valid_c & ~_region(ONLY_B)))
    np.testing.assert_array_equal(count[0], _on_grid(clear, transform, count.shape[1:]))
    assert set(np.unique(count)) == {1, 2, 3}


def test_the_2022_offset_is_removed_and_2016_agrees(fetched: Any, fetched_2016: Any) -> None:
    s2_2022, _ = _read(fetched.files["s2"])
    s2_2016, _ = _read(fetched_2016.files["s2"])
    assert np.abs(s2_2022 - s2_2016).max() <= 1.0  # unchanged ground, two baselines
    offsets = {i["processing_baseline"]: i["offset_removed"] for i in
               fetched.record["items"]["s2"] + fetched_2016.record["items"]["s2"]}
    assert offsets == {"04.00": 1000, "05.09": 1000, "02.04": 0}


def test_s1_comes_out_in_db_speckle_filtered(fetched: Any) -> None:
    s1, transform = _read(fetched.files["s1"])
    expected = _on_grid(truth()[10:12], transform, s1.shape[1:])
    assert -30 < np.median(s1[1]) < np.median(s1[0]) < 0  # dB: VH below VV, both negative
    error = s1 - expected
    assert np.abs(error.mean()) < 0.3
    assert np.median(np.abs(error)) < 0.6
    # one raw date in dB is far noisier: the filter and the median took most of the speckle out
    raw = 10 * np.log10(10 ** (expected / 10) * np.random.default_rng(0).gamma(4.4, 1 / 4.4, expected.shape))
    assert np.abs(error).mean() < 0.4 * np.abs(raw - expected).mean()


def test_lee_filter_keeps_the_mean_and_ignores_no_data() -> None:
    rng = np.random.default_rng(1)
    power = (0.05 * rng.gamma(4.4, 1 / 4.4, (1, 64, 64))).astype(np.float32)
    power[0, :8] = np.nan
    filtered = sentinel1.lee_filter(power)
    assert np.isnan(filtered[0, :8]).all() and np.isfinite(filtered[0, 8:]).all()
    assert abs(np.nanmean(filtered) / np.nanmean(power) - 1) < 0.02
    assert np.nanstd(filtered) < 0.5 * np.nanstd(power)


def test_dem_is_mosaicked_across_tiles_in_metres(fetched: Any) -> None:
    dem, transform = _read(fetched.files["dem"])
    expected = _on_grid(truth()[12:13], transform, dem.shape[1:])
    assert (dem != IMAGE_NODATA).all()  # no seam between the two tiles
    assert np.abs(dem - expected).mean() < 1.0
    assert len(fetched.record["items"]["dem"]) == 2


def test_provenance_record(fetched: Any, catalogue: Path) -> None:
    record = json.loads((fetched.out_dir / "fetch.json").read_text())
    assert record == json.loads(json.dumps(fetched.record, default=str))
    assert record["catalogue"]["stac"] == str(catalogue) and record["catalogue"]["kind"] == "local"
    assert record["catalogue"]["collections"] == {"s2": "sentinel-2-l2a", "s1": "sentinel-1-rtc",
                                                  "dem": "cop-dem-glo-30"}
    assert record["window"]["start"].startswith("2022-01-01") and record["window"]["end"].startswith("2022-01-31")
    s2 = record["items"]["s2"]
    assert [i["datetime"][:10] for i in s2] == ["2022-01-05", "2022-01-15", "2022-01-25"]
    assert all(i["cloud_cover_pct"] is not None for i in s2)
    assert len(record["items"]["s1"]) == 3
    assert set(record["sentinel2"]["masked_scl_classes"]) == {"0", "1", "3", "8", "9", "10"}
    assert record["sentinel2"]["clear_pixel_share"] == 1.0
    assert record["sentinel2"]["items_with_cloud_probability"] == [s2[0]["id"]]
    assert "Lee" in record["sentinel1"]["filter"]
    assert record["grid"]["crs"] == "EPSG:32630"


# ---------------------------------------------------------------------------------------------
# reruns, partial runs


def test_rerun_reuses_what_was_fetched(fetched: Any, catalogue: Path) -> None:
    stamps = {name: path.stat().st_mtime_ns for name, path in fetched.files.items()}
    again = fetch(aoi_bounds(), 2022, fetched.out_dir, stac=catalogue, chunk=CHUNK)
    assert sorted(again.reused) == ["dem", "s1", "s2", "scene"]
    assert {name: path.stat().st_mtime_ns for name, path in again.files.items()} == stamps


def test_a_failure_leaves_no_partial_file_and_the_rerun_resumes(tmp_path: Path, catalogue: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise CatalogError("connection lost")

    monkeypatch.setattr(fetch_module.sentinel1, "composite", broken)
    with pytest.raises(CatalogError, match="connection lost"):
        fetch(aoi_bounds(), 2022, tmp_path, stac=catalogue, chunk=CHUNK)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s2.tif", "s2_count.tif"]
    monkeypatch.undo()
    calls: list[tuple[int, int]] = []
    result = fetch(aoi_bounds(), 2022, tmp_path, stac=catalogue, chunk=CHUNK,
                   progress=lambda done, total: calls.append((done, total)))
    assert result.reused == ["s2"]
    assert calls[-1] == (27, 27) and len(calls) == 27  # 3 x 3 chunks for each of s1, dem, scene
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dem.tif", "fetch.json", "s1.tif", "s2.tif",
                                                          "s2_count.tif", "scene.tif"]


# ---------------------------------------------------------------------------------------------
# failures name what is missing


def _collection_file(folder: Path, items: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return path


def test_no_item_in_the_window_names_sensor_collection_and_dates(tmp_path: Path, catalogue: Path) -> None:
    with pytest.raises(CatalogError, match=r"no Sentinel-2 L2A item \(collection sentinel-2-l2a\).*2019-01-01"):
        fetch(aoi_bounds(), 2019, tmp_path, stac=catalogue)
    assert not list(tmp_path.iterdir())


def test_missing_sensor_is_named(tmp_path: Path, items: list[dict[str, Any]]) -> None:
    path = _collection_file(tmp_path / "cat", [i for i in items if i["collection"] != "sentinel-1-rtc"])
    with pytest.raises(CatalogError, match=r"no Sentinel-1 RTC item \(collection sentinel-1-rtc\)"):
        fetch(aoi_bounds(), 2022, tmp_path / "out", stac=path)


def test_all_cloud_names_the_problem_and_writes_nothing(tmp_path: Path, items: list[dict[str, Any]]) -> None:
    cloudy = copy.deepcopy([i for i in items if i["id"].startswith("S2A_MSIL2A_2016")][1:])
    cloudy += [i for i in items if i["collection"] != "sentinel-2-l2a"]
    scl = Path(cloudy[0]["assets"]["SCL"]["href"])
    with rasterio.open(scl) as src:
        profile, data = src.profile, src.read()
    path = tmp_path / "SCL.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full_like(data, 9))
    cloudy[0]["assets"]["SCL"]["href"] = str(path)
    with pytest.raises(CatalogError, match="no clear Sentinel-2 pixel"):
        fetch(aoi_bounds(), 2016, tmp_path / "out", stac=_collection_file(tmp_path / "cat", cloudy))
    assert not list((tmp_path / "out").iterdir())


def test_an_item_without_a_band_is_named(tmp_path: Path, items: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(items)
    del broken[0]["assets"]["B8A"]
    with pytest.raises(CatalogError, match=rf"{broken[0]['id']}: no asset for rededge4"):
        fetch(aoi_bounds(), 2022, tmp_path / "out", stac=_collection_file(tmp_path, broken))


def test_an_unreadable_asset_is_named(tmp_path: Path, items: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(items)
    s1 = next(i for i in broken if i["collection"] == "sentinel-1-rtc" and i["id"].startswith("S1A_IW_GRDH_1SDV_2022"))
    s1["assets"]["vh"]["href"] = str(tmp_path / "gone" / "vh.tif")
    with pytest.raises(CatalogError, match=r"reading the Sentinel-1 RTC assets failed.*gone/vh.tif"):
        fetch(aoi_bounds(), 2022, tmp_path / "out", stac=_collection_file(tmp_path, broken), chunk=CHUNK)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s2.tif", "s2_count.tif"]


def test_unreachable_catalogue_and_bad_arguments(tmp_path: Path, catalogue: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(CatalogError, match=rf"STAC API http://127.0.0.1:{port} could not be searched"):
        fetch(aoi_bounds(), 2022, tmp_path, stac=f"http://127.0.0.1:{port}")
    with pytest.raises(CatalogError, match="not a catalogue name"):
        fetch(aoi_bounds(), 2022, tmp_path, stac=tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="bbox"):
        fetch((10.0, 5.0, 9.0, 6.0), 2022, tmp_path, stac=catalogue)
    with pytest.raises(ConfigError, match="statistic 'mode'"):
        fetch(aoi_bounds(), 2022, tmp_path, stac=catalogue, statistic="mode")
    with pytest.raises(ConfigError, match="--months '13'"):
        parse_months("13")


def test_months_and_season() -> None:
    assert parse_months("1") == [1] and parse_months("1-3") == [1, 2, 3] and parse_months("12-2") == [12, 1, 2]
    assert season(2022, "12-2") == (datetime(2021, 12, 1), datetime(2022, 2, 28, 23, 59, 59))


# ---------------------------------------------------------------------------------------------
# other catalogue layouts: keys of another catalogue, a static catalog, a STAC API


def _earth_search_style(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Earth Search v1 keys (blue, rededge1, nir08, scl...), band names not B0x, DN already harmonised."""
    names = {"B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2", "B07": "rededge3",
             "B08": "nir", "B8A": "nir08", "B11": "swir16", "B12": "swir22", "SCL": "scl"}
    renamed = []
    for item in copy.deepcopy(items):
        if item["collection"] == "sentinel-2-l2a":
            item["assets"] = {names.get(k, k): a for k, a in item["assets"].items()}
            for key, asset in item["assets"].items():
                for band in asset.get("eo:bands", []):
                    band["name"] = key
            item["assets"]["scl"]["title"] = "Scene classification map (SCL)"
        renamed.append(item)
    return renamed


def test_bands_are_found_by_eo_bands_not_by_keys(tmp_path: Path, items: list[dict[str, Any]],
                                                 fetched: Any, no_signing: None) -> None:
    path = _collection_file(tmp_path / "cat", _earth_search_style(items))
    result = fetch(aoi_bounds(), 2022, tmp_path / "out", stac=path, chunk=CHUNK)
    np.testing.assert_array_equal(_read(result.files["s2"])[0], _read(fetched.files["s2"])[0])


@pytest.mark.parametrize("on_asset", [False, True], ids=["bands", "fields-on-asset"])
def test_stac_1_1_items_with_bands_instead_of_eo_bands(tmp_path: Path, items: list[dict[str, Any]], fetched: Any,
                                                        no_signing: None, on_asset: bool) -> None:
    """Earth Search v1 and the Planetary Computer move to STAC 1.1: ``bands`` with ``eo:common_name``."""
    from _stac_data import stac_1_1

    from smallmines.acquire.catalog import s2_assets

    newer = [stac_1_1(item, single_band_on_asset=on_asset) for item in items]
    s2 = next(i for i in newer if i["collection"] == "sentinel-2-l2a")
    assert "eo:bands" not in json.dumps(s2) and "eo:center_wavelength" in json.dumps(s2)
    s1 = next(i for i in newer if i["collection"] == "sentinel-1-rtc")
    assert s1["assets"]["vv"].get("nodata", s1["assets"]["vv"].get("bands", [{}])[0].get("nodata")) == -32768
    import pystac

    assert s2_assets(pystac.Item.from_dict(s2))["rededge4"] == "B8A"
    # names that say nothing: the eo:center_wavelength inside ``bands`` decides, as eo:bands' would
    for key, asset in s2["assets"].items():
        for band in asset.get("bands", []):
            band["name"] = f"band-{key}"
        if "eo:center_wavelength" in asset:
            asset.pop("eo:common_name", None)
    assert s2_assets(pystac.Item.from_dict(s2))["rededge1"] == "B05"
    if on_asset:  # one full fetch is enough to show the loaders read nodata and grids from the new fields
        result = fetch(aoi_bounds(), 2022, tmp_path / "out", stac=write_item_collection(tmp_path, newer),
                       chunk=CHUNK)
        assert np.array_equal(_read(result.scene)[0], _read(fetched.scene)[0], equal_nan=True)


def test_sentinel1_from_a_second_catalogue(tmp_path: Path, items: list[dict[str, Any]], fetched: Any,
                                           no_signing: None) -> None:
    """Earth Search serves no Sentinel-1 RTC: --s1-stac takes it from another catalogue."""
    from smallmines.acquire.catalog import open_catalogue

    with pytest.raises(CatalogError, match="serves no Sentinel-1 RTC collection.*--s1-stac planetary-computer"):
        open_catalogue("earth-search").search("s1", aoi_bounds(), datetime(2022, 1, 1), datetime(2022, 1, 31))
    s1 = [i for i in items if i["collection"] == "sentinel-1-rtc"]
    (tmp_path / "rest").mkdir()
    (tmp_path / "s1").mkdir()
    rest = write_item_collection(tmp_path / "rest", [i for i in items if i["collection"] != "sentinel-1-rtc"])
    with pytest.raises(CatalogError, match="no Sentinel-1 RTC item"):
        fetch(aoi_bounds(), 2022, tmp_path / "none", stac=rest, chunk=CHUNK)
    result = fetch(aoi_bounds(), 2022, tmp_path / "out", stac=rest, s1_stac=write_item_collection(tmp_path / "s1", s1),
                   chunk=CHUNK)
    assert np.array_equal(_read(result.scene)[0], _read(fetched.scene)[0], equal_nan=True)
    assert result.record["s1_catalogue"]["stac"].endswith("items.json") and "s1" in str(
        result.record["s1_catalogue"]["stac"])


def test_static_catalog_with_relative_hrefs(tmp_path: Path, items: list[dict[str, Any]], fetched: Any,
                                            no_signing: None) -> None:
    import pystac

    root = pystac.Catalog("local", "a local archive")
    for data in items:
        root.add_item(pystac.Item.from_dict(copy.deepcopy(data)))
    root.normalize_hrefs(str(tmp_path / "catalog"))
    root.save(pystac.CatalogType.SELF_CONTAINED)
    result = fetch(aoi_bounds(), 2022, tmp_path / "out", stac=tmp_path / "catalog" / "catalog.json", chunk=CHUNK)
    np.testing.assert_array_equal(_read(result.scene)[0], _read(fetched.scene)[0])


class _StacApi(BaseHTTPRequestHandler):
    """A STAC API over the stand-in's items: a landing page and ``/search`` (GET or POST), one page."""

    items: list[dict[str, Any]] = []
    searches: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, body: dict[str, Any], kind: str = "application/json") -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _root(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/search"):
            from urllib.parse import parse_qs, urlparse

            query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            return self._search({"collections": query.get("collections", "").split(","),
                                 "datetime": query.get("datetime"),
                                 "bbox": [float(v) for v in query.get("bbox", "").split(",") if v]})
        root = self._root()
        self._send({"type": "Catalog", "id": "loopback", "description": "test STAC API", "stac_version": "1.0.0",
                    "conformsTo": ["https://api.stacspec.org/v1.0.0/core",
                                   "https://api.stacspec.org/v1.0.0/item-search"],
                    "links": [{"rel": "self", "href": f"{root}/", "type": "application/json"},
                              {"rel": "root", "href": f"{root}/", "type": "application/json"},
                              {"rel": "search", "href": f"{root}/search", "type": "application/geo+json",
                               "method": "POST"},
                              {"rel": "search", "href": f"{root}/search", "type": "application/geo+json",
                               "method": "GET"}]})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._search(body)

    def _search(self, body: dict[str, Any]) -> None:
        self.searches.append(body)
        start, end = (datetime.fromisoformat(v.replace("Z", "+00:00")) for v in body["datetime"].split("/"))
        west, south, east, north = body["bbox"]
        found = []
        for item in self.items:
            moment = datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
            iw, is_, ie, in_ = item["bbox"]
            if (item["collection"] in body["collections"] and start <= moment <= end
                    and not (iw > east or ie < west or is_ > north or in_ < south)):
                found.append(item)
        self._send({"type": "FeatureCollection", "features": found, "links": []}, "application/geo+json")


def test_stac_api_search_over_loopback(tmp_path: Path, items: list[dict[str, Any]], fetched: Any,
                                       no_signing: None) -> None:
    handler = type("Handler", (_StacApi,), {"items": items, "searches": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = fetch(aoi_bounds(), 2022, tmp_path, stac=url, chunk=CHUNK)
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(s["collections"][0] for s in handler.searches) == ["cop-dem-glo-30", "sentinel-1-rtc",
                                                                    "sentinel-2-l2a"]
    s2_search = next(s for s in handler.searches if s["collections"] == ["sentinel-2-l2a"])
    assert s2_search["datetime"] == "2022-01-01T00:00:00Z/2022-01-31T23:59:59Z"
    assert result.record["catalogue"]["kind"] == "api"
    np.testing.assert_array_equal(_read(result.scene)[0], _read(fetched.scene)[0])


# ---------------------------------------------------------------------------------------------
# the command line and the mapping stage


def test_cli_fetch_prints_a_table(tmp_path: Path, catalogue: Path, fetched: Any) -> None:
    bbox = ",".join(f"{v:.6f}" for v in aoi_bounds())
    result = CliRunner().invoke(app, ["fetch", "--bbox", bbox, "--year", "2022", "--stac", str(catalogue),
                                      "-o", str(tmp_path), "--chunk", "128"])
    assert result.exit_code == 0, result.output
    assert "scene.tif" in result.output and "s2_count.tif" in result.output
    assert (tmp_path / "scene.tif").exists()
    failed = CliRunner().invoke(app, ["fetch", "--bbox", bbox, "--year", "2019", "--stac", str(catalogue),
                                      "-o", str(tmp_path / "none")])
    assert failed.exit_code == 1 and "no Sentinel-2 L2A item" in failed.output
    assert "Traceback" not in failed.output


def test_map_accepts_the_fetched_scene_without_guard_complaints(tmp_path: Path, fetched: Any) -> None:
    from _scene_data import card_for, save_tiny

    from smallmines.data.synth.world import render
    from smallmines.mapping.mapper import map_scene

    # training statistics from patches spread over the whole world, as a model trained on the dataset has
    spots = range(0, 12160 - 64, 12160 // 6)
    reference = np.concatenate([render(row, col, 64, 64, year, 0)[0] for row in spots for col in spots
                                for year in (2016, 2022)], axis=2)
    model = save_tiny(tmp_path / "model.pt", card_for(reference, BAND_NAMES))
    result = map_scene(model, tmp_path / "map", stacked=fetched.scene, window=128, overlap=32, block=256,
                       min_area_ha=0.0)
    assert result.check["problems"] == [] and result.check["warnings"] == []
    assert result.check["sample_pixels"] >= 1000
    with rasterio.open(result.probability) as src:
        assert src.crs.to_epsg() == 32630 and src.shape == (fetched.record["grid"]["height"],
                                                             fetched.record["grid"]["width"])


def test_vector_aoi_gives_the_same_grid_as_its_bbox(tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    from smallmines.acquire.grid import grid_for, read_area, utm_crs

    bounds = aoi_bounds()
    path = tmp_path / "district.gpkg"
    gpd.GeoDataFrame({"name": ["district"]}, geometry=[box(*bounds)], crs="EPSG:4326").to_crs(
        "EPSG:32630").to_file(path)
    from_file, from_bbox = read_area(path), read_area(",".join(map(str, bounds)))
    assert from_file.source == str(path) and from_bbox.source == "bbox"
    assert grid_for(from_file).crs == grid_for(from_bbox).crs == "EPSG:32630"
    assert abs(grid_for(from_file).width - grid_for(from_bbox).width) <= 1
    assert utm_crs(-1.6, 6.2) == "EPSG:32630" and utm_crs(27.0, -12.5) == "EPSG:32735"
    with pytest.raises(ConfigError, match="neither a vector file nor a bbox"):
        read_area(str(tmp_path / "nowhere.gpkg"))


# ---------------------------------------------------------------------------------------------
# monitor: fetch -> map -> change -> report


def test_monitor_goes_from_an_area_to_a_report(tmp_path: Path, catalogue: Path, no_signing: None) -> None:
    import geopandas as gpd
    from _scene_data import card_for, save_tiny
    from shapely.geometry import box

    from smallmines.data.synth.world import render
    from smallmines.monitor import run_monitor

    spots = range(0, 12160 - 64, 12160 // 6)
    reference = np.concatenate([render(row, col, 64, 64, 2022, 0)[0] for row in spots for col in spots], axis=2)
    model = save_tiny(tmp_path / "model.pt", card_for(reference, BAND_NAMES))
    west, south, east, north = aoi_bounds()
    middle = (west + east) / 2
    zones = tmp_path / "districts.gpkg"
    gpd.GeoDataFrame({"name": ["west", "east"]}, geometry=[box(west, south, middle, north),
                                                          box(middle, south, east, north)],
                     crs="EPSG:4326").to_file(zones)
    steps: list[str] = []
    result = run_monitor(",".join(map(str, aoi_bounds())), "2022,2016", model, tmp_path / "monitor",
                         stac=catalogue, context=zones, chunk=CHUNK, step=steps.append,
                         map_options={"window": 128, "overlap": 32, "block": 256})
    assert sorted(result.scenes) == [2016, 2022]
    assert [s.split()[0] for s in steps] == ["fetching", "mapping", "fetching", "mapping", "comparing", "writing"]
    assert result.change.summary["year_a"] == 2016 and result.change.summary["year_b"] == 2022
    assert sorted(result.change.zones["zone"]) == ["east", "west"]
    html = result.report.read_text()
    assert "Change 2016" in html and "Per zone" in html and "Interactive map" in html


def test_monitor_with_three_years_traces_the_history(tmp_path: Path, items: list[dict[str, Any]],
                                                    no_signing: None) -> None:
    from _scene_data import card_for, save_tiny
    from _stac_data import build_year

    from smallmines.data.synth.world import render

    catalogue = write_item_collection(tmp_path / "stac", items + build_year(tmp_path / "stac" / "2019", 2019))
    spots = range(0, 12160 - 64, 12160 // 6)
    reference = np.concatenate([render(row, col, 64, 64, 2022, 0)[0] for row in spots for col in spots], axis=2)
    model = save_tiny(tmp_path / "model.pt", card_for(reference, BAND_NAMES))
    out = tmp_path / "monitor"
    result = CliRunner().invoke(app, ["monitor", "--bbox", ",".join(map(str, aoi_bounds())), "--years",
                                      "2016,2022", "--years", "2019", "--model", str(model), "--stac", str(catalogue),
                                      "--confirm", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "tracing the history 2016, 2019, 2022" in result.output and "new ha" in result.output
    assert "ever mined" in result.output
    history = (out / "change" / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["2016", "2019", "2022"]
    assert (out / "change" / "first_year.tif").is_file() and (out / "change" / "last_year.tif").is_file()
    summary = json.loads((out / "change" / "summary.json").read_text())
    assert summary["year_a"] == 2016 and summary["year_b"] == 2022 and summary["history"]["confirm"] == 2
    html = (out / "report.html").read_text()
    assert "<h3>History</h3>" in html and "Change 2016" in html and "Countries (Natural Earth)" in html
    # two of those years again: today's first-to-last comparison, and no stale history in the report
    from smallmines.monitor import run_monitor

    again = run_monitor(",".join(map(str, aoi_bounds())), [2016, 2022], model, out, stac=catalogue, chunk=CHUNK)
    assert again.history is None and not (out / "change" / "history.csv").exists()
    assert "<h3>History</h3>" not in again.report.read_text()


def test_cli_monitor_needs_two_years(tmp_path: Path, catalogue: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"not read")
    result = CliRunner().invoke(app, ["monitor", "--bbox", ",".join(map(str, aoi_bounds())), "--years", "2022",
                                      "--model", str(model), "--stac", str(catalogue), "-o", str(tmp_path / "m")])
    assert result.exit_code == 1 and "at least two years" in result.output
    zones = tmp_path / "districts.geojson"
    zones.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"NAME": "a"}, '
                     '"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}]}')
    result = CliRunner().invoke(app, ["monitor", "--bbox", ",".join(map(str, aoi_bounds())), "--years", "2016,2022",
                                      "--model", str(model), "--stac", str(catalogue), "--context", str(zones),
                                      "--context-field", "DISTRICT", "-o", str(tmp_path / "m")])
    assert result.exit_code == 1 and "has no field 'DISTRICT'; fields: NAME" in result.output
    assert not (tmp_path / "m" / "scenes").exists()  # refused before any fetch


# ---------------------------------------------------------------------------------------------
# small pieces: offsets, band identification, statistics


def _bare_item(props: dict[str, Any], when: str = "2022-03-01T10:00:00Z") -> Any:
    import pystac

    return pystac.Item.from_dict({"type": "Feature", "stac_version": "1.0.0", "id": "x", "geometry": None,
                                  "properties": {"datetime": when, **props}, "links": [], "assets": {}})


def test_baseline_offset() -> None:
    from smallmines.acquire.sentinel2 import baseline_offset

    assert baseline_offset(_bare_item({"s2:processing_baseline": "04.00"})) == 1000
    assert baseline_offset(_bare_item({"s2:processing_baseline": "05.11"})) == 1000
    assert baseline_offset(_bare_item({"s2:processing_baseline": "03.01"})) == 0
    # Earth Search v1 items say when the offset is already removed
    assert baseline_offset(_bare_item({"s2:processing_baseline": "05.09",
                                       "earthsearch:boa_offset_applied": True})) == 0
    # no baseline stated: the date decides (04.00 from 25 January 2022)
    assert baseline_offset(_bare_item({}, "2022-01-26T10:00:00Z")) == 1000
    assert baseline_offset(_bare_item({}, "2021-12-30T10:00:00Z")) == 0


def test_bands_by_wavelength_common_name_or_name() -> None:
    from smallmines.acquire.catalog import s2_band_of

    assert s2_band_of({"name": "B05", "common_name": "rededge", "center_wavelength": 0.704}) == "rededge1"
    assert s2_band_of({"name": "B8A", "common_name": "rededge", "center_wavelength": 0.865}) == "rededge4"
    assert s2_band_of({"name": "B12", "common_name": "swir22", "center_wavelength": 2.186}) == "swir2"
    assert s2_band_of({"name": "B09", "center_wavelength": 0.945}) is None
    assert s2_band_of({"name": "B01", "common_name": "coastal", "center_wavelength": 0.443}) is None
    assert s2_band_of({"name": "B8A"}) == "rededge4" and s2_band_of({"name": "B2"}) == "blue"
    assert s2_band_of({"name": "nir08-band", "common_name": "nir08"}) == "rededge4"
    assert s2_band_of({"name": "rededge3"}) == "rededge3"


def test_statistics_over_clear_observations() -> None:
    from smallmines.acquire.sentinel2 import _reduce

    stack = np.array([100, 200, 300, 10_000, np.nan], np.float32).reshape(5, 1, 1, 1)
    assert _reduce(stack, "median")[0, 0, 0] == 250
    assert _reduce(stack, "q25")[0, 0, 0] == 175
    assert _reduce(stack, "mean")[0, 0, 0] == 2650
    assert np.isnan(_reduce(np.full((3, 1, 1, 1), np.nan, np.float32), "median")).all()
