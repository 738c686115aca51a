"""Mine polygons: tracing, areas (planar and geodesic), labelling back to pixels, GeoPackage output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.crs import CRS
from rasterio.transform import from_origin
from scipy.ndimage import label

from smallmines.mapping.vector import LAYER, areas_ha, label_tile, pixel_areas_m2, polygonize, write_polygons


def _mask(seed: int = 0, shape: tuple[int, int] = (80, 120)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = (rng.random(shape) < 0.3).astype(np.uint8)
    mask[10:30, 20:50] = 1  # one big mine with a hole
    mask[18:22, 30:34] = 0
    return mask


def _write(path: Path, mask: np.ndarray, crs: str, transform: rasterio.Affine) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=mask.shape[1], height=mask.shape[0], count=1,
                       dtype="uint8", crs=crs, transform=transform) as dst:
        dst.write(mask, 1)
    return path


@pytest.mark.parametrize(("crs", "transform"), [
    ("EPSG:32630", from_origin(600_000, 700_000, 10, 10)),
    ("EPSG:4326", from_origin(-1.5, 6.0, 1 / 10800, 1 / 10800)),
])
def test_polygon_area_equals_mask_area(tmp_path: Path, crs: str, transform: rasterio.Affine) -> None:
    mask = _mask()
    path = _write(tmp_path / "m.tif", mask, crs, transform)
    polygons, area, dropped = polygonize(path)
    wkt = CRS.from_string(crs).to_wkt()
    pixel = pixel_areas_m2(transform, wkt, 0, mask.shape[0])
    expected_ha = float((mask * pixel[:, None]).sum()) / 1e4
    assert area.sum() == pytest.approx(expected_ha, rel=1e-6) and dropped == 0
    np.testing.assert_allclose(areas_ha(polygons, wkt), area)
    assert len(polygons) == label(mask)[1]  # one polygon per 4-connected component
    assert all(p.is_valid for p in polygons)
    big, big_area, small = polygonize(path, min_area_ha=float(np.sort(area)[-3]) * 0.999)
    assert len(big) == 3 and small == len(polygons) - 3 and big_area.min() >= np.sort(area)[-3] * 0.999


def test_tiled_tracing_merges_polygons_across_tiles(tmp_path: Path) -> None:
    mask = _mask(2, (90, 130))
    mask[40:50, :] = 1  # one band across every tile column
    mask[60, 63], mask[61, 64] = 1, 1  # corner contact only: stays two polygons under 4-connectivity
    mask[59:61, 62] = 0
    path = _write(tmp_path / "m.tif", mask, "EPSG:32630", from_origin(600_000, 700_000, 10, 10))
    whole, whole_area, _ = polygonize(path, tile=4096)
    tiled, tiled_area, _ = polygonize(path, tile=32)
    assert len(tiled) == len(whole) == label(mask)[1]
    np.testing.assert_allclose(np.sort(tiled_area), np.sort(whole_area))
    assert all(p.is_valid for p in tiled)
    assert shapely.union_all(tiled).equals(shapely.union_all(whole))


def test_label_tile_gives_back_the_pixels(tmp_path: Path) -> None:
    mask = _mask(1)
    transform = from_origin(600_000, 700_000, 10, 10)
    polygons, _, _ = polygonize(_write(tmp_path / "m.tif", mask, "EPSG:32630", transform))
    tree = shapely.STRtree(polygons)
    labels = np.zeros(mask.shape, np.int32)
    for r0, c0 in ((0, 0), (0, 64), (40, 0), (40, 64)):  # four tiles
        sub = transform * rasterio.Affine.translation(c0, r0)
        labels[r0:r0 + 40, c0:c0 + 64] = label_tile(polygons, tree, sub, (40, min(64, 120 - c0)))
    np.testing.assert_array_equal(labels > 0, mask == 1)
    sizes = np.bincount(labels.ravel())[1:]
    np.testing.assert_allclose(sizes * 100 / 1e4, areas_ha(polygons, CRS.from_epsg(32630).to_wkt()))


def test_write_polygons_sets_epsg_layer_and_fields(tmp_path: Path) -> None:
    wkt = CRS.from_epsg(32630).to_wkt()
    polygons = [shapely.box(0, 0, 30, 20), shapely.box(100, 100, 110, 140)]
    path = write_polygons(tmp_path / "mines.gpkg", polygons, {"id": np.array([1, 2]), "area_ha": np.array([0.06, 0.04]),
                                                             "mean_prob": np.array([0.7, 0.9])}, wkt)
    info = pyogrio.read_info(path, layer=LAYER)
    assert info["crs"] == "EPSG:32630" and info["geometry_type"] == "Polygon" and info["features"] == 2
    assert list(info["fields"]) == ["id", "area_ha", "mean_prob"]
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_write_polygons_empty_and_simplified(tmp_path: Path) -> None:
    wkt = CRS.from_epsg(32630).to_wkt()
    empty = write_polygons(tmp_path / "empty.gpkg", [], {"id": np.zeros(0, int)}, wkt)
    assert pyogrio.read_info(empty, layer=LAYER)["features"] == 0
    stairs = shapely.Polygon([(0, 0), (10, 0), (10, 10), (20, 10), (20, 20), (30, 20), (30, 30), (0, 30)])
    path = write_polygons(tmp_path / "s.gpkg", [stairs], {"id": np.array([1])}, wkt, simplify=15)
    geometry = pyogrio.read_dataframe(path).geometry.iloc[0]
    assert geometry.is_valid and len(geometry.exterior.coords) < len(stairs.exterior.coords)
