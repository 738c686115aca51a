"""The synthetic twin of SmallMinesDS: one procedural world, rendered as patches or whole scenes.

The real dataset cannot be downloaded here, so this package draws a stand-in that looks and behaves
like it: the published layout and file formats, plausible values per band, and mining that is
learnable but not trivial.

World and determinism
    The world is a deterministic function of the seed and of the absolute position on a 10 m grid
    in UTM zone 30N (EPSG:32630) whose top-left corner lies at 600000 E, 700000 N, in the gold belt
    of south-western Ghana (Dunkwa to Tarkwa). Every field is computed pointwise from hashed lattice
    noise (cubic B-spline value noise on integer lattices), and the few neighbourhood operations
    (gradients, 20 m pixels) run on a margin around the requested window. Any window therefore
    renders exactly the pixels that the same window cut from a larger one would: dataset patches and
    scene blocks come from the same world and are seamless by construction.

Terrain (band ``dem``, metres, the same in every year)
    Streams of three orders are the zero contours of noise fields with wavelengths of about 2.4, 7
    and 22 km; the distance to each is estimated as ``|f| / |grad f|``. Flat-floored valleys are
    carved along them into a rolling plateau, with hills in between, so every stream runs on a
    valley floor. Elevations span roughly 50-330 m, as in the Copernicus DEM of the region; the
    regional undulation of the plateau (tens of kilometres, about 60 m) is larger than the valley
    depths, so a valley floor is low only relative to its surroundings, not in absolute terms.

Land cover
    Moist forest and cocoa agroforest dominate. Farmland clusters away from valley floors; in the
    January dry season many of its fields are harvested or burnt bare soil: small fields (about
    90 m) of the same soil as the mining pits, with the same stubble or regrowth, mixed edges and
    S1 roughness, and a few dugouts and borrow pits holding the same turbid water as mining ponds.
    Settlements grow along
    laterite roads (thin lines, zero contours of two more noise fields); rivers of the two larger
    orders are open water, turbid where mining is active, with sand bars along the largest. Fallow
    and regrowth form scrub.

Mining (mask value 1)
    A mining potential adds a district activity field to stream proximity modulated by blob noise,
    so sites are irregular blobs strung along streams on valley floors. Mining pixels are bare tan
    soil, patches of regrowth and turbid ponds (brown water: red above green, low NIR), with mixed
    pixels at site edges. Over time the potential rises (most sites persist and spread along their
    streams, new sites open where a growth field is high) while a few old sites are abandoned and
    revegetate into scrub.

Signals and confusers
    Sentinel-2 L2A reflectance x 10000 is a linear mixture of endmember spectra, calibrated so the
    dataset's band statistics match the real January (dry season, hazy) composites, with texture,
    vegetation vigour, terrain shading, a per-year haze field and sensor noise. Sentinel-1 RTC
    backscatter (dB, speckle filtered) is mixed in linear power: bare soil is dark and rough,
    ponds and rivers dark, settlements bright. Per pixel, mining is genuinely ambiguous: a mining
    pit and a bare field are drawn from the same soil/regrowth/pond mixture in all 13 bands (S1
    included), mining ponds look like turbid rivers and dugouts, laterite roads, settlements and
    sand bars resemble bare soil, and the absolute elevation overlaps. What tells mining apart is
    context, as in real ASGM mapping: irregular blobs strung along streams on valley floors (low
    relative to the surrounding DEM), clustered turbid ponds, turbid rivers next to them, against
    small patchy fields on farmland uplands. The 20 m bands (red edge, B8A, SWIR, and S1) are
    constant over aligned 2 x 2 blocks, like 20 m pixels resampled to the 10 m grid.

The world model lives here; :mod:`smallmines.data.synth.patches` cuts the dataset from it and
:mod:`smallmines.data.synth.scenes` renders whole scenes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.transform import Affine, from_origin
from scipy.special import ndtri

from smallmines.bands import BAND_NAMES
from smallmines.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# Grid and georeference
# ---------------------------------------------------------------------------------------------

CRS = "EPSG:32630"
"""UTM zone 30N, the projection of the SmallMinesDS patches and of the scenes."""
GEOGRAPHIC_CRS = "EPSG:4326"
PIXEL_SIZE = 10.0
"""Metres per pixel of the world grid."""
WORLD_ORIGIN = (600_000.0, 700_000.0)
"""(x, y) of the top-left corner of world pixel (0, 0), in EPSG:32630."""
PATCH_SIZE = 128
TILE_PITCH = 160
"""Distance between candidate tile origins, in pixels: tiles of 128 with 320 m gaps."""
WORLD_TILES = 76
"""Candidate tiles per side of the world (the world is ``WORLD_TILES * TILE_PITCH`` pixels wide)."""
HALO = 2
"""Margin rendered around a window for the neighbourhood operations (a gradient of a gradient)."""

# ---------------------------------------------------------------------------------------------
# Noise fields: name -> (wavelengths in pixels, weights); each octave has its own random lattice
# ---------------------------------------------------------------------------------------------

FIELDS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "plateau": ((2500.0, 700.0), (50.0, 25.0)),  # metres: regional and local undulation
    "hills": ((160.0, 60.0), (1.0, 0.35)),
    "dem-noise": ((3.0,), (1.0,)),
    "district": ((1800.0, 600.0), (1.0, 0.5)),  # where mining is active
    "blobs": ((40.0, 14.0, 5.0), (0.8, 0.7, 0.5)),  # mining site shapes
    "growth": ((900.0,), (1.0,)),
    "cessation": ((60.0,), (1.0,)),
    "pond": ((7.0,), (0.8,)),
    "pond-year": ((7.0,), (0.6,)),
    "regrowth": ((10.0,), (1.0,)),
    "river-width": ((400.0,), (1.0,)),
    "sand": ((12.0,), (1.0,)),
    "settlement": ((40.0, 300.0, 12.0), (1.0, 0.6, 0.45)),
    "farm": ((320.0, 100.0, 35.0), (1.0, 0.6, 0.4)),
    "farm-growth": ((250.0,), (1.0,)),
    "fields": ((9.0, 3.5), (1.0, 0.5)),  # bare or cropped, redrawn every year
    "fallow": ((45.0, 15.0), (1.0, 0.4)),
    "texture": ((2.5,), (0.6,)),
    "vigour": ((25.0, 6.0), (0.8, 0.6)),
    "haze": ((1500.0, 350.0), (1.0, 0.4)),
    "s1-texture": ((1.8,), (1.0,)),
    "cloud": ((24.0, 8.0), (1.0, 0.4)),
}
STREAM_WAVELENGTHS = (240.0, 700.0, 2200.0)
"""Noise wavelength (pixels) whose zero contours are the streams of order 0, 1 and 2."""
ROAD_WAVELENGTHS = (450.0, 1400.0)
"""Noise wavelength (pixels) whose zero contours are the tracks and the main roads."""
LINE_DETAIL = {"stream": (2.7, 0.4), "road": (3.5, 0.3)}
"""Second octave of stream and road fields: wavelength divisor and weight (how lines wiggle)."""

# ---------------------------------------------------------------------------------------------
# Terrain and hydrography
# ---------------------------------------------------------------------------------------------

VALLEY_HALF_WIDTHS = np.array([22.0, 45.0, 110.0], dtype=np.float32)
"""Distance from a stream (pixels) at which its valley side has risen by 63 %."""
VALLEY_DEPTHS = np.array([14.0, 28.0, 50.0], dtype=np.float32)
"""Depth in metres of the valleys of each stream order below the surrounding plateau."""
PLATEAU_ELEVATION = 215.0
HILL_RELIEF = 14.0
"""Amplitude (m) of the hills between valleys."""
DEM_ROUGHNESS = 0.6
"""Amplitude (m) of the DEM's 30 m-scale noise."""
DEM_FLOOR = 35.0
RIVER_HALF_WIDTHS = (0.0, 0.9, 2.6)
"""Half width (pixels) of open water on streams of order 0 (under canopy: none), 1 and 2."""
RIVER_WIDTH_SPREAD = 0.3
SAND_BAR_WIDTH = 2.5
SAND_LEVEL = 0.3
ROAD_HALF_WIDTH = 0.6
SUN_AZIMUTH_DEG = 140.0
SUN_ELEVATION_DEG = 55.0
"""Sun position of a January morning Sentinel-2 overpass at 6 degrees north."""

# ---------------------------------------------------------------------------------------------
# Mining and land-cover dynamics (potentials are in units of unit-variance noise)
# ---------------------------------------------------------------------------------------------

BASE_YEAR = 2016
YEARS_PER_EPOCH = 6.0
"""Years from 2016 to 2022: the time axis ``tau`` is 0 in 2016 and 1 in 2022."""
MINING_THRESHOLD = 2.75
MINING_ACTIVITY_WEIGHT = 0.8
MINING_PROXIMITY_WEIGHT = 2.6
MINING_BLOB_WEIGHT = 1.4
PROXIMITY_SCALES = np.array([10.0, 18.0, 30.0], dtype=np.float32)
"""Distance (pixels) from streams of each order over which their attraction to mining fades."""
PROXIMITY_WEIGHTS = np.array([0.9, 1.0, 1.0], dtype=np.float32)
MINING_GROWTH = 0.4
"""Rise of the mining potential per tau where the growth field is 1."""
GROWTH_SPREAD = 0.6
"""Spatial variation of the growth field (mean 1): new sites open where it is high."""
CESSATION_LEVEL = 1.7
"""Old sites are abandoned where cessation noise x tau exceeds this."""
MINING_EDGE_SOFTNESS = 0.25
"""Potential range over which a pixel goes from background to pure mining (mixed edge pixels)."""
POND_LEVEL = 1.0
POND_STREAM_PULL = (1.5, 8.0)
"""Ponds gather at streams: added pond potential at a stream and its decay distance (pixels)."""
REGROWTH_LEVEL = 0.2
REGROWTH_MAX = 0.7
"""Scrub on older pits: the scrub fraction of mining soil is regrowth noise above the level."""
FARM_LEVEL = 0.55
FARM_EXPANSION = 0.25
FARM_FLOOR_AVOIDANCE = 1.2
BARE_FIELD_LEVEL = 0.45
BARE_FIELD_SOFTNESS = 0.5
"""Fields noise range over which a farm pixel goes from crop to bare soil (mixed edge pixels)."""
DUGOUT_LEVEL = 1.6
"""Pond potential (without the pull of streams) above which bare fields hold dugouts and pits."""
SETTLEMENT_LEVEL = 2.7
SETTLEMENT_EXPANSION = 0.15
SETTLEMENT_FLOOR_AVOIDANCE = 1.5
ROAD_PULL = (1.2, 25.0)
"""Settlements line roads: added settlement potential on a road and its decay distance (pixels)."""
SCRUB_LEVEL = 1.55
TURBIDITY = (0.25, 0.35, 0.15)
"""River turbidity (0-1): base, per unit of mining district activity, per tau."""

# ---------------------------------------------------------------------------------------------
# Radiometry: endmembers as (S2 blue ... swir2 reflectance x 10000, S1 VV dB, VH dB)
# ---------------------------------------------------------------------------------------------

ENDMEMBERS = ("forest", "farm", "bare", "settlement", "road", "water", "turbid", "sand", "scrub",
              "mine", "pond")
FOREST, FARM, BARE, SETTLEMENT, ROAD, WATER, TURBID, SAND, SCRUB, MINE, POND = range(11)
SPECTRA = np.array([
    # blue green  red   re1   re2   re3   nir   b8a swir1 swir2    vv     vh
    [1390, 1550, 1450, 1810, 3000, 3480, 3700, 3980, 2950, 1960, -7.0, -13.0],   # forest
    [1480, 1790, 1820, 2190, 2950, 3350, 3600, 3830, 3470, 2520, -8.5, -14.8],   # farm
    [1750, 2230, 2630, 2720, 2890, 3060, 3220, 3420, 3970, 3320, -10.5, -17.5],  # bare
    [1860, 2250, 2510, 2490, 2700, 2850, 3000, 3130, 3790, 3130, -3.0, -10.5],   # settlement
    [1810, 2250, 2720, 2740, 2850, 2950, 3050, 3180, 3990, 3330, -10.0, -17.5],  # road
    [1410, 1440, 1270, 1150, 1150, 1120, 1100, 1080, 1030, 1050, -21.0, -27.5],  # water
    [1610, 1950, 2140, 1880, 1750, 1650, 1600, 1580, 1340, 1250, -19.5, -26.5],  # turbid
    [1960, 2540, 2820, 2860, 2950, 3050, 3200, 3330, 4200, 3480, -15.0, -23.0],  # sand
    [1480, 1740, 1700, 2060, 2950, 3350, 3550, 3830, 3370, 2370, -7.8, -14.0],   # scrub
    [1750, 2230, 2630, 2720, 2890, 3060, 3220, 3420, 3970, 3320, -10.5, -17.5],  # mine
    [1610, 1950, 2140, 1880, 1750, 1650, 1600, 1580, 1340, 1250, -19.5, -26.5],  # pond
], dtype=np.float32)
"""Endmember values as delivered (January composites, haze included)."""
S2_COUNT = 10
TEXTURE_S2 = np.array([0.03, 0.06, 0.10, 0.12, 0.06, 0.03, 0.04, 0.06, 0.05, 0.10, 0.05],
                      dtype=np.float32)
"""Relative brightness texture of each endmember."""
TEXTURE_WHITE = 0.8
"""Weight of pixel noise (against the ``texture`` field) in the brightness texture."""
TEXTURE_S1_DB = np.array([0.7, 1.0, 2.5, 2.5, 1.0, 1.0, 1.0, 1.2, 0.9, 2.5, 1.2], dtype=np.float32)
"""Backscatter texture (dB) of each endmember: mining pits and spoil heaps are rough."""
VEGETATION = np.array([1.0, 0.8, 0.05, 0.1, 0.0, 0.0, 0.0, 0.0, 0.9, 0.05, 0.0], dtype=np.float32)
VIGOUR_SPECTRUM = np.array([-40, -30, -70, -20, 50, 65, 80, 80, -80, -70], dtype=np.float32)
"""S2 change per unit of vegetation vigour noise: denser canopy, darker visible, brighter NIR."""
PATH_RADIANCE = np.array([1100, 1100, 1000, 900, 700, 600, 550, 520, 400, 300], dtype=np.float32)
"""Haze part of the S2 values, not affected by terrain shading."""
HAZE_SPECTRUM = np.array([150, 125, 100, 85, 70, 60, 55, 50, 30, 15], dtype=np.float32)
"""S2 change per unit of the (per-year) haze field: Harmattan dust, strongest in the blue."""
HAZE_YEAR_SPREAD = 0.4
"""Standard deviation of the haze level of a whole year, in units of ``HAZE_SPECTRUM``."""
NOISE_RELATIVE = 0.012
NOISE_ABSOLUTE = 12.0
SPECKLE_DB = 0.9
S1_SLOPE_DB = 12.0
"""Residual of terrain flattening: dB per unit of eastward slope."""
S2_RANGE = (1.0, 20000.0)
BANDS_20M = (3, 4, 5, 7, 8, 9, 10, 11)
"""Bands held at 20 m (red edge 1-3, B8A, SWIR 1-2, VV, VH), as indices into ``BAND_NAMES``."""

SURVEY_STEP = 16
"""Pixel step of the coarse mining survey used to pick tiles and the scene location."""
SURVEY_YEARS = (2016, 2022)
# ---------------------------------------------------------------------------------------------
# Deterministic noise
# ---------------------------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_COL_KEY = 0xC2B2AE3D27D4EB4F
_GAUSS = ndtri((np.arange(1 << 16) + 0.5) / (1 << 16)).astype(np.float32)
"""Standard normal quantiles of the 65536 values of 16 random bits."""
_BSPLINE_STD = 151.0 / 315.0
"""Standard deviation of unit normal lattice values after 2-D cubic B-spline interpolation
(the mean squared weight is 151/315 along each axis)."""


def _mix(value: int) -> int:
    """Scramble a Python integer into 64 random-looking bits (the SplitMix64 finaliser)."""
    value = (value + _GOLDEN) & _MASK64
    value = ((value ^ (value >> 30)) * _MIX1) & _MASK64
    value = ((value ^ (value >> 27)) * _MIX2) & _MASK64
    return value ^ (value >> 31)


def _salt(seed: int, name: str, *numbers: int) -> int:
    """Derive the 64-bit key of one field of the world from the seed, a name and numbers."""
    value = _mix(seed & _MASK64)
    for char in name.encode():
        value = _mix(value ^ char)
    for number in numbers:
        value = _mix(value ^ (number & _MASK64))
    return value


def _hash(salt: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Hash integer (row, col) pairs (broadcast) into 64 random bits each."""
    row_bits = rows.astype(np.uint64) * np.uint64(_GOLDEN)
    bits = row_bits ^ cols.astype(np.uint64) * np.uint64(_COL_KEY) ^ np.uint64(salt)
    bits ^= bits >> np.uint64(30)
    bits *= np.uint64(_MIX1)
    bits ^= bits >> np.uint64(27)
    bits *= np.uint64(_MIX2)
    bits ^= bits >> np.uint64(31)
    return bits


def _normals(bits: np.ndarray, part: int) -> np.ndarray:
    """Turn the 16-bit ``part`` (0-3) of hashed bits into standard normal float32 values."""
    return _GAUSS[((bits >> np.uint64(16 * part)) & np.uint64(0xFFFF)).astype(np.intp)]


@dataclass(frozen=True)
class _Grid:
    """A window of world pixels: ``height x width`` samples, ``step`` apart, from (row0, col0)."""

    row0: int
    col0: int
    height: int
    width: int
    step: int = 1

    @property
    def rows(self) -> np.ndarray:
        return self.row0 + self.step * np.arange(self.height, dtype=np.float64)

    @property
    def cols(self) -> np.ndarray:
        return self.col0 + self.step * np.arange(self.width, dtype=np.float64)

    def padded(self) -> _Grid:
        """Grow the window by ``HALO`` and align it to even pixels (whole 20 m pixels)."""
        row0, col0 = (self.row0 - HALO) // 2 * 2, (self.col0 - HALO) // 2 * 2
        row1 = -(-(self.row0 + self.height + HALO) // 2) * 2
        col1 = -(-(self.col0 + self.width + HALO) // 2) * 2
        return _Grid(row0, col0, row1 - row0, col1 - col0)

    def inner(self, outer: _Grid) -> tuple[slice, slice]:
        """Slices that cut this window out of arrays rendered on ``outer``."""
        top, left = self.row0 - outer.row0, self.col0 - outer.col0
        return slice(top, top + self.height), slice(left, left + self.width)


def _bspline(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cubic B-spline interpolation of increasing lattice coordinates ``(n,)``.

    Returns:
        The weights ``(4, n)``, the lattice indices that carry them ``(m,)`` (only those needed, so
        a sparse sample of a fine lattice stays cheap) and, per weight, the position of its lattice
        index in that list ``(4, n)``.
    """
    cell = np.floor(coords)
    t = (coords - cell).astype(np.float32)
    t2, t3 = t * t, t * t * t
    weights = np.stack([(1 - t) ** 3, 3 * t3 - 6 * t2 + 4, -3 * t3 + 3 * t2 + 3 * t + 1, t3])
    weights /= np.float32(6)
    needed = cell.astype(np.int64)[None, :] + np.arange(-1, 3)[:, None]
    first, last = needed[0, 0], needed[-1, -1]
    if last - first < needed.size:  # dense: every lattice index in the span is used
        return weights, np.arange(first, last + 1), needed - first
    lattice, position = np.unique(needed, return_inverse=True)
    return weights, lattice, position.reshape(needed.shape)


def _noise(grid: _Grid, salt: int, wavelength: float) -> np.ndarray:
    """Smooth unit-variance noise with features about ``wavelength`` pixels apart (float32).

    Every output pixel is a fixed sequence of elementwise operations on its own coordinates and
    lattice values (no reductions, no BLAS), so it is bit-identical in any window.
    """
    row_w, lattice_rows, row_at = _bspline(grid.rows / wavelength)
    col_w, lattice_cols, col_at = _bspline(grid.cols / wavelength)
    lattice = _normals(_hash(salt, lattice_rows[:, None], lattice_cols[None, :]), 0)
    along_rows = sum(row_w[k][:, None] * lattice[row_at[k]] for k in range(4))
    field = sum(along_rows[:, col_at[k]] * col_w[k] for k in range(4))
    return field * np.float32(1.0 / _BSPLINE_STD)


def _octaves(grid: _Grid, seed: int, name: str, wavelengths: Sequence[float],
             weights: Sequence[float], *numbers: int) -> np.ndarray:
    """Sum weighted :func:`_noise` octaves, each keyed by the name, its index and ``numbers``."""
    return sum(np.float32(w) * _noise(grid, _salt(seed, name, i, *numbers), wl)
               for i, (wl, w) in enumerate(zip(wavelengths, weights, strict=True)))


def _field(grid: _Grid, seed: int, name: str, *numbers: int) -> np.ndarray:
    """Render the noise field ``FIELDS[name]``; ``numbers`` (e.g. a year) give independent draws."""
    return _octaves(grid, seed, name, *FIELDS[name], *numbers)


def _white(grid: _Grid, salt: int, count: int) -> np.ndarray:
    """Draw ``count`` planes of independent standard normal pixel noise, ``(count, h, w)``."""
    rows = grid.rows.astype(np.int64)[:, None]
    cols = grid.cols.astype(np.int64)[None, :]
    planes = []
    for block in range(-(-count // 4)):
        bits = _hash(_mix(salt ^ block), rows, cols)
        planes += [_normals(bits, part) for part in range(4)]
    return np.stack(planes[:count])


def _line_distance(grid: _Grid, seed: int, kind: str, wavelength: float,
                   *numbers: int) -> np.ndarray:
    """Distance in pixels to the zero contour of a noise field, ``|f| / |grad f|``."""
    divisor, weight = LINE_DETAIL[kind]
    field = _octaves(grid, seed, kind, (wavelength, wavelength / divisor), (1.0, weight), *numbers)
    grad_r, grad_c = np.gradient(field, float(grid.step))
    slope = np.sqrt(grad_r * grad_r + grad_c * grad_c)
    return np.abs(field) / np.maximum(slope, np.float32(1e-6))


# ---------------------------------------------------------------------------------------------
# The world model
# ---------------------------------------------------------------------------------------------


@dataclass
class _Terrain:
    """Year-independent terrain: DEM (m), distance to streams by order (pixels), valley floors."""

    dem: np.ndarray
    streams: np.ndarray
    floor: np.ndarray


@dataclass
class _Mining:
    """Year-independent parts of the mining potential."""

    base: np.ndarray
    growth: np.ndarray
    cessation: np.ndarray
    activity: np.ndarray


@dataclass
class _Ground:
    """Everything that does not change between years, on a padded grid."""

    grid: _Grid
    terrain: _Terrain
    mining: _Mining
    river: np.ndarray
    sand: np.ndarray
    road: np.ndarray
    settlement: np.ndarray
    farm: np.ndarray
    farm_growth: np.ndarray
    fallow: np.ndarray
    shade: np.ndarray
    east_slope: np.ndarray


def _streams(grid: _Grid, seed: int) -> np.ndarray:
    """Distance in pixels to the nearest stream of each order, ``(3, h, w)``."""
    return np.stack([_line_distance(grid, seed, "stream", wavelength, order)
                     for order, wavelength in enumerate(STREAM_WAVELENGTHS)])


def _terrain(grid: _Grid, seed: int) -> _Terrain:
    """Carve valleys along three stream orders into a rolling plateau."""
    streams = _streams(grid, seed)
    rise = 1 - np.exp(-((streams / VALLEY_HALF_WIDTHS[:, None, None]) ** 2))
    plateau = PLATEAU_ELEVATION + _field(grid, seed, "plateau")
    hills = HILL_RELIEF * _field(grid, seed, "hills") * rise.prod(axis=0)
    valleys = sum(depth * (r - 1) for depth, r in zip(VALLEY_DEPTHS, rise, strict=True))
    roughness = DEM_ROUGHNESS * _field(grid, seed, "dem-noise")
    dem = np.maximum(plateau + valleys + hills + roughness, np.float32(DEM_FLOOR))
    return _Terrain(dem.astype(np.float32), streams, 1 - rise.min(axis=0))


def _mining_fields(grid: _Grid, seed: int, streams: np.ndarray) -> _Mining:
    """Combine district activity, stream proximity and blobs; add growth and cessation fields."""
    activity = _field(grid, seed, "district")
    attraction = np.exp(-streams / PROXIMITY_SCALES[:, None, None])
    proximity = (PROXIMITY_WEIGHTS[:, None, None] * attraction).max(axis=0)
    blobs = _field(grid, seed, "blobs")
    base = (MINING_ACTIVITY_WEIGHT * activity
            + proximity * (MINING_PROXIMITY_WEIGHT + MINING_BLOB_WEIGHT * blobs))
    growth = np.maximum(1 + GROWTH_SPREAD * _field(grid, seed, "growth"), 0)
    return _Mining(base, growth, _field(grid, seed, "cessation"), activity)


def _tau(year: int) -> float:
    return (year - BASE_YEAR) / YEARS_PER_EPOCH


def _mining_potential(mining: _Mining, year: int) -> tuple[np.ndarray, np.ndarray]:
    """Mining potential in ``year`` (mining above ``MINING_THRESHOLD``) and abandoned old sites."""
    tau = _tau(year)
    potential = mining.base + np.float32(MINING_GROWTH * tau) * mining.growth
    ceased = mining.cessation * np.float32(max(tau, 0.0)) > CESSATION_LEVEL
    return potential, (mining.base > MINING_THRESHOLD) & ceased


def _shading(grid: _Grid, dem: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Terrain illumination factor for the sun (1 on flat ground) and the eastward slope."""
    grad_r, grad_c = np.gradient(dem, PIXEL_SIZE * grid.step)
    east, north = grad_c, -grad_r
    azimuth, elevation = math.radians(SUN_AZIMUTH_DEG), math.radians(SUN_ELEVATION_DEG)
    sun_east = math.sin(azimuth) * math.cos(elevation)
    sun_north = math.cos(azimuth) * math.cos(elevation)
    sun_up = math.sin(elevation)
    normal = np.sqrt(1 + east * east + north * north)
    cos_incidence = (sun_up - east * sun_east - north * sun_north) / normal
    return (cos_incidence / sun_up).astype(np.float32), east.astype(np.float32)


def _ground(grid: _Grid, seed: int) -> _Ground:
    """Render every year-independent field of the world on ``grid``."""
    terrain = _terrain(grid, seed)
    streams = terrain.streams
    width = RIVER_HALF_WIDTHS[2] * (1 + RIVER_WIDTH_SPREAD * _field(grid, seed, "river-width"))
    river = (streams[2] < width) | (streams[1] < RIVER_HALF_WIDTHS[1])
    bank = ~river & (streams[2] < width + SAND_BAR_WIDTH)
    sand = bank & (_field(grid, seed, "sand") > SAND_LEVEL)
    road_distance = np.minimum.reduce([_line_distance(grid, seed, "road", wl, i)
                                       for i, wl in enumerate(ROAD_WAVELENGTHS)])
    pull, reach = ROAD_PULL
    settlement = (_field(grid, seed, "settlement") + pull * np.exp(-road_distance / reach)
                  - SETTLEMENT_FLOOR_AVOIDANCE * terrain.floor)
    farm = _field(grid, seed, "farm") - FARM_FLOOR_AVOIDANCE * terrain.floor
    farm_growth = np.maximum(_field(grid, seed, "farm-growth"), 0)
    shade, east_slope = _shading(grid, terrain.dem)
    return _Ground(grid, terrain, _mining_fields(grid, seed, streams), river, sand,
                   road_distance < ROAD_HALF_WIDTH, settlement, farm, farm_growth,
                   _field(grid, seed, "fallow"), shade, east_slope)


@dataclass
class _Cover:
    """Land cover of one year: a class per pixel (an index into ``ENDMEMBERS``) and mixtures."""

    kind: np.ndarray
    turbidity: np.ndarray
    dug: np.ndarray
    """Fraction of dug or bare soil: mining sites and bare fields alike (only the mask differs)."""
    pond: np.ndarray
    regrowth: np.ndarray
    mask: np.ndarray

    def mix(self, values: np.ndarray) -> np.ndarray:
        """Mix per-endmember ``values`` ``(E,)`` or ``(B, E)`` into ``(h, w)`` or ``(B, h, w)``.

        Water blends clear and turbid water; dug fractions (mining and bare fields alike) blend
        bare soil (with some regrowth) and ponds over the background class. Gathers and
        elementwise arithmetic (no BLAS) keep every pixel bit-identical in any window.
        """
        at = values[..., None, None]
        base = np.take(values, self.kind, axis=-1)
        water = at[..., WATER, :, :] * (1 - self.turbidity) + at[..., TURBID, :, :] * self.turbidity
        base = np.where(self.kind == WATER, water, base)
        soil = at[..., MINE, :, :] * (1 - self.regrowth) + at[..., SCRUB, :, :] * self.regrowth
        mined = soil * (1 - self.pond) + at[..., POND, :, :] * self.pond
        return base * (1 - self.dug) + mined * self.dug


def _cover(ground: _Ground, seed: int, year: int) -> _Cover:
    """Land cover and the mining mask of ``year``."""
    grid, tau = ground.grid, _tau(year)
    potential, abandoned = _mining_potential(ground.mining, year)
    settled = ground.settlement > SETTLEMENT_LEVEL - SETTLEMENT_EXPANSION * tau
    expansion = np.float32(FARM_EXPANSION * max(tau, 0.0)) * ground.farm_growth
    farm = ground.farm + expansion > FARM_LEVEL
    kind = np.full((grid.height, grid.width), FOREST, dtype=np.intp)
    kind[(ground.fallow > SCRUB_LEVEL) | abandoned] = SCRUB
    kind[farm] = FARM
    kind[ground.sand] = SAND
    kind[settled] = SETTLEMENT
    kind[ground.road] = ROAD
    kind[ground.river] = WATER
    base, per_activity, per_tau = TURBIDITY
    turbidity = np.clip(base + per_activity * ground.mining.activity + per_tau * tau, 0, 1)
    active = ~(ground.river | ground.road | settled | abandoned)
    edge = np.clip((potential - MINING_THRESHOLD) / MINING_EDGE_SOFTNESS + 0.5, 0, 1)
    mine = np.where(active, edge, 0).astype(np.float32)
    # bare fields: the same soil, stubble and dugouts as mining, on farmland away from the floors
    fields = (_field(grid, seed, "fields", year) - BARE_FIELD_LEVEL) / BARE_FIELD_SOFTNESS + 0.5
    bare = np.where(farm & (kind == FARM), np.clip(fields, 0, 1), 0).astype(np.float32)
    pull, reach = POND_STREAM_PULL
    ponds = _field(grid, seed, "pond") + _field(grid, seed, "pond-year", year)
    mining_ponds = ponds + pull * np.exp(-ground.terrain.streams.min(axis=0) / reach) - POND_LEVEL
    pond = np.where(mine >= bare, mining_ponds, ponds - DUGOUT_LEVEL)
    regrowth = np.clip(_field(grid, seed, "regrowth", year) - REGROWTH_LEVEL, 0, REGROWTH_MAX)
    mask = (active & (potential > MINING_THRESHOLD)).astype(np.uint8)
    return _Cover(kind, turbidity, np.maximum(mine, bare), np.clip(pond, 0, 1), regrowth, mask)


def _sentinel2(ground: _Ground, cover: _Cover, seed: int, year: int,
               noise: np.ndarray) -> np.ndarray:
    """Sentinel-2 L2A reflectance x 10000, ``(10, h, w)``."""
    grid = ground.grid
    values = cover.mix(SPECTRA[:, :S2_COUNT].T)
    texture = _field(grid, seed, "texture", year) + TEXTURE_WHITE * noise[0]
    values *= 1 + cover.mix(TEXTURE_S2) * texture
    values += cover.mix(VEGETATION) * _field(grid, seed, "vigour") * VIGOUR_SPECTRUM[:, None, None]
    path = PATH_RADIANCE[:, None, None]
    values = path + (values - path) * ground.shade
    level = HAZE_YEAR_SPREAD * _normals(np.uint64(_salt(seed, "haze-level", year)), 0)
    values += HAZE_SPECTRUM[:, None, None] * (_field(grid, seed, "haze", year) + level)
    values += noise[1:1 + S2_COUNT] * (NOISE_RELATIVE * values + NOISE_ABSOLUTE)
    return np.clip(np.rint(values), *S2_RANGE)


def _sentinel1(ground: _Ground, cover: _Cover, seed: int, year: int,
               noise: np.ndarray) -> np.ndarray:
    """Sentinel-1 RTC backscatter in dB, ``(2, h, w)``: endmembers mixed in linear power."""
    power = cover.mix((10 ** (SPECTRA[:, S2_COUNT:] / 10)).T)
    roughness = cover.mix(TEXTURE_S1_DB) * _field(ground.grid, seed, "s1-texture", year)
    return (10 * np.log10(power) + roughness + S1_SLOPE_DB * ground.east_slope
            + SPECKLE_DB * noise[1 + S2_COUNT:])


def _to_20m(image: np.ndarray) -> None:
    """Average the 20 m bands over aligned 2 x 2 blocks, in place (grids start on even pixels)."""
    bands = image[list(BANDS_20M)]
    blocks = (bands[:, ::2, ::2] + bands[:, 1::2, ::2] + bands[:, ::2, 1::2] + bands[:, 1::2, 1::2])
    blocks *= 0.25
    image[list(BANDS_20M)] = np.repeat(np.repeat(blocks, 2, axis=1), 2, axis=2)


def _image(ground: _Ground, seed: int, year: int) -> tuple[np.ndarray, np.ndarray]:
    """Render the 13-band image and the mining mask of ``year`` on the ground's (padded) grid."""
    cover = _cover(ground, seed, year)
    noise = _white(ground.grid, _salt(seed, "pixel-noise", year), 1 + S2_COUNT + 2)
    image = np.empty((len(BAND_NAMES), *cover.mask.shape), dtype=np.float32)
    image[:S2_COUNT] = _sentinel2(ground, cover, seed, year, noise)
    image[S2_COUNT:S2_COUNT + 2] = _sentinel1(ground, cover, seed, year, noise)
    image[S2_COUNT + 2] = ground.terrain.dem
    _to_20m(image)
    return image, cover.mask


def _render_years(grid: _Grid, seed: int,
                  years: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Render image and mask of every year on ``grid`` (the ground is rendered once)."""
    outer = grid.padded()
    ground = _ground(outer, seed)
    rows, cols = grid.inner(outer)
    out = {}
    for year in years:
        image, mask = _image(ground, seed, year)
        out[year] = (image[:, rows, cols].copy(), mask[rows, cols].copy())
    return out


def render(region_row: int, region_col: int, height: int, width: int, year: int,
           seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Render a window of the synthetic world in memory.

    The same arguments always give the same arrays, and a window cut from a larger render equals
    the render of that window, so dataset patches, scene blocks and this function agree pixel for
    pixel. Use :func:`region_transform` to georeference the result.

    Args:
        region_row: top row of the window in world pixels (10 m, rows grow southwards).
        region_col: left column of the window in world pixels (columns grow eastwards).
        height: rows of the window.
        width: columns of the window.
        year: the year to render (2016 and 2022 are the dataset's years; others interpolate).
        seed: the world's seed.

    Returns:
        ``(image, mask)``: float32 ``(13, height, width)`` in ``BAND_NAMES`` order (no nodata) and
        uint8 ``(height, width)`` with 1 for mining and 0 elsewhere.

    Raises:
        ConfigError: for an empty window.
    """
    if height <= 0 or width <= 0:
        raise ConfigError(f"window of {height} x {width} pixels; both sides must be positive")
    return _render_years(_Grid(region_row, region_col, height, width), seed, (year,))[year]


def region_transform(region_row: int, region_col: int, resolution: float = PIXEL_SIZE) -> Affine:
    """Affine transform (EPSG:32630) of a raster whose top-left corner is world pixel (row, col)."""
    x = WORLD_ORIGIN[0] + region_col * PIXEL_SIZE
    y = WORLD_ORIGIN[1] - region_row * PIXEL_SIZE
    return from_origin(x, y, resolution, resolution)


def _survey(seed: int) -> np.ndarray:
    """Map mining in each of ``SURVEY_YEARS`` every ``SURVEY_STEP`` pixels over the whole world."""
    side = WORLD_TILES * TILE_PITCH // SURVEY_STEP
    grid = _Grid(0, 0, side, side, SURVEY_STEP)
    mining = _mining_fields(grid, seed, _streams(grid, seed))
    found = []
    for year in SURVEY_YEARS:
        potential, abandoned = _mining_potential(mining, year)
        found.append((potential > MINING_THRESHOLD) & ~abandoned)
    return np.stack(found)


# ---------------------------------------------------------------------------------------------
