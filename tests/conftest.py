"""Shared fixtures: small synthetic SmallMinesDS copies, a tiny scene, and ways to break a dataset.

Session-scoped datasets are built once per test run with :mod:`smallmines.data.synth` and must be treated
as read-only; a test that modifies data copies it first (the ``broken`` fixture does).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from smallmines.data.layout import PatchRef, discover, split_csv_name


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-tile synthetic SmallMinesDS folder (both years, country code, split CSVs), seed 0."""
    from smallmines.data.synth.patches import synthesize_dataset

    return synthesize_dataset(tmp_path_factory.mktemp("synth_root"), tiles=16, seed=0)


@pytest.fixture(scope="session")
def synth_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same dataset as ``synth_root`` in the published zip form (``SmallMinesDS.zip``), rendered by 2 processes."""
    from smallmines.data.synth.patches import synthesize_dataset

    return synthesize_dataset(tmp_path_factory.mktemp("synth_zip"), tiles=16, seed=0, zip=True, workers=2)


@pytest.fixture(scope="session")
def synth_nocountry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-tile dataset whose file names carry no country code (``IMG_0001_2016.tif``)."""
    from smallmines.data.synth.patches import synthesize_dataset

    return synthesize_dataset(tmp_path_factory.mktemp("synth_nocountry"), tiles=16, seed=0, country=None)


@pytest.fixture(scope="session")
def synth_scene(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny 512 x 512 scene for both years: ``{year: {"stacked", "truth", "s2_10m", ...: Path}}``."""
    from smallmines.data.synth.scenes import synthesize_scene

    return synthesize_scene(tmp_path_factory.mktemp("synth_scene"), size=512, seed=0)


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-tile dataset (8 patches) to copy and break; never modify it in place."""
    from smallmines.data.synth.patches import synthesize_dataset

    return synthesize_dataset(tmp_path_factory.mktemp("synth_small"), tiles=4, seed=1)


def _write_tif(path: str | Path, data: np.ndarray, crs: str | None = "EPSG:32630",
              transform: rasterio.Affine | None = None, nodata: float | None = None) -> Path:
    """Write a ``(bands, H, W)`` array as a GeoTIFF, whatever its dtype or shape."""
    path = Path(path)
    bands, height, width = data.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": bands, "dtype": data.dtype.name,
               "transform": transform or Affine(10, 0, 500000, 0, -10, 600000)}
    if crs:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


class Broken:
    """A private copy of a small dataset with methods that break one thing each.

    Every method returns the path a checker should name (the broken file, or the missing one).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.layout = discover(root)

    def ref(self, index: int = 0) -> PatchRef:
        return self.layout.patches[index]

    def _profile(self, path: str) -> tuple[np.ndarray, rasterio.Affine, str | None]:
        with rasterio.open(path) as src:
            return src.read(), src.transform, src.crs.to_string() if src.crs else None

    def bad_band_count(self, index: int = 0, bands: int = 12) -> str:
        path = self.ref(index).image
        data, transform, crs = self._profile(path)
        _write_tif(path, data[:bands], crs, transform, nodata=-9999)
        return path

    def wrong_dtype(self, index: int = 0) -> str:
        path = self.ref(index).image
        data, transform, crs = self._profile(path)
        _write_tif(path, data.astype("float64"), crs, transform, nodata=-9999)
        return path

    def wrong_shape(self, index: int = 0) -> str:
        path = self.ref(index).image
        data, transform, crs = self._profile(path)
        _write_tif(path, data[:, :64, :], crs, transform, nodata=-9999)
        return path

    def edge_patch(self, index: int = 0, rows: int = 13, cols: int = 36) -> str:
        """Cut an image and its mask to ``rows x cols`` (an edge patch, as SmallMinesDS has a few)."""
        ref = self.ref(index)
        for path, nodata in ((ref.image, -9999), (ref.mask, 255)):
            data, transform, crs = self._profile(path)
            _write_tif(path, data[:, :rows, :cols], crs, transform, nodata=nodata)
        return ref.image

    def truncate(self, index: int = 0, keep: float = 0.5, header_first: bool = True) -> str:
        """Cut an image short. With ``header_first`` the file is first rewritten with its header at
        the start, so it still opens and fails while decoding pixels (an interrupted download)."""
        path = Path(self.ref(index).image)
        if header_first:
            data, transform, crs = self._profile(str(path))
            _write_tif(path, data, crs, transform, nodata=-9999)
        raw = path.read_bytes()
        path.write_bytes(raw[: int(len(raw) * keep)])
        return str(path)

    def truncate_header(self, index: int = 0) -> str:
        return self.truncate(index, keep=0.5, header_first=False)

    def not_a_tiff(self, index: int = 0) -> str:
        path = Path(self.ref(index).mask)
        path.write_text("this is not a GeoTIFF\n")
        return str(path)

    def mask_value(self, index: int = 0, value: int = 7) -> str:
        path = self.ref(index).mask
        data, transform, crs = self._profile(path)
        data[0, :5, :5] = value
        _write_tif(path, data, crs, transform, nodata=255)
        return path

    def all_nodata(self, index: int = 0) -> str:
        path = self.ref(index).image
        data, transform, crs = self._profile(path)
        _write_tif(path, np.full_like(data, -9999), crs, transform, nodata=-9999)
        return path

    def mask_crs(self, index: int = 0, crs: str = "EPSG:32631") -> str:
        path = self.ref(index).mask
        data, transform, _ = self._profile(path)
        _write_tif(path, data, crs, transform, nodata=255)
        return path

    def remove_mask(self, index: int = 0) -> str:
        """Delete a mask; returns the image left without it (the orphan)."""
        ref = self.ref(index)
        Path(ref.mask).unlink()
        return ref.image

    def remove_image(self, index: int = 0) -> str:
        """Delete an image; returns the mask left without it (the orphan)."""
        ref = self.ref(index)
        Path(ref.image).unlink()
        return ref.mask

    def remove_split(self, year: int = 2016) -> str:
        """Delete the official split CSV of ``year``; returns the name of the missing file."""
        (path,) = list(self.root.rglob(split_csv_name(year)))
        path.unlink()
        return split_csv_name(year)


@pytest.fixture
def write_tif():
    """``write_tif(path, data, crs="EPSG:32630", transform=None, nodata=None)``: any array as a GeoTIFF."""
    return _write_tif


@pytest.fixture
def broken(synth_small: Path, tmp_path: Path) -> Broken:
    """A fresh, writable copy of ``synth_small`` with helpers that break it."""
    root = tmp_path / "broken"
    shutil.copytree(synth_small, root)
    return Broken(root)
