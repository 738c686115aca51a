"""Reference samples of a change map: drawing them for a person to label, and reading them back into estimates.

:func:`draw_sample` draws a stratified random sample of pixels from ``change.tif`` (strata = the
change classes, sizes from :func:`~smallmines.analysis.accuracy.allocate_sample`, seeded) and writes
it for labelling; :func:`assess_change` reads the labelled sample and writes the error matrix in area
proportions, the accuracies and the stratified area estimates with 95 % intervals
(:func:`~smallmines.analysis.accuracy.estimate_areas`). Outputs, in the change folder::

    sample.gpkg          layer ``sample``: points at pixel centres in the map's CRS
    sample.csv           the same table: id, x, y, lon, lat, stratum, map_class, reference (empty)
    sample.json          the design: seed, allocation rule, per stratum pixels, weight and sample size
    accuracy.json        error matrix (counts and area proportions), accuracies, estimates, the sample
    area_estimates.csv   per class: mapped and estimated hectares, 95 % interval, user's/producer's accuracy

Label the ``reference`` column with a class code (0 no mining, 1 new, 2 persistent, 3 ceased) or name
(``new mining``, ``new``, ...); leave it empty to skip a point. Rows are shuffled so strata are not
labelled in blocks; hide the ``stratum`` and ``map_class`` columns while labelling to stay blind to
the map.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.transform import Affine

from smallmines.analysis.accuracy import MIN_PER_CLASS, AreaEstimate, allocate_sample, estimate_areas, summary_block
from smallmines.analysis.areas import SQM_PER_HA, class_pixels
from smallmines.analysis.writers import _clean, _write_csv, _write_gpkg, _write_json
from smallmines.errors import ChangeError, DataFormatError, MapNotFoundError
from smallmines.folders import refuse_overwrite
from smallmines.legend import CHANGE_NODATA, CLASS_KEYS, CLASS_LABELS, ChangeClass

if TYPE_CHECKING:
    import geopandas as gpd

logger = logging.getLogger(__name__)


SAMPLE_NAMES = ("sample.gpkg", "sample.csv", "sample.json")
ACCURACY_JSON = "accuracy.json"
ESTIMATES_CSV = "area_estimates.csv"
CLASSES = tuple(ChangeClass)
_DENSE = 0.05
"""Strata covering more than this share of the raster are sampled by rejection (no index list in memory)."""


# --------------------------------------------------------------------------------------------
# the change raster


@dataclass
class ChangeRaster:
    """``change.tif`` read into memory."""

    path: Path
    data: np.ndarray
    crs: CRS
    transform: Affine

    @property
    def pixel_area_ha(self) -> float:
        """Area of one pixel in hectares (the grid is projected in metres)."""
        return abs(self.transform.a * self.transform.e) / SQM_PER_HA


def read_change(change: str | Path) -> ChangeRaster:
    """Read a change raster: a ``smallmines change`` folder or its ``change.tif``.

    Raises:
        MapNotFoundError: no such file, or a folder without ``change.tif``.
        DataFormatError: unreadable, geographic (no areas), or codes other than 0-3 and 255.
    """
    path = Path(change).expanduser()
    if path.is_dir():
        path = path / "change.tif"
    if not path.is_file():
        raise MapNotFoundError(f"{path}: no change raster; run `smallmines change MAP_A MAP_B -o FOLDER` first "
                               "and give that folder")
    try:
        with rasterio.open(path) as src:
            data, crs, transform = src.read(1), src.crs, src.transform
    except RasterioError as exc:
        raise DataFormatError(path, f"cannot be read as a raster ({exc})") from exc
    if crs is None or crs.is_geographic:
        raise DataFormatError(path, f"has CRS {crs}; areas need a projected grid in metres, as "
                              "`smallmines change` writes")
    odd = np.setdiff1d(np.unique(data), [*map(int, CLASSES), CHANGE_NODATA])
    if odd.size:
        raise DataFormatError(path, f"holds codes {odd[:5].tolist()}; a change raster has 0-3 and {CHANGE_NODATA}")
    return ChangeRaster(path, data, crs, transform)


# --------------------------------------------------------------------------------------------
# drawing a sample


@dataclass
class SampleResult:
    """What :func:`draw_sample` wrote.

    Attributes:
        gpkg: the points (layer ``sample``).
        csv: the same table as CSV.
        design_json: the sampling design.
        points: the points (GeoDataFrame, shuffled).
        allocation: per stratum: class, code, pixels, weight, samples.
    """

    gpkg: Path
    csv: Path
    design_json: Path
    points: gpd.GeoDataFrame
    allocation: pd.DataFrame


def _pick(data: np.ndarray, code: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` distinct flat indices of pixels of class ``code``, uniformly at random."""
    flat = data.ravel()
    count = int(np.count_nonzero(flat == code))
    if k == 0:
        return np.empty(0, np.int64)
    if count / flat.size <= _DENSE:
        return np.sort(rng.choice(np.flatnonzero(flat == code), size=k, replace=False))
    chosen: np.ndarray = np.empty(0, np.int64)
    while chosen.size < k:  # rejection: a dense stratum is hit often
        draw = rng.integers(0, flat.size, size=int(2 * (k - chosen.size) * flat.size / count) + 16)
        hits = draw[flat[draw] == code]
        chosen = np.concatenate([chosen, hits[~np.isin(hits, chosen)]])
        _, first = np.unique(chosen, return_index=True)
        chosen = chosen[np.sort(first)]
    return np.sort(chosen[:k])


def sample_pixels(change: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified random pixels of a change array: ``sizes[c]`` distinct pixels of each class ``c``, shuffled.

    Returns:
        Flat pixel indices and the stratum (class code) of each.
    """
    flat = np.concatenate([_pick(change, int(c), int(k), rng) for c, k in zip(CLASSES, sizes, strict=True)])
    strata = np.repeat([int(c) for c in CLASSES], sizes)
    order = rng.permutation(flat.size)
    return flat[order], strata[order]


def draw_sample(change: str | Path, n: int, seed: int = 0, min_per_class: int = MIN_PER_CLASS,
                out_dir: str | Path | None = None, overwrite: bool = True) -> SampleResult:
    """Draw a stratified random sample of pixels from a change map, for a person to label.

    Strata are the change classes (no mining, new, persistent, ceased); sizes follow
    :func:`~smallmines.analysis.accuracy.allocate_sample` (at least ``min_per_class`` per mapped class,
    the rest proportional to mapped area); inside a stratum, pixels are drawn uniformly without
    replacement. Points sit at pixel centres.

    Args:
        change: a ``smallmines change`` folder or its ``change.tif``.
        n: total sample size.
        seed: random seed (the same seed and map give the same sample).
        min_per_class: smallest sample of a mapped class.
        out_dir: where to write (default: the change folder).
        overwrite: replace an earlier sample there (the command line refuses by default: a sample may
            hold a person's labels; ``--overwrite``).

    Returns:
        The :class:`SampleResult`.

    Raises:
        MapNotFoundError, DataFormatError: see :func:`read_change`.
        ChangeError: ``n`` larger than the valid pixels, or not positive.

    .. versionadded:: 0.2
    """
    import geopandas as gpd
    from rasterio.warp import transform as warp

    raster = read_change(change)
    out = Path(out_dir) if out_dir is not None else raster.path.parent
    refuse_overwrite([out / "sample.csv", out / "sample.gpkg"], overwrite)
    pixels = class_pixels(raster.data)
    counts = np.array([pixels[c] for c in CLASSES], np.int64)
    sizes = allocate_sample(counts, n, min_per_class)
    flat, strata = sample_pixels(raster.data, sizes, np.random.default_rng(seed))
    rows, cols = np.divmod(flat, raster.data.shape[1])
    xs, ys = raster.transform * (cols + 0.5, rows + 0.5)
    lon, lat = warp(raster.crs, "EPSG:4326", list(np.atleast_1d(xs)), list(np.atleast_1d(ys)))
    points = gpd.GeoDataFrame({
        "id": np.arange(1, flat.size + 1, dtype=np.int64),
        "x": xs, "y": ys, "lon": lon, "lat": lat,
        "stratum": strata.astype(np.int64),
        "map_class": [CLASS_LABELS[ChangeClass(s)] for s in strata],
        "reference": pd.Series([""] * flat.size, dtype=object),
    }, geometry=gpd.points_from_xy(xs, ys), crs=raster.crs)
    weight = counts / counts.sum()
    allocation = pd.DataFrame({"class": [c.label for c in CLASSES], "code": [int(c) for c in CLASSES],
                               "pixels": counts, "weight": weight, "samples": sizes})
    design = {
        "change": str(raster.path),
        "n": int(sizes.sum()),
        "seed": seed,
        "min_per_class": min_per_class,
        "rule": "stratified random sampling, strata = map classes; every mapped class gets at least "
                "min(min_per_class, n // mapped classes) points (no more than its pixels), the rest is "
                "proportional to mapped area (Olofsson et al. 2014, section 5.1.1)",
        "pixel_area_ha": raster.pixel_area_ha,
        "crs": raster.crs.to_string(),
        "strata": allocation.to_dict(orient="records"),
        "labels": {str(int(c)): c.label for c in CLASSES},
    }
    gpkg = _write_gpkg(out / "sample.gpkg", points, "sample")
    csv = _write_csv(out / "sample.csv", pd.DataFrame(points.drop(columns="geometry")))
    design_json = _write_json(out / "sample.json", _clean(design))
    logger.info("%d points drawn from %s (%s)", flat.size, raster.path,
                ", ".join(f"{c.label} {k}" for c, k in zip(CLASSES, sizes, strict=True)))
    return SampleResult(gpkg, csv, design_json, points, allocation)


# --------------------------------------------------------------------------------------------
# reading a labelled sample


def _norm(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text.strip().lower())


_NAMES: dict[str, int] = {}
for _c in CLASSES:
    _NAMES[_norm(CLASS_LABELS[_c])] = int(_c)
    _NAMES[_norm(CLASS_KEYS[_c])] = int(_c)
    _NAMES[str(int(_c))] = int(_c)


def _codes(values: pd.Series, column: str, path: Path) -> np.ndarray:
    """Class codes of a column (codes or names, case-insensitive); -1 where empty."""
    out = np.full(len(values), -1, np.int64)
    for pos, value in enumerate(values.tolist()):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        text = str(value).strip()
        if not text:
            continue
        key = _norm(text[:-2] if re.fullmatch(r"\d\.0", text) else text)
        if key not in _NAMES:
            allowed = ", ".join(f"{int(c)} / {c.label!r}" for c in CLASSES)
            raise DataFormatError(path, f"row {pos + 1}: {column} {text!r} is not a change class; use one of "
                                  f"{allowed}, or leave it empty to skip the point")
        out[pos] = _NAMES[key]
    return out


def read_reference(path: str | Path) -> pd.DataFrame:
    """Read a labelled sample (GeoPackage or any vector file, or CSV) as codes.

    Args:
        path: the file ``smallmines sample`` wrote, with its ``reference`` column filled in.

    Returns:
        DataFrame with ``stratum`` and ``reference`` (codes, -1 where a point is not labelled) and
        ``x``, ``y`` when the file has coordinates.

    Raises:
        MapNotFoundError: no such file.
        DataFormatError: a column is missing or holds an unknown class.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MapNotFoundError(f"{path}: no such labelled sample; give the sample.gpkg or sample.csv that "
                               "`smallmines sample` wrote, with its reference column filled in")
    if path.suffix.lower() in (".csv", ".txt"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        import geopandas as gpd

        try:
            frame = gpd.read_file(path, engine="pyogrio")
        except Exception as exc:  # noqa: BLE001 - any reader failure is a format problem of this file
            raise DataFormatError(path, f"cannot be read as a vector file ({exc})") from exc
        if "x" not in frame.columns and frame.geometry is not None and len(frame):
            frame["x"], frame["y"] = frame.geometry.x, frame.geometry.y
    columns = {c.lower(): c for c in frame.columns}
    stratum_col = columns.get("stratum") or columns.get("map_class")
    if stratum_col is None or "reference" not in columns:
        raise DataFormatError(path, f"needs the columns stratum (or map_class) and reference; found "
                              f"{list(frame.columns)[:12]}")
    out = pd.DataFrame({"stratum": _codes(frame[stratum_col], stratum_col, path),
                        "reference": _codes(frame[columns["reference"]], "reference", path)})
    if (out["stratum"] < 0).any():
        row = int(np.flatnonzero(out["stratum"] < 0)[0]) + 1
        raise DataFormatError(path, f"row {row}: empty {stratum_col}; every point needs the map class it was "
                              "drawn from")
    if "x" in columns and "y" in columns:
        out["x"] = pd.to_numeric(frame[columns["x"]], errors="coerce").to_numpy()
        out["y"] = pd.to_numeric(frame[columns["y"]], errors="coerce").to_numpy()
    return out


# --------------------------------------------------------------------------------------------
# estimates from a labelled sample


@dataclass
class AccuracyResult:
    """What :func:`assess_change` computed and wrote.

    Attributes:
        estimate: the full estimate (matrices, accuracies, areas).
        table: per class: mapped and estimated hectares with the 95 % interval, accuracies.
        summary: the compact block added to the change ``summary.json`` (``area_estimates``).
        accuracy_json: path of ``accuracy.json``.
        estimates_csv: path of ``area_estimates.csv``.
        labelled: points used.
        unlabelled: points skipped (empty ``reference``).
    """

    estimate: AreaEstimate
    table: pd.DataFrame
    summary: dict[str, Any]
    accuracy_json: Path
    estimates_csv: Path
    labelled: int
    unlabelled: int


def _check_strata(sample: pd.DataFrame, raster: ChangeRaster, source: Path) -> None:
    """Every point must lie on a pixel of its stratum: else the sample came from another map."""
    if "x" not in sample.columns or sample[["x", "y"]].isna().any(axis=None):
        logger.warning("%s has no x/y coordinates; its strata are not checked against %s", source, raster.path)
        return
    cols, rows = ~raster.transform * (sample["x"].to_numpy(), sample["y"].to_numpy())
    rows, cols = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    h, w = raster.data.shape
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    found = np.full(len(sample), -1, np.int64)
    found[inside] = raster.data[rows[inside], cols[inside]]
    wrong = np.flatnonzero(found != sample["stratum"].to_numpy())
    if wrong.size:
        raise ChangeError(f"{source}: {wrong.size} of {len(sample)} points do not lie on their stratum's class in "
                          f"{raster.path} (first: row {wrong[0] + 1}); the sample was drawn from another change map. "
                          "Draw a new sample from this map with `smallmines sample`, or compare the maps it came from")


def estimate_from_sample(raster: ChangeRaster, reference: str | Path, out_dir: str | Path) -> AccuracyResult:
    """Estimates from a labelled sample of ``raster``, written to ``out_dir`` (no summary update).

    Args:
        raster: the change raster the sample was drawn from (gives the strata areas).
        reference: the labelled sample (see :func:`read_reference`).
        out_dir: where ``accuracy.json`` and ``area_estimates.csv`` go.

    Raises:
        ChangeError: no labelled point, points off their stratum, or a mapped stratum without points.
    """
    source = Path(reference)
    sample = read_reference(source)
    _check_strata(sample, raster, source)
    labelled = sample[sample["reference"] >= 0]
    skipped = len(sample) - len(labelled)
    if labelled.empty:
        raise ChangeError(f"{source}: none of its {len(sample)} points has a reference label; fill in the reference "
                          "column (0 no mining, 1 new, 2 persistent, 3 ceased)")
    if skipped:
        logger.warning("%s: %d of %d points have no reference label and are left out", source, skipped, len(sample))
    counts_by_class = class_pixels(raster.data)
    mapped = np.array([counts_by_class[c] for c in CLASSES], np.int64)
    counts = np.zeros((len(CLASSES), len(CLASSES)), np.int64)
    np.add.at(counts, (labelled["stratum"].to_numpy(), labelled["reference"].to_numpy()), 1)
    est = estimate_areas(counts, mapped, raster.pixel_area_ha, [c.label for c in CLASSES])
    table = est.table([int(c) for c in CLASSES])
    out = Path(out_dir)
    detail = {"reference": str(source), "change": str(raster.path), "labelled": len(labelled),
              "unlabelled": skipped, **est.to_dict()}
    accuracy_json = _write_json(out / ACCURACY_JSON, _clean(detail))
    estimates_csv = _write_csv(out / ESTIMATES_CSV, table)
    block = {"reference": str(source), **summary_block(est, [CLASS_KEYS[c] for c in CLASSES])}
    return AccuracyResult(est, table, _clean(block), accuracy_json, estimates_csv, len(labelled), skipped)


def assess_change(change: str | Path, reference: str | Path, overwrite: bool = True) -> AccuracyResult:
    """Error matrix, accuracies and area estimates with 95 % intervals from a labelled sample.

    Writes ``accuracy.json`` and ``area_estimates.csv`` into the change folder and adds an
    ``area_estimates`` block to its ``summary.json``.

    Args:
        change: a ``smallmines change`` folder or its ``change.tif`` (the map the sample was drawn from).
        reference: the labelled ``sample.gpkg`` or ``sample.csv``.
        overwrite: replace an earlier ``accuracy.json`` (the command line refuses by default, ``--overwrite``).

    Returns:
        The :class:`AccuracyResult`.

    Raises:
        MapNotFoundError: no change raster or no sample file.
        DataFormatError: a bad change raster, or a sample with missing columns or unknown classes.
        ChangeError: no labelled point, points off their stratum, or a mapped class without points.

    .. versionadded:: 0.2
    """
    raster = read_change(change)
    refuse_overwrite([raster.path.parent / "accuracy.json"], overwrite)
    result = estimate_from_sample(raster, reference, raster.path.parent)
    summary_path = raster.path.parent / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        summary["area_estimates"] = result.summary
        _write_json(summary_path, _clean(summary))
    return result
