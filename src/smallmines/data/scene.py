"""Scene input: which file holds which band, alignment onto one 10 m grid, scale and area of interest.

A *scene* is the 13 SmallMinesDS bands over one pixel grid, assembled from any of:

- one stacked GeoTIFF or VRT in the published band order (or any order its band descriptions or
  ``band_order`` name), or a list of such tiles (a mosaic; where tiles overlap the first one wins);
- separate rasters per sensor (``s2``, ``s1``, ``dem``), each at its own resolution and CRS, and
  each possibly a list of tiles.

Bands are identified by band descriptions (``blue``, ``B2``, ``B8A``...), else by the band count
of the file's kind (S2: 10 = all, 4 = the 10 m bands, 6 = the 20 m bands; S1: 2 = VV, VH; DEM: 1).
The grid is that of the finest-resolution stacked or S2 file(s). A file already on the grid is read
directly by window; any other is warped onto it on the fly with a GDAL ``WarpedVRT`` (bilinear
for reflectance and backscatter, cubic for elevation, average when the source is finer than the
grid), so the whole scene is never held in memory.

:class:`Scene` is plain picklable data (paths, grid, band map), so Dask workers open their own
:class:`SceneReader`. The input guards that compare a scene with the training statistics are in
:mod:`smallmines.mapping.guards`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from smallmines.bands import BAND_NAMES, BANDS, GROUPS, IMAGE_NODATA, INDICES, parse_bands
from smallmines.data.windows import Span
from smallmines.errors import BandError, ConfigError, CorruptFileError

logger = logging.getLogger(__name__)

KINDS = ("stacked", "s2", "s1", "dem")
SENSOR = {b.name: b.sensor for b in BANDS}
DEFAULT_BANDS: dict[tuple[str, int], tuple[str, ...]] = {
    ("stacked", 13): BAND_NAMES,
    ("s2", 10): GROUPS["s2"],
    ("s2", 4): ("blue", "green", "red", "nir"),
    ("s2", 6): ("rededge1", "rededge2", "rededge3", "rededge4", "swir1", "swir2"),
    ("s1", 2): ("vv", "vh"),
    ("dem", 1): ("dem",),
}
"""Bands of a file without band descriptions, by kind and band count."""
RESAMPLING = {"s2": Resampling.bilinear, "s1": Resampling.bilinear, "dem": Resampling.cubic}
"""Resampling onto a finer or equal grid per sensor (cubic would overshoot reflectances)."""
DOWNSAMPLING = Resampling.average
"""Resampling when the source is finer than the grid by more than 1.5x."""
SKIP = ("-", "none")
"""Names that mark a file band to ignore in ``--band-order``."""


# ----------------------------------------------------------------------------------------------
# Grid and sources
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """A pixel grid: CRS (WKT), affine transform and size."""

    crs: str
    transform: Affine
    width: int
    height: int

    @property
    def res(self) -> float:
        """Pixel width in CRS units."""
        return abs(self.transform.a)

    def sub(self, rows: Span, cols: Span) -> Grid:
        """Return the grid of a sub-region (same CRS and pixels, shifted origin)."""
        return Grid(self.crs, self.transform * Affine.translation(cols.start, rows.start), cols.size, rows.size)

    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in CRS units."""
        left, top = self.transform * (0, 0)
        right, bottom = self.transform * (self.width, self.height)
        return min(left, right), min(bottom, top), max(left, right), max(bottom, top)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (EPSG code when there is one)."""
        crs = CRS.from_wkt(self.crs)
        return {"crs": crs.to_string(), "transform": list(self.transform)[:6], "width": self.width,
                "height": self.height, "resolution": self.res}


@dataclass(frozen=True)
class Source:
    """One input file and how it is read onto the scene grid.

    Attributes:
        path: the file.
        kind: ``stacked``, ``s2``, ``s1`` or ``dem``.
        bands: band name of each file band (None for a band smallmines does not use).
        res: pixel size in grid CRS units.
        offset: ``(row, col)`` of the file's first pixel on the grid when it is pixel-aligned with
            the grid (read directly), else None (warped).
        resampling: name of the GDAL resampling used when warped.
        nodata: the file's nodata value (None when it declares none).

    """

    path: str
    kind: str
    bands: tuple[str | None, ...]
    res: float
    offset: tuple[int, int] | None
    resampling: str
    nodata: float | None


@dataclass(frozen=True)
class Scene:
    """The bands of a scene on one grid, as plain picklable data; open with :meth:`open`.

    Attributes:
        grid: the output grid (the finest stacked or S2 grid).
        sources: input files.
        band_sources: for each available band, ``(source index, 1-based band index)`` of every file
            holding it at the finest resolution; the first valid value wins.
        scale: factor each band is multiplied by after reading (``--scale``).

    """

    grid: Grid
    sources: tuple[Source, ...]
    band_sources: Mapping[str, tuple[tuple[int, int], ...]]
    scale: Mapping[str, float] = field(default_factory=dict)

    @property
    def bands(self) -> tuple[str, ...]:
        """Available bands, in published order."""
        return tuple(b for b in BAND_NAMES if b in self.band_sources)

    @property
    def file_bands(self) -> tuple[str | None, ...] | None:
        """The band of each file band when the scene is stacked file(s) of one layout, else None."""
        layouts = {s.bands for s in self.sources}
        if len(layouts) == 1 and all(s.kind == "stacked" for s in self.sources):
            return layouts.pop()
        return None

    def require(self, bands: Iterable[str]) -> None:
        """Raise BandError naming every required band the scene lacks and where it would come from."""
        missing = [b for b in bands if b not in self.band_sources]
        if missing:
            files = ", ".join(f"{Path(s.path).name} ({s.kind}: {', '.join(b or '?' for b in s.bands)})"
                              for s in self.sources)
            where = sorted({"--s1" if SENSOR[b] == "s1" else "--dem" if SENSOR[b] == "dem" else "--s2"
                            for b in missing})
            raise BandError(f"the model needs band(s) {', '.join(missing)}, which the scene lacks; it has "
                            f"{', '.join(self.bands) or 'none'} from {files}. Add the band(s) "
                            f"(e.g. {' / '.join(where)}), or name a file's bands with band descriptions "
                            "or --band-order")

    def with_scale(self, scale: Mapping[str, float]) -> Scene:
        """Return the same scene with per-band scale factors."""
        return Scene(self.grid, self.sources, self.band_sources, dict(scale))

    def on_grid(self, grid: Grid) -> Scene:
        """Return the same inputs read onto another grid (e.g. the tile grid of an earlier build).

        A file that lies on the new grid's lattice is read directly, any other is warped, exactly as
        :func:`open_scene` decides for the scene's own grid.
        """
        crs = CRS.from_wkt(grid.crs)
        sources = []
        for source in self.sources:
            with _open(source.path) as src:
                header = _Header(source.path, source.kind, source.bands, src.crs, src.transform, src.width,
                                 src.height, src.nodata)
            res = _resolution_in(header, crs)
            sources.append(replace(source, res=res, offset=_offset_on(header, grid),
                                   resampling=_resampling(source.bands, res, grid.res).name))
        return Scene(grid, tuple(sources), self.band_sources, self.scale)

    def open(self) -> SceneReader:
        """Open a reader (one per thread or process: rasterio datasets are not thread-safe)."""
        return SceneReader(self)

    def describe(self) -> dict[str, Any]:
        """JSON-safe description for the run summary."""
        return {"grid": self.grid.to_dict(), "bands": list(self.bands), "scale": dict(self.scale),
                "sources": [{**asdict(s), "bands": list(s.bands), "warped": s.offset is None} for s in self.sources]}


def _canonical(name: str | None) -> str | None:
    if not name:
        return None
    try:
        (canonical,) = parse_bands(name.strip())
    except (BandError, ValueError):
        return None
    return canonical if canonical in BAND_NAMES else None


def identify_bands(path: str, kind: str, count: int, descriptions: Sequence[str | None],
                   band_order: Sequence[str] | None = None) -> tuple[str | None, ...]:
    """Name the bands of one file.

    Args:
        path: the file (for messages).
        kind: ``stacked``, ``s2``, ``s1`` or ``dem``.
        count: number of bands in the file.
        descriptions: the file's band descriptions.
        band_order: explicit names for the file's bands, in order (overrides everything); ``-``
            marks a band to ignore.

    Returns:
        A band name (or None for a band smallmines does not use) per file band.

    Raises:
        BandError: wrong number of names, duplicates, or a file whose bands cannot be told.

    """
    if band_order is not None:
        names = tuple(None if n.strip() in SKIP else _canonical(n) for n in band_order)
        unknown = [n for n, c in zip(band_order, names, strict=True) if c is None and n.strip() not in SKIP]
        if unknown:
            raise BandError(f"--band-order names {unknown} are not SmallMinesDS bands ({', '.join(BAND_NAMES)}; "
                            "'-' marks a band to ignore)")
        if len(names) != count:
            raise BandError(f"{path}: --band-order names {len(names)} bands but the file has {count}")
    elif any(_canonical(d) for d in descriptions):
        names = tuple(_canonical(d) for d in descriptions)
        ignored = [d for d, n in zip(descriptions, names, strict=True) if n is None]
        if ignored:
            logger.debug("%s: ignoring bands described %s", path, ignored)
    elif (kind, count) in DEFAULT_BANDS:
        names = DEFAULT_BANDS[kind, count]
    else:
        known = "; ".join(f"{n} bands = {', '.join(b)}" for (k, n), b in DEFAULT_BANDS.items() if k == kind)
        raise BandError(f"{path}: cannot tell which bands this {kind} file holds ({count} bands, no band "
                        f"descriptions naming bands); expected {known}. Set band descriptions "
                        "(blue, green, ... or B2, B3, ...) or pass --band-order for a stacked file")
    seen = [n for n in names if n]
    duplicates = sorted({n for n in seen if seen.count(n) > 1})
    if duplicates:
        raise BandError(f"{path}: band(s) {', '.join(duplicates)} appear more than once ({list(names)})")
    return names


def _open(path: str | Path) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except RasterioError as exc:
        raise CorruptFileError(path, f"cannot be opened as a raster ({exc})") from exc


@dataclass(frozen=True)
class _Header:
    path: str
    kind: str
    bands: tuple[str | None, ...]
    crs: CRS
    transform: Affine
    width: int
    height: int
    nodata: float | None


def _header(path: str | Path, kind: str, band_order: Sequence[str] | None) -> _Header:
    with _open(path) as src:
        if src.crs is None:
            raise CorruptFileError(path, "has no CRS; smallmines needs georeferenced rasters")
        if src.transform.b or src.transform.d:
            raise CorruptFileError(path, "has a rotated geotransform; warp it to a north-up grid first")
        bands = identify_bands(str(path), kind, src.count, src.descriptions, band_order)
        return _Header(str(path), kind, bands, src.crs, src.transform, src.width, src.height, src.nodata)


def _resolution_in(header: _Header, crs: CRS) -> float:
    if header.crs == crs:
        return abs(header.transform.a)
    left, top = header.transform * (0, 0)
    right, bottom = header.transform * (header.width, header.height)
    l2, b2, r2, t2 = transform_bounds(header.crs, crs, min(left, right), min(top, bottom),
                                      max(left, right), max(top, bottom))
    return math.sqrt((r2 - l2) * (t2 - b2) / (header.width * header.height))


def _union_grid(headers: Sequence[_Header]) -> Grid:
    """Extend the grid of the first header to cover all of them (same CRS and pixel lattice)."""
    first = headers[0]
    t = first.transform
    lefts, bottoms, rights, tops = [], [], [], []
    for h in headers:
        left, top = h.transform * (0, 0)
        right, bottom = h.transform * (h.width, h.height)
        box = (min(left, right), min(top, bottom), max(left, right), max(top, bottom))
        if h.crs != first.crs:
            box = transform_bounds(h.crs, first.crs, *box)
        lefts.append(box[0])
        bottoms.append(box[1])
        rights.append(box[2])
        tops.append(box[3])
    col0 = math.floor((min(lefts) - t.c) / t.a + 1e-6)
    col1 = math.ceil((max(rights) - t.c) / t.a - 1e-6)
    row0 = math.floor((max(tops) - t.f) / t.e + 1e-6)
    row1 = math.ceil((min(bottoms) - t.f) / t.e - 1e-6)
    transform = t * Affine.translation(col0, row0)
    return Grid(first.crs.to_wkt(), transform, col1 - col0, row1 - row0)


def _offset_on(header: _Header, grid: Grid) -> tuple[int, int] | None:
    """Pixel offset of a file on the grid when it shares its CRS, pixel size and lattice, else None."""
    g, t = grid.transform, header.transform
    if header.crs != CRS.from_wkt(grid.crs) or not (math.isclose(t.a, g.a, rel_tol=1e-6)
                                                    and math.isclose(t.e, g.e, rel_tol=1e-6)):
        return None
    col, row = (t.c - g.c) / g.a, (t.f - g.f) / g.e
    if abs(col - round(col)) > 1e-3 or abs(row - round(row)) > 1e-3:
        return None
    return round(row), round(col)


def _resampling(bands: Sequence[str | None], res: float, grid_res: float) -> Resampling:
    if res * 1.5 < grid_res:
        return DOWNSAMPLING
    sensors = {SENSOR[b] for b in bands if b}
    return RESAMPLING[sensors.pop()] if len(sensors) == 1 else Resampling.bilinear


def _as_list(paths: str | Path | Sequence[str | Path] | None) -> list[str]:
    if paths is None:
        return []
    if isinstance(paths, str | Path):
        return [str(paths)]
    return [str(p) for p in paths]


def open_scene(stacked: str | Path | Sequence[str | Path] | None = None,
               s2: str | Path | Sequence[str | Path] | None = None,
               s1: str | Path | Sequence[str | Path] | None = None,
               dem: str | Path | Sequence[str | Path] | None = None,
               band_order: str | Sequence[str] | None = None) -> Scene:
    """Inspect the input files (headers only) and build the scene.

    Args:
        stacked: one stacked raster (GeoTIFF or VRT) or a list of tiles.
        s2: Sentinel-2 raster(s): e.g. a 10 m file and a 20 m file, or tiles of either.
        s1: Sentinel-1 raster(s) (VV, VH in dB).
        dem: elevation raster(s) in metres.
        band_order: names of the stacked file's bands in order (comma-separated or a list, ``-`` for
            a band to ignore), for a file whose order differs from the published one or that has
            fewer or more bands.

    Raises:
        ConfigError: no input, or stacked and separate inputs mixed.
        BandError: a file's bands cannot be told.
        CorruptFileError: a file cannot be opened or is not georeferenced.

    """
    inputs = {"stacked": _as_list(stacked), "s2": _as_list(s2), "s1": _as_list(s1), "dem": _as_list(dem)}
    if not any(inputs.values()):
        raise ConfigError("no scene given: pass a stacked raster, or --s2 (and --s1, --dem) rasters")
    if inputs["stacked"] and any(inputs[k] for k in ("s2", "s1", "dem")):
        raise ConfigError("give either a stacked raster or separate --s2/--s1/--dem rasters, not both")
    if inputs["s1"] + inputs["dem"] and not inputs["s2"]:
        raise ConfigError("separate inputs need at least one --s2 raster: it defines the 10 m grid")
    order = None
    if band_order is not None:
        if not inputs["stacked"]:
            raise ConfigError("--band-order names the bands of a stacked raster; separate rasters are "
                              "identified by their band descriptions or band counts")
        order = band_order.split(",") if isinstance(band_order, str) else list(band_order)
    headers = [_header(p, kind, order) for kind, paths in inputs.items() for p in paths]
    base = [h for h in headers if h.kind in ("stacked", "s2")]
    finest = min(abs(h.transform.a) for h in base if h.crs == base[0].crs)
    grid = _union_grid([h for h in base if h.crs == base[0].crs and math.isclose(abs(h.transform.a), finest,
                                                                                rel_tol=1e-3)])
    if CRS.from_wkt(grid.crs).is_projected and not 5 <= grid.res <= 15:
        logger.warning("the scene grid has %.1f m pixels; SmallMinesDS models are trained on 10 m pixels", grid.res)
    crs = CRS.from_wkt(grid.crs)
    sources = []
    for h in headers:
        res = _resolution_in(h, crs)
        offset = _offset_on(h, grid)
        resampling = _resampling(h.bands, res, grid.res)
        sources.append(Source(h.path, h.kind, h.bands, res, offset, resampling.name, h.nodata))
        logger.debug("%s: %s, %.1f m, %s", h.path, h.bands, res,
                     "on the grid" if offset is not None else f"warped ({resampling.name})")
    band_sources: dict[str, tuple[tuple[int, int], ...]] = {}
    for band in BAND_NAMES:
        holders = [(i, s.bands.index(band) + 1, s.res) for i, s in enumerate(sources) if band in s.bands]
        if holders:
            best = min(r for *_, r in holders)
            band_sources[band] = tuple((i, k) for i, k, r in holders if r <= best * 1.01)
    return Scene(grid, tuple(sources), band_sources)


class SceneReader:
    """Reads windows of a :class:`Scene` as float32 raw values with NaN nodata, scale applied.

    Files are opened on first use and closed by :meth:`close` (or the ``with`` block).
    """

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self._stack = ExitStack()
        self._datasets: dict[int, Any] = {}

    def __enter__(self) -> SceneReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every file this reader opened."""
        self._stack.close()
        self._datasets.clear()

    def _dataset(self, index: int) -> Any:
        if index not in self._datasets:
            source = self.scene.sources[index]
            src = self._stack.enter_context(_open(source.path))
            if source.offset is None:
                grid = self.scene.grid
                src_nodata = source.nodata if source.nodata is not None else IMAGE_NODATA
                src = self._stack.enter_context(WarpedVRT(
                    src, crs=CRS.from_wkt(grid.crs), transform=grid.transform, width=grid.width,
                    height=grid.height, resampling=Resampling[source.resampling], src_nodata=src_nodata,
                    nodata=IMAGE_NODATA, dtype="float32"))
            self._datasets[index] = src
        return self._datasets[index]

    def _read(self, index: int, band_indexes: list[int], rows: Span, cols: Span) -> np.ndarray | None:
        """Read bands of one source over a grid window; None when the source does not reach it."""
        source = self.scene.sources[index]
        src = self._dataset(index)
        r0, c0 = source.offset or (0, 0)
        r = Span(max(rows.start, r0), min(rows.stop, r0 + src.height))
        c = Span(max(cols.start, c0), min(cols.stop, c0 + src.width))
        if r.size <= 0 or c.size <= 0:
            return None
        window = Window(c.start - c0, r.start - r0, c.size, r.size)
        data = src.read(band_indexes, window=window, out_dtype="float32")
        invalid = ~np.isfinite(data) | (data == IMAGE_NODATA)
        if source.nodata is not None and math.isfinite(source.nodata):
            invalid |= data == np.float32(source.nodata)
        data[invalid] = np.nan
        out = np.full((len(band_indexes), rows.size, cols.size), np.nan, np.float32)
        out[:, r.slice(rows.start), c.slice(cols.start)] = data
        return out

    def read(self, bands: Sequence[str], rows: Span, cols: Span) -> np.ndarray:
        """Raw values of ``bands`` over a grid window.

        Returns:
            ``(len(bands), rows.size, cols.size)`` float32, NaN where no file has valid data.

        """
        out = np.full((len(bands), rows.size, cols.size), np.nan, np.float32)
        plan: dict[int, list[tuple[int, int]]] = {}
        for position, band in enumerate(bands):
            for index, band_index in self.scene.band_sources[band]:
                plan.setdefault(index, []).append((position, band_index))
        for index, pairs in plan.items():
            data = self._read(index, [k for _, k in pairs], rows, cols)
            if data is None:
                continue
            for (position, _), plane in zip(pairs, data, strict=True):
                empty = np.isnan(out[position])
                out[position][empty] = plane[empty]
        for position, band in enumerate(bands):
            factor = self.scene.scale.get(band)
            if factor is not None and factor != 1:
                out[position] *= np.float32(factor)
        return out


# ----------------------------------------------------------------------------------------------
# Scale and area of interest
# ----------------------------------------------------------------------------------------------


def parse_scale(spec: str | float | Mapping[str, float] | None) -> dict[str, float]:
    """Per-band scale factors from ``--scale``.

    ``"10000"`` scales the ten Sentinel-2 bands (the usual fix for a 0-1 reflectance export);
    ``"s2=10000,dem=0.3048"`` names bands or groups.

    Raises:
        ConfigError: a factor that is not a positive number, or an unknown band.

    """
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        items = [(k, v) for k, v in spec.items()]
    elif isinstance(spec, int | float):
        items = [("s2", spec)]
    else:
        items = []
        for part in str(spec).split(","):
            name, sep, value = part.partition("=")
            items.append((name, value) if sep else ("s2", name))
    out: dict[str, float] = {}
    for name, value in items:
        try:
            factor = float(value)
        except ValueError:
            factor = float("nan")
        if not (math.isfinite(factor) and factor > 0):
            raise ConfigError(f"--scale {spec!r}: {value!r} is not a positive number; e.g. --scale 10000 "
                              "or --scale s2=10000")
        for band in parse_bands(name):
            if band in INDICES:
                raise ConfigError(f"--scale applies to bands, not to the index {band!r}")
            out[band] = factor
    return out


def load_aoi(path: str | Path, crs: str) -> Any:
    """Read the union of a vector file's geometries, in the scene CRS (a shapely geometry).

    Raises:
        CorruptFileError: the file cannot be read, has no CRS or no geometry.

    """
    import geopandas as gpd

    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # pyogrio raises its own DataSourceError and friends
        raise CorruptFileError(path, f"cannot be read as a vector file ({exc})") from exc
    if frame.crs is None:
        raise CorruptFileError(path, "has no CRS; set one (e.g. EPSG:4326) so the area can be placed")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    if frame.empty:
        raise CorruptFileError(path, "has no geometry")
    return frame.to_crs(CRS.from_wkt(crs)).geometry.union_all()


def aoi_region(grid: Grid, geometry: Any) -> tuple[Span, Span]:
    """Rows and columns of the grid covering an area of interest (its bounding box, clipped).

    Raises:
        ConfigError: the area does not overlap the scene.

    """
    inverse = ~grid.transform
    left, bottom, right, top = geometry.bounds
    corners = [inverse * (x, y) for x, y in ((left, bottom), (left, top), (right, bottom), (right, top))]
    c0 = max(0, math.floor(min(c for c, _ in corners)))
    c1 = min(grid.width, math.ceil(max(c for c, _ in corners)))
    r0 = max(0, math.floor(min(r for _, r in corners)))
    r1 = min(grid.height, math.ceil(max(r for _, r in corners)))
    if r0 >= r1 or c0 >= c1:
        raise ConfigError(f"the area of interest {tuple(round(v) for v in geometry.bounds)} does not overlap the "
                          f"scene {tuple(round(v) for v in grid.bounds())}")
    return Span(r0, r1), Span(c0, c1)


def aoi_mask(grid: Grid, geometry: Any, rows: Span, cols: Span) -> np.ndarray:
    """Mark the pixels of a grid window whose centre lies inside the area of interest."""
    from rasterio.features import geometry_mask

    sub = grid.sub(rows, cols)
    return geometry_mask([geometry], out_shape=(rows.size, cols.size), transform=sub.transform, invert=True)


