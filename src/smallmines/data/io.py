"""Read and validate one SmallMinesDS patch.

Every check names the file and says what was found and what was expected, so a bad file in a
4,270-patch dataset is found in seconds. Image nodata (-9999) becomes NaN here, once, so nothing
downstream can mistake it for a reflectance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.errors import RasterioError

try:  # GDAL errors that rasterio does not wrap (private module; absent in some versions)
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover
    CPLE_BaseError = RasterioError

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


def _describe(exc: BaseException) -> str:
    """GDAL's message, with the cause rasterio chains behind "See previous exception"."""
    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} {cause}"
    return text


def _open(path: str) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except (RasterioError, CPLE_BaseError) as exc:
        raise CorruptFileError(path, f"cannot be opened as a GeoTIFF ({_describe(exc)})") from exc


def _info(src: rasterio.DatasetReader) -> RasterInfo:
    crs = src.crs.to_string() if src.crs else None
    return RasterInfo(src.count, src.height, src.width, src.dtypes[0], crs, tuple(src.bounds), src.nodata)


def read_info(path: str) -> RasterInfo:
    """Header of a raster (band count, shape, dtype, CRS, bounds) without reading pixels.

    Raises:
        CorruptFileError: the file cannot be opened as a raster.
    """
    with _open(path) as src:
        return _info(src)


def _read(path: str, check: Callable[[RasterInfo], None]) -> tuple[np.ndarray, RasterInfo]:
    """Open, check the header (before any pixel is decoded), then read every band."""
    with _open(path) as src:
        info = _info(src)
        check(info)
        try:
            data = src.read()
        except (RasterioError, CPLE_BaseError) as exc:
            raise CorruptFileError(path, f"pixel data cannot be decoded, the file is probably truncated "
                                         f"({_describe(exc)})") from exc
    return data, info


def _check_shape(path: str, info: RasterInfo, bands: int, size: int, what: str) -> None:
    if info.count != bands:
        raise DataFormatError(path, f"has {info.count} bands, expected {bands} ({what})")
    if not (0 < info.height <= size and 0 < info.width <= size):
        raise DataFormatError(path, f"is {info.height} x {info.width} pixels, expected {size} x {size} (or an edge "
                              "patch smaller than that)")


def _pad(data: np.ndarray, size: int, value: float) -> np.ndarray:
    """An edge patch (smaller than ``size``, cut by the area's boundary) padded at the bottom and right.

    SmallMinesDS lists a few such patches (e.g. 13 x 36 pixels) in its split files. They are padded
    with nodata to ``size`` x ``size`` and used: their real pixels count, the padding never reaches a
    loss or a metric. ``data check`` reports each one as a warning.
    """
    rows, cols = size - data.shape[-2], size - data.shape[-1]
    if not rows and not cols:
        return data
    return np.pad(data, [(0, 0)] * (data.ndim - 2) + [(0, rows), (0, cols)], constant_values=value)


def load_image(path: str, size: int = PATCH_SIZE) -> tuple[np.ndarray, RasterInfo]:
    """Like :func:`read_image`, also returning the header (CRS, bounds) read in the same open."""

    def check(info: RasterInfo) -> None:
        _check_shape(path, info, NUM_BANDS, size, "S2 x10, S1 x2, DEM")
        if info.dtype != "float32":
            raise DataFormatError(path, f"has dtype {info.dtype}, expected float32")

    data, info = _read(path, check)
    if not np.isfinite(data).all():
        raise DataFormatError(path, "holds NaN or infinite values; nodata must be stored as -9999")
    return _pad(np.where(data == IMAGE_NODATA, np.float32(np.nan), data), size, np.nan), info


def read_image(path: str, size: int = PATCH_SIZE) -> np.ndarray:
    """Read a patch image as float32 ``(13, size, size)`` with nodata as NaN.

    Raises:
        DataFormatError: wrong band count, shape or dtype, or NaN/inf stored as data.
        CorruptFileError: the file cannot be opened or decoded.
    """
    return load_image(path, size)[0]


def load_mask(path: str, size: int = PATCH_SIZE) -> tuple[np.ndarray, RasterInfo]:
    """Like :func:`read_mask`, also returning the header (CRS, bounds) read in the same open."""
    data, info = _read(path, lambda info: _check_shape(path, info, 1, size, "the mining mask"))
    if not np.issubdtype(data.dtype, np.integer):
        if not np.array_equal(data, np.round(data)):
            raise DataFormatError(path, f"has non-integer values (dtype {info.dtype}); expected 0, 1 or 255")
    bad = np.setdiff1d(np.unique(data), MASK_VALUES)
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:5].tolist())
        raise DataFormatError(path, f"has values {shown} outside {{0 = not mining, 1 = mining, 255 = nodata}}")
    return _pad(data[0].astype(np.uint8), size, MASK_NODATA), info


def read_mask(path: str, size: int = PATCH_SIZE) -> np.ndarray:
    """Read a patch mask as uint8 ``(size, size)`` holding only 0, 1 and 255 (nodata).

    Raises:
        DataFormatError: wrong band count, shape or dtype, or values outside {0, 1, 255}.
        CorruptFileError: the file cannot be opened or decoded.
    """
    return load_mask(path, size)[0]


def merge_nodata(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mask with 255 wherever any image band is NaN (nodata)."""
    return np.where(np.isnan(image).any(axis=0), np.uint8(MASK_NODATA), mask)


def read_patch(ref: PatchRef, size: int = PATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Read an image/mask pair: image float32 ``(13, H, W)`` with NaN nodata, mask uint8 ``(H, W)``.

    Pixels where any image band is nodata are set to 255 in the mask, so they never reach a loss or
    a metric as real values.

    Raises:
        DataFormatError: a file fails a check, or the patch has no valid pixel at all.
    """
    image, info = load_image(ref.image, size)
    raw_mask, mask_info = load_mask(ref.mask, size)
    if (info.height, info.width) != (mask_info.height, mask_info.width):
        raise DataFormatError(ref.image, f"is {info.height} x {info.width} pixels but its mask {ref.mask} is "
                              f"{mask_info.height} x {mask_info.width}; they must match")
    mask = merge_nodata(image, raw_mask)
    if (mask == MASK_NODATA).all():
        raise DataFormatError(ref.image, "every pixel is nodata (-9999 in the image or 255 in the mask)")
    return image, mask


def mining_share(mask: np.ndarray) -> float:
    """Percentage (0-100) of valid pixels that are mining; 0 when no pixel is valid."""
    valid = mask != MASK_NODATA
    n = int(valid.sum())
    return 100.0 * float((mask[valid] == 1).sum()) / n if n else 0.0
