"""The 13 SmallMinesDS bands, their groups, and spectral indices selectable like bands.

Band order is the published one: image channel ``i`` of every SmallMinesDS GeoTIFF is
``BANDS[i]``. Sentinel-2 L2A bands are surface reflectance x 10000, Sentinel-1 RTC backscatter is in
dB and the Copernicus DEM is in metres. Image nodata is ``-9999``; mask nodata is ``255``.

A *selection* is a comma-separated list of band names, Sentinel-2 aliases (``B8A``), group names
(``s2``, ``s1``, ``dem``, ``rgb``, ``official6``, ``all``) and index names (``ndvi``...), expanded in
the order given::

    >>> parse_bands("s1,ndvi,B2")
    ('vv', 'vh', 'ndvi', 'blue')

:func:`compute_channels` turns a raw 13-band array (numpy or torch, nodata already NaN) into those
channels, so training, evaluation and whole-scene mapping compute indices the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from smallmines.errors import BandError

IMAGE_NODATA = -9999.0
"""Nodata value of SmallMinesDS images (every band)."""
MASK_NODATA = 255
"""Nodata value of SmallMinesDS masks; also the ignore index of losses and metrics."""
IGNORE_INDEX = MASK_NODATA
CLASS_NAMES = ("background", "mining")


@dataclass(frozen=True)
class Band:
    """One channel of the published image stack."""

    name: str
    index: int
    sensor: str
    unit: str
    resolution: float
    aliases: tuple[str, ...] = ()
    description: str = ""


BANDS: tuple[Band, ...] = (
    Band("blue", 0, "s2", "reflectance x 10000", 10, ("B2", "B02"), "Sentinel-2 blue, 490 nm"),
    Band("green", 1, "s2", "reflectance x 10000", 10, ("B3", "B03"), "Sentinel-2 green, 560 nm"),
    Band("red", 2, "s2", "reflectance x 10000", 10, ("B4", "B04"), "Sentinel-2 red, 665 nm"),
    Band("rededge1", 3, "s2", "reflectance x 10000", 20, ("B5", "B05"), "Sentinel-2 red edge, 705 nm"),
    Band("rededge2", 4, "s2", "reflectance x 10000", 20, ("B6", "B06"), "Sentinel-2 red edge, 740 nm"),
    Band("rededge3", 5, "s2", "reflectance x 10000", 20, ("B7", "B07"), "Sentinel-2 red edge, 783 nm"),
    Band("nir", 6, "s2", "reflectance x 10000", 10, ("B8", "B08"), "Sentinel-2 NIR, 842 nm"),
    Band("rededge4", 7, "s2", "reflectance x 10000", 20, ("B8A", "nir08"), "Sentinel-2 narrow NIR, 865 nm"),
    Band("swir1", 8, "s2", "reflectance x 10000", 20, ("B11",), "Sentinel-2 SWIR, 1610 nm"),
    Band("swir2", 9, "s2", "reflectance x 10000", 20, ("B12",), "Sentinel-2 SWIR, 2190 nm"),
    Band("vv", 10, "s1", "dB", 10, ("VV",), "Sentinel-1 RTC backscatter, VV"),
    Band("vh", 11, "s1", "dB", 10, ("VH",), "Sentinel-1 RTC backscatter, VH"),
    Band("dem", 12, "dem", "m", 30, ("elevation",), "Copernicus DEM GLO-30 elevation"),
)
BAND_NAMES: tuple[str, ...] = tuple(b.name for b in BANDS)
NUM_BANDS = len(BANDS)
RGB_BANDS = ("red", "green", "blue")

GROUPS: dict[str, tuple[str, ...]] = {
    "s2": BAND_NAMES[:10],
    "s1": ("vv", "vh"),
    "dem": ("dem",),
    "rgb": RGB_BANDS,
    "official6": ("blue", "green", "red", "rededge4", "swir1", "swir2"),
    "all": BAND_NAMES,
}
"""Named groups. ``official6`` is the six bands the SmallMinesDS authors trained on."""


def _normalized_difference(a: Any, b: Any) -> Any:
    den = a + b
    # Guard exact zeros; NaN (nodata) propagates through the arithmetic.
    safe = den + (den == 0) * 1e-6
    return (a - b) / safe


@dataclass(frozen=True)
class SpectralIndex:
    """A channel computed on the fly from raw bands (before normalisation)."""

    name: str
    inputs: tuple[str, ...]
    formula: Callable[..., Any] = field(repr=False)
    description: str = ""

    def __call__(self, *arrays: Any) -> Any:
        return self.formula(*arrays)


INDICES: dict[str, SpectralIndex] = {
    idx.name: idx
    for idx in (
        SpectralIndex("ndvi", ("nir", "red"), _normalized_difference, "vegetation: (NIR-red)/(NIR+red)"),
        SpectralIndex("ndwi", ("green", "nir"), _normalized_difference, "open water (McFeeters): (G-NIR)/(G+NIR)"),
        SpectralIndex("mndwi", ("green", "swir1"), _normalized_difference, "water (Xu): (G-SWIR1)/(G+SWIR1)"),
        SpectralIndex("ndmi", ("nir", "swir1"), _normalized_difference, "moisture: (NIR-SWIR1)/(NIR+SWIR1)"),
        SpectralIndex("ndbi", ("swir1", "nir"), _normalized_difference, "built-up: (SWIR1-NIR)/(SWIR1+NIR)"),
        SpectralIndex("ndti", ("red", "green"), _normalized_difference, "water turbidity: (R-G)/(R+G)"),
        SpectralIndex(
            "bsi",
            ("swir1", "red", "nir", "blue"),
            lambda swir1, red, nir, blue: _normalized_difference(swir1 + red, nir + blue),
            "bare soil: ((SWIR1+R)-(NIR+B))/((SWIR1+R)+(NIR+B))",
        ),
        SpectralIndex(
            "vvvh",
            ("vv", "vh"),
            lambda vv, vh: vv - vh,
            "S1 VV/VH ratio, in dB (VV dB - VH dB)",
        ),
    )
}

_LOOKUP: dict[str, str] = {}
for _band in BANDS:
    for _key in (_band.name, *_band.aliases):
        _LOOKUP[_key.lower()] = _band.name
for _name in INDICES:
    _LOOKUP[_name] = _name


def available() -> dict[str, list[str]]:
    """Every name a selection accepts, by kind (for error messages and ``--help``)."""
    return {
        "bands": list(BAND_NAMES),
        "aliases": [a for b in BANDS for a in b.aliases],
        "groups": list(GROUPS),
        "indices": list(INDICES),
    }


def parse_bands(selection: str | Iterable[str]) -> tuple[str, ...]:
    """Expand a band selection into channel names, in the order given, without duplicates.

    Args:
        selection: ``"s2,s1,ndvi"`` or an iterable of names; case-insensitive.

    Returns:
        Canonical channel names (band names and index names).

    Raises:
        BandError: for an unknown name (the message lists every valid one) or an empty selection.
    """
    items = selection.split(",") if isinstance(selection, str) else list(selection)
    out: list[str] = []
    for raw in items:
        key = str(raw).strip()
        if not key:
            continue
        lowered = key.lower()
        if lowered in GROUPS:
            names: Sequence[str] = GROUPS[lowered]
        elif lowered in _LOOKUP:
            names = (_LOOKUP[lowered],)
        else:
            kinds = available()
            raise BandError(
                f"unknown band, group or index {key!r}; valid bands: {', '.join(kinds['bands'])}; "
                f"aliases: {', '.join(kinds['aliases'])}; groups: {', '.join(kinds['groups'])}; "
                f"indices: {', '.join(kinds['indices'])}"
            )
        out.extend(n for n in names if n not in out)
    if not out:
        raise BandError(f"empty band selection {selection!r}")
    return tuple(out)


def required_bands(channels: Iterable[str]) -> tuple[str, ...]:
    """Raw bands needed to compute ``channels``, in published order."""
    needed: set[str] = set()
    for name in channels:
        needed.update(INDICES[name].inputs if name in INDICES else (name,))
    return tuple(b for b in BAND_NAMES if b in needed)


def band_index(name: str) -> int:
    """Position of a raw band in the published 13-band stack."""
    canonical = _LOOKUP.get(name.lower())
    if canonical is None or canonical in INDICES:
        raise BandError(f"{name!r} is not one of the 13 SmallMinesDS bands: {', '.join(BAND_NAMES)}")
    return BAND_NAMES.index(canonical)


def compute_channels(image: Any, channels: Sequence[str], source_bands: Sequence[str] = BAND_NAMES) -> Any:
    """Compute the selected channels from a raw band stack.

    Args:
        image: ``(B, H, W)`` or ``(N, B, H, W)`` numpy array or torch tensor of raw values (not
            normalised) with nodata set to NaN, its bands in the order of ``source_bands``.
        channels: canonical channel names from :func:`parse_bands`.
        source_bands: the bands ``image`` holds, by default all 13 in published order.

    Returns:
        Array of the same kind with the channels along the band axis, in order. NaN marks nodata;
        an index is NaN wherever one of its inputs is.

    Raises:
        BandError: when a channel needs a band that ``source_bands`` lacks.
    """
    axis = image.ndim - 3
    position = {name: i for i, name in enumerate(source_bands)}

    def take(name: str) -> Any:
        if name not in position:
            raise BandError(f"channel needs band {name!r}, which the input lacks (it has {', '.join(source_bands)})")
        return image[(slice(None),) * axis + (position[name],)]

    planes = []
    for name in channels:
        if name in INDICES:
            idx = INDICES[name]
            planes.append(idx(*(take(b) for b in idx.inputs)))
        else:
            planes.append(take(name))
    if hasattr(image, "new_tensor"):  # torch
        import torch

        return torch.stack(planes, dim=axis)
    import numpy as np

    return np.stack(planes, axis=axis).astype(image.dtype, copy=False)
