"""Read and validate one SmallMinesDS patch.

Every check names the file and says what was found and what was expected, so a bad file in a
4,270-patch dataset is found in seconds. Image nodata (-9999) becomes NaN here, once, so nothing
downstream can mistake it for a reflectance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from smallmines.bands import IMAGE_NODATA, MASK_NODATA, NUM_BANDS
from smallmines.data.layout import PatchRef
from smallmines.errors import CorruptFileError, DataFormatError

PATCH_SIZE = 128
MASK_VALUES = (0, 1, MASK_NODATA)


@dataclass(frozen=True)
class RasterInfo:
    """Header facts of a patch file, read without its pixels."""

    count: int
    height: int
    width: int
    dtype: str
    crs: str | None
    bounds: tuple[float, float, float, float]
    nodata: float | None


def _open(path: str) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except RasterioError as exc:
        raise CorruptFileError(path, f"cannot be opened as a GeoTIFF ({exc})") from exc


def read_info(path: str) -> RasterInfo:
    """Header of a raster (band count, shape, dtype, CRS, bounds) without reading pixels."""
    with _open(path) as src:
        crs = src.crs.to_string() if src.crs else None
        return RasterInfo(src.count, src.height, src.width, src.dtypes[0], crs, tuple(src.bounds), src.nodata)


def _read(path: str) -> tuple[np.ndarray, RasterInfo]:
    with _open(path) as src:
        crs = src.crs.to_string() if src.crs else None
        info = RasterInfo(src.count, src.height, src.width, src.dtypes[0], crs, tuple(src.bounds), src.nodata)
        try:
            data = src.read()
        except RasterioError as exc:
            raise CorruptFileError(path, f"pixel data cannot be decoded ({exc})") from exc
    return data, info


def read_image(path: str, size: int = PATCH_SIZE) -> np.ndarray:
    """Read a patch image as float32 ``(13, size, size)`` with nodata as NaN.

    Raises:
        DataFormatError: wrong band count, shape or dtype, or NaN/inf stored as data.
        CorruptFileError: the file cannot be opened or decoded.
    """
    data, info = _read(path)
    if info.count != NUM_BANDS:
        raise DataFormatError(path, f"has {info.count} bands, expected {NUM_BANDS} (S2 x10, S1 x2, DEM)")
    if (info.height, info.width) != (size, size):
        raise DataFormatError(path, f"is {info.height} x {info.width} pixels, expected {size} x {size}")
    if info.dtype != "float32":
        raise DataFormatError(path, f"has dtype {info.dtype}, expected float32")
    if not np.isfinite(data).all():
        raise DataFormatError(path, "holds NaN or infinite values; nodata must be stored as -9999")
    return np.where(data == IMAGE_NODATA, np.float32(np.nan), data)


def read_mask(path: str, size: int = PATCH_SIZE) -> np.ndarray:
    """Read a patch mask as uint8 ``(size, size)`` holding only 0, 1 and 255 (nodata).

    Raises:
        DataFormatError: wrong band count, shape or dtype, or values outside {0, 1, 255}.
        CorruptFileError: the file cannot be opened or decoded.
    """
    data, info = _read(path)
    if info.count != 1:
        raise DataFormatError(path, f"has {info.count} bands, expected 1")
    if (info.height, info.width) != (size, size):
        raise DataFormatError(path, f"is {info.height} x {info.width} pixels, expected {size} x {size}")
    if not np.issubdtype(data.dtype, np.integer):
        if not np.array_equal(data, np.round(data)):
            raise DataFormatError(path, f"has non-integer values (dtype {info.dtype}); expected 0, 1 or 255")
    bad = np.setdiff1d(np.unique(data), MASK_VALUES)
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:5].tolist())
        raise DataFormatError(path, f"has values {shown} outside {{0 = not mining, 1 = mining, 255 = nodata}}")
    return data[0].astype(np.uint8)


def read_patch(ref: PatchRef, size: int = PATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Read an image/mask pair: image float32 ``(13, H, W)`` with NaN nodata, mask uint8 ``(H, W)``.

    Pixels where any image band is nodata are set to 255 in the mask, so they never reach a loss or
    a metric as real values.

    Raises:
        DataFormatError: a file fails a check, or the patch has no valid pixel at all.
    """
    image = read_image(ref.image, size)
    mask = read_mask(ref.mask, size)
    invalid = np.isnan(image).any(axis=0)
    mask = np.where(invalid, np.uint8(MASK_NODATA), mask)
    if (mask == MASK_NODATA).all():
        raise DataFormatError(ref.image, "every pixel is nodata (-9999 in the image or 255 in the mask)")
    return image, mask


def mining_share(mask: np.ndarray) -> float:
    """Percentage (0-100) of valid pixels that are mining; 0 when no pixel is valid."""
    valid = mask != MASK_NODATA
    n = int(valid.sum())
    return 100.0 * float((mask[valid] == 1).sum()) / n if n else 0.0
