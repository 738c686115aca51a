"""Seeded whole-scene rasters and tiny models for the mapping tests (no test in this file).

Scenes look like SmallMinesDS in level and spread: 10 m bands carry fine texture; 20 m bands, S1
and the DEM are smooth at their own resolution, so writing them at 20 m or 30 m and warping back
onto the 10 m grid recovers them closely, which makes "separate rasters equal the stacked one" a
sharp test rather than a loose one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import calculate_default_transform, reproject
from scipy.ndimage import gaussian_filter
from torch import nn

from smallmines.bands import BAND_NAMES, IMAGE_NODATA, compute_channels
from smallmines.data.stats import compute_stats
from smallmines.models.registry import ModelCard, build_model, register_model, save_model

CRS = "EPSG:32630"
ORIGIN = (600_000.0, 700_000.0)
LEVELS = np.array([450, 700, 650, 1100, 2000, 2400, 2600, 2700, 1900, 1000, -8, -15, 180], np.float32)
SPREAD = np.array([150, 160, 200, 220, 350, 420, 450, 460, 380, 300, 2.5, 2.5, 40], np.float32)
FINE = ("blue", "green", "red", "nir")
COARSE = ("rededge1", "rededge2", "rededge3", "rededge4", "swir1", "swir2")


@register_model("_test_conv3")
def _conv3(in_channels: int, channels: tuple[str, ...] = (), width: int = 8) -> nn.Module:
    """Three 3x3 convolutions: a receptive field of 7 pixels, so tiled output is exact."""
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 2, 3, padding=1))


def _field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    f = gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return (f / f.std()).astype(np.float32)


def scene_array(height: int, width: int, seed: int = 0) -> np.ndarray:
    """``(13, H, W)`` float32 raw values (no nodata)."""
    rng = np.random.default_rng(seed)
    common = _field(rng, (height, width), 5.0)
    out = np.empty((13, height, width), np.float32)
    for i, name in enumerate(BAND_NAMES):
        if name in FINE:
            texture = 0.7 * common + 0.7 * _field(rng, (height, width), 1.0)
        else:
            texture = 0.8 * common + 0.6 * _field(rng, (height, width), 8.0 if name == "dem" else 5.0)
        out[i] = LEVELS[i] + SPREAD[i] * texture
    return out


def write_raster(path: Path, data: np.ndarray, transform: rasterio.Affine | None = None, crs: str = CRS,
                 descriptions: tuple[str, ...] | None = None, nodata: float | None = IMAGE_NODATA) -> Path:
    """A tiled float32 GeoTIFF with band descriptions."""
    count, height, width = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count, dtype="float32",
                       crs=crs, transform=transform or from_origin(*ORIGIN, 10, 10), nodata=nodata,
                       tiled=True, blockxsize=128, blockysize=128) as dst:
        dst.write(data.astype(np.float32))
        if descriptions:
            dst.descriptions = descriptions
    return path


def write_stack(path: Path, data: np.ndarray, **kwargs: object) -> Path:
    """A stacked 13-band scene with band names as descriptions."""
    return write_raster(path, data, descriptions=BAND_NAMES, **kwargs)


def _coarsen(data: np.ndarray, factor: int) -> np.ndarray:
    c, h, w = data.shape
    return data.reshape(c, h // factor, factor, w // factor, factor).mean(axis=(2, 4))


def write_separate(data: np.ndarray, folder: Path) -> dict[str, Path]:
    """The scene as distributed per sensor: S2 10 m, S2 20 m, S1 20 m, DEM in EPSG:4326 at 1 arc-second."""
    folder.mkdir(parents=True, exist_ok=True)
    index = {n: i for i, n in enumerate(BAND_NAMES)}
    t20 = from_origin(*ORIGIN, 20, 20)
    paths = {
        "s2_10m": write_raster(folder / "s2_10m.tif", data[[index[b] for b in FINE]], descriptions=FINE),
        "s2_20m": write_raster(folder / "s2_20m.tif", _coarsen(data[[index[b] for b in COARSE]], 2), t20,
                               descriptions=COARSE),
        "s1": write_raster(folder / "s1.tif", _coarsen(data[[10, 11]], 2), t20, descriptions=("VV", "VH")),
    }
    _, height, width = data.shape
    src_transform = from_origin(*ORIGIN, 10, 10)
    left, top = ORIGIN
    bounds = (left, top - 10 * height, left + 10 * width, top)
    transform, w, h = calculate_default_transform(CRS, "EPSG:4326", width, height, *bounds, resolution=1 / 3600)
    dem = np.full((1, h, w), IMAGE_NODATA, np.float32)
    reproject(data[12:13], dem, src_transform=src_transform, src_crs=CRS, dst_transform=transform,
              dst_crs="EPSG:4326", resampling=Resampling.average, dst_nodata=IMAGE_NODATA)
    paths["dem"] = write_raster(folder / "dem.tif", dem, transform, "EPSG:4326", descriptions=("elevation",))
    return paths


def card_for(data: np.ndarray, channels: tuple[str, ...], model: str = "_test_conv3",
             model_args: dict | None = None, threshold: float = 0.5) -> ModelCard:
    """A card whose statistics are the scene's own (so the guards pass on it)."""
    raw = np.where(data == IMAGE_NODATA, np.nan, data)
    stats = compute_stats([compute_channels(raw, channels)], channels, source="test scene")
    return ModelCard(model, model_args or {}, channels, stats, threshold)


def save_tiny(path: Path, card: ModelCard, seed: int = 0) -> Path:
    """A randomly initialised network of the card's architecture, saved with the card."""
    torch.manual_seed(seed)
    network = build_model(card.model, card.channels, **card.model_args)
    return save_model(path, network, card)


TINY_UNET = {"encoder": "resnet18", "encoder_depth": 3, "decoder_channels": (32, 16, 8)}
"""A small smp U-Net (three encoder stages) for tests that need a real architecture."""
