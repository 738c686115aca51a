"""Input guards: sampled scene statistics against the training statistics a model carries.

:func:`compare_to_training` and :func:`enforce` stop before a silently ruined map: a band off by
orders of magnitude (a 0-1 export fed to a model trained on 0-10000), S1 in linear power instead of
dB, or bands in another order; a scene far from the training data gets a warning.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from smallmines.bands import INDICES, compute_channels
from smallmines.data.scene import SENSOR, SceneReader
from smallmines.data.stats import BandStats
from smallmines.data.windows import Span
from smallmines.errors import SceneMismatchError

logger = logging.getLogger(__name__)

SCALE_DECADES = {"s2": 1.0, "s1": 1.0, "dem": 2.0}
"""A band whose magnitude differs from training by more than this many powers of ten is refused."""
ORDER_LEVEL = math.log(1.5)
"""An S2 band whose level is off its own training level by more than this (log ratio) may be misplaced."""
ORDER_Z = 1.5
"""An S1 band whose mean is off its own training mean by this many training stds may be misplaced."""
DRIFT_Z = 2.0
"""A channel whose mean is this many training stds from the training mean gets a warning."""
DRIFT_STD = 3.0
"""A channel whose std differs from training by more than this factor gets a warning."""
FEET_PER_METRE = 1 / 0.3048
FEET_TOLERANCE = 0.12
"""A DEM whose mean is 3.28 times the training mean (within 12 %), and its spread too, is in feet."""
MIN_SAMPLE = 1000
"""Fewer valid sampled pixels than this and the guards are skipped (with a warning)."""
# ----------------------------------------------------------------------------------------------
# Guards: scene statistics against training statistics
# ----------------------------------------------------------------------------------------------


def sample_scene(reader: SceneReader, bands: Sequence[str], rows: Span, cols: Span, windows: int = 16,
                 size: int = 256, threads: int | None = None) -> np.ndarray:
    """Sample valid pixels of ``bands`` from a grid of windows spread over a region.

    Windows are read by ``threads`` threads (default: up to 8, one reader of ``reader``'s scene each,
    as rasterio datasets are not shared between threads); the sample is the same for any number.

    Returns:
        ``(len(bands), N)`` float32 raw values of pixels where every band is valid.

    """
    per_side = max(1, math.isqrt(windows))
    spans = []
    for i in range(per_side):
        for j in range(per_side):
            r = rows.start + (rows.size * (2 * i + 1)) // (2 * per_side) - size // 2
            c = cols.start + (cols.size * (2 * j + 1)) // (2 * per_side) - size // 2
            r = min(max(r, rows.start), max(rows.stop - size, rows.start))
            c = min(max(c, cols.start), max(cols.stop - size, cols.start))
            spans.append((Span(r, min(r + size, rows.stop)), Span(c, min(c + size, cols.stop))))
    n = max(1, min(len(spans), threads if threads is not None else min(8, os.cpu_count() or 1)))

    def valid_pixels(source: SceneReader, window: tuple[Span, Span]) -> np.ndarray:
        flat = source.read(bands, *window).reshape(len(bands), -1)
        return flat[:, np.isfinite(flat).all(axis=0)]

    def chunk(k: int) -> list[np.ndarray]:  # windows k, k + n, ... with a reader of this thread's own
        with reader.scene.open() as own:
            return [valid_pixels(own, w) for w in spans[k::n]]

    if n == 1:
        picks = [valid_pixels(reader, w) for w in spans]
    else:  # the guards' reads cost seconds on large compressed scenes: spread them over threads
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n, thread_name_prefix="smallmines-sample") as pool:
            chunks = list(pool.map(chunk, range(n)))
        picks = [chunks[i % n][i // n] for i in range(len(spans))]  # back in window order
    return np.concatenate(picks, axis=1)


@dataclass
class ChannelCheck:
    """One channel of the scene compared with the training statistics."""

    channel: str
    train_mean: float
    train_std: float
    scene_mean: float
    scene_std: float
    scene_p02: float
    scene_p98: float
    level_ratio: float
    z: float
    status: str = "ok"
    note: str = ""


@dataclass
class SceneCheck:
    """Sampled scene statistics against a model's training statistics.

    Attributes:
        channels: one row per channel with statistics in the model card.
        sample_pixels: valid pixels sampled.
        problems: reasons to refuse the scene (bands off by orders of magnitude, misplaced bands).
        warnings: reasons for caution (far from the training distribution).
        fixes: options that would fix the problems (``--scale 10000``, ``--band-order ...``).

    """

    channels: list[ChannelCheck]
    sample_pixels: int
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the run summary."""
        return {"sample_pixels": self.sample_pixels, "problems": self.problems, "warnings": self.warnings,
                "fixes": self.fixes, "channels": [asdict(c) for c in self.channels]}


def _rms(mean: float, std: float) -> float:
    return math.sqrt(mean * mean + std * std)


def _misplaced(levels: dict[str, float], train: dict[str, tuple[float, float]], sensor: str) -> dict[str, str]:
    """Bands that look like another band of the same sensor: ``{scene band: training band it resembles}``."""
    from scipy.optimize import linear_sum_assignment

    names = [b for b in levels if SENSOR.get(b) == sensor and b in train]
    if len(names) < 2:
        return {}

    def cost(scene_band: str, train_band: str) -> float:
        mean, std = train[train_band]
        if sensor == "s2":
            return abs(math.log(max(levels[scene_band], 1e-9) / max(_rms(mean, std), 1e-9)))
        return abs(levels[scene_band] - mean) / max(std, 1e-9)

    matrix = np.array([[cost(a, b) for b in names] for a in names])
    rows, cols = linear_sum_assignment(matrix)
    limit = ORDER_LEVEL if sensor == "s2" else ORDER_Z
    flagged = [i for i, j in zip(rows, cols, strict=True)
               if i != j and matrix[i, i] > limit and matrix[i, j] < 0.5 * matrix[i, i]]
    if len(flagged) < 2:
        return {}
    # every move of the assignment, not only the clear ones: a permutation, so a fix built from it
    # never names a band twice
    return {names[i]: names[j] for i, j in zip(rows, cols, strict=True) if i != j}


def compare_to_training(sample: np.ndarray, bands: Sequence[str], stats: BandStats,
                        file_bands: Sequence[str | None] | None = None) -> SceneCheck:
    """Compare a scene sample with training statistics, band by band and index by index.

    Args:
        sample: ``(len(bands), N)`` valid raw pixels (from :func:`sample_scene`).
        bands: the raw bands in ``sample``.
        stats: the model's training statistics (raw units, per channel).
        file_bands: the band of each band of the stacked file (:attr:`Scene.file_bands`), to
            spell out a ``--band-order`` fix; None for separate rasters.

    Returns:
        The comparison; :func:`enforce` turns its problems into an error.

    """
    n = sample.shape[1]
    channels = [c for c in stats.channels if c in bands or (c in INDICES and set(INDICES[c].inputs) <= set(bands))]
    check = SceneCheck([], n)
    if n < MIN_SAMPLE:
        check.warnings.append(f"only {n} valid pixels sampled; the scene was not compared with the training data")
        return check
    values = compute_channels(sample[:, None, :], channels, source_bands=tuple(bands))[:, 0, :]
    train = {c: (stats.mean[stats.channels.index(c)], stats.std[stats.channels.index(c)]) for c in channels}
    levels = {}
    for c, v in zip(channels, values, strict=True):
        mean, std = train[c]
        v64 = v.astype(np.float64)
        scene_mean, scene_std = float(v64.mean()), float(v64.std())
        level = float(np.sqrt(np.mean(v64 * v64)))
        levels[c] = level if c in SENSOR and SENSOR[c] == "s2" else scene_mean
        p02, p98 = (float(x) for x in np.percentile(v64, [2, 98]))
        check.channels.append(ChannelCheck(c, mean, std, scene_mean, scene_std, p02, p98,
                                           level / max(_rms(mean, std), 1e-12),
                                           abs(scene_mean - mean) / max(std, 1e-12)))
    _check_scale(check)
    if not check.problems:
        _check_order(check, levels, train, file_bands)
    _check_drift(check)
    return check


def _feet(row: ChannelCheck) -> bool:
    """Mean and spread both 3.28 times the training's: feet (a higher region shifts the mean, not the spread)."""
    spread = row.scene_std / max(row.train_std, 1e-12)
    return abs(row.level_ratio / FEET_PER_METRE - 1) < FEET_TOLERANCE and abs(spread / FEET_PER_METRE - 1) < 0.35


def _check_scale(check: SceneCheck) -> None:
    off: dict[int, list[str]] = {}
    for row in check.channels:
        if row.channel not in SENSOR:
            continue
        sensor = SENSOR[row.channel]
        decades = math.log10(max(row.level_ratio, 1e-30))
        if sensor == "s1" and row.train_mean < 0 and row.scene_p02 >= 0:
            row.status, row.note = "scale", "looks like linear power, not dB"
            check.problems.append(f"{row.channel} looks like linear power (scene values {row.scene_p02:.3g} to "
                                  f"{row.scene_p98:.3g}) but the model was trained on dB (mean "
                                  f"{row.train_mean:.3g}); convert with 10*log10(x)")
        elif sensor == "dem" and _feet(row):
            row.status, row.note = "scale", "looks like feet, not metres"
            check.problems.append(f"{row.channel} looks like feet: scene mean {row.scene_mean:.4g} is "
                                  f"{row.level_ratio:.3g}x the training mean {row.train_mean:.4g} m "
                                  f"(1 m = {FEET_PER_METRE:.4g} ft)")
            check.fixes.append(f"--scale {row.channel}=0.3048")
        elif abs(decades) > SCALE_DECADES[sensor]:
            factor = 10.0 ** round(-decades)
            row.status, row.note = "scale", f"{10 ** decades:.2g}x the training magnitude"
            off.setdefault(int(factor) if factor >= 1 else factor, []).append(row.channel)
    for factor, names in off.items():
        sample = next(r for r in check.channels if r.channel == names[0])
        check.problems.append(
            f"band(s) {', '.join(names)} are off by orders of magnitude: scene {names[0]} mean "
            f"{sample.scene_mean:.4g} vs training {sample.train_mean:.4g} (x{sample.level_ratio:.2g}); "
            f"the scene looks scaled {'0-1' if factor == 10000 else f'by 1/{factor:g}'} while the model "
            f"expects {'reflectance x 10000' if all(SENSOR[n] == 's2' for n in names) else 'training units'}")
        optical = all(SENSOR[n] == "s2" for n in names)
        spec = f"{factor:g}" if optical else ",".join(f"{n}={factor:g}" for n in names)
        check.fixes.append(f"--scale {spec}")


def _check_order(check: SceneCheck, levels: dict[str, float], train: dict[str, tuple[float, float]],
                 file_bands: Sequence[str | None] | None) -> None:
    swaps = {**_misplaced(levels, train, "s2"), **_misplaced(levels, train, "s1")}
    if not swaps:
        return
    rows = {r.channel: r for r in check.channels}
    for band, other in swaps.items():
        rows[band].status, rows[band].note = "order", f"looks like {other}"
    pairs = "; ".join(f"scene {b} looks like {o} (scene {rows[b].scene_mean:.4g}, training {b} "
                      f"{rows[b].train_mean:.4g}, training {o} {rows[o].train_mean:.4g})" for b, o in swaps.items())
    check.problems.append(f"bands seem to be in another order: {pairs}")
    order = [swaps.get(b, b) if b else "-" for b in file_bands] if file_bands is not None else []
    named = [b for b in order if b != "-"]
    if not order or len(set(named)) != len(named):
        check.fixes.append("band descriptions on the input files that name the bands they hold")
    else:
        check.fixes.append("--band-order " + ",".join(order))


def _check_drift(check: SceneCheck) -> None:
    for row in check.channels:
        if row.status != "ok":
            continue
        ratio = row.scene_std / max(row.train_std, 1e-12)
        if row.z > DRIFT_Z or not 1 / DRIFT_STD <= ratio <= DRIFT_STD:
            row.status, row.note = "warn", f"mean {row.z:.1f} training std away, std x{ratio:.2g}"
            check.warnings.append(f"{row.channel}: scene mean {row.scene_mean:.4g} (std {row.scene_std:.3g}) is far "
                                  f"from training {row.train_mean:.4g} (std {row.train_std:.3g}); expect "
                                  "lower accuracy")


def enforce(check: SceneCheck, force: bool = False) -> None:
    """Raise SceneMismatchError for a check with problems, unless ``force`` (then log them).

    Warnings are logged either way.
    """
    for warning in check.warnings:
        logger.warning("%s", warning)
    if not check.problems:
        return
    if force:
        for problem in check.problems:
            logger.warning("--force: mapping despite: %s", problem)
        return
    fixes = " or ".join(f"rerun with {fix}" if fix.startswith("--") else fix for fix in check.fixes)
    raise SceneMismatchError("the scene does not look like the model's training data: "
                             + " | ".join(check.problems)
                             + (f". Fix: {fixes}" if fixes else "")
                             + "; or pass --force to map anyway")
