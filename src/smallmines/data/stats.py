"""Per-channel normalisation statistics, computed on the training split only.

Statistics are saved as JSON with the channel names, so a model checkpoint can carry them and a
scene with another band order is caught instead of silently mis-normalised.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smallmines.errors import ConfigError, DataFormatError


@dataclass(frozen=True)
class BandStats:
    """Mean and standard deviation per channel (raw units), plus where they came from."""

    channels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    count: int = 0
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (len(self.channels) == len(self.mean) == len(self.std)):
            raise ConfigError(f"stats have {len(self.channels)} channels, {len(self.mean)} means, "
                              f"{len(self.std)} stds; they must match")

    def subset(self, channels: Sequence[str]) -> BandStats:
        """The statistics of ``channels`` (a subset of these), in that order."""
        missing = [c for c in channels if c not in self.channels]
        if missing:
            raise ConfigError(f"statistics lack channels {missing}; they hold {list(self.channels)}. "
                              "Recompute them with `smallmines data stats --bands ...`")
        idx = [self.channels.index(c) for c in channels]
        return BandStats(tuple(channels), tuple(self.mean[i] for i in idx), tuple(self.std[i] for i in idx),
                         self.count, self.source, dict(self.extra))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std as float32 arrays shaped ``(C, 1, 1)`` for broadcasting over ``(C, H, W)``."""
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return mean, std

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists, not tuples)."""
        out = asdict(self)
        out["channels"], out["mean"], out["std"] = list(self.channels), list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BandStats:
        """Parse :meth:`to_dict` output; ConfigError when a field is missing or malformed."""
        try:
            return cls(tuple(data["channels"]), tuple(map(float, data["mean"])), tuple(map(float, data["std"])),
                       int(data.get("count", 0)), str(data.get("source", "")), dict(data.get("extra", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"statistics need channels, mean and std lists ({exc})") from exc

    def save(self, path: str | Path) -> Path:
        """Write JSON atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> BandStats:
        """Read statistics JSON; DataFormatError naming the file when it cannot be read."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataFormatError(path, f"cannot be read as statistics JSON ({exc})") from exc


class RunningStats:
    """Streaming per-channel mean/std over NaN-masked arrays (float64 sums, exact for any order)."""

    def __init__(self, channels: Sequence[str]) -> None:
        self.channels = tuple(channels)
        n = len(self.channels)
        self.n = np.zeros(n, np.float64)
        self.s1 = np.zeros(n, np.float64)
        self.s2 = np.zeros(n, np.float64)
        self.shift: np.ndarray | None = None

    def update(self, image: np.ndarray) -> None:
        """Add a ``(C, H, W)`` or ``(N, C, H, W)`` array; NaN pixels are skipped."""
        data = np.asarray(image, dtype=np.float64)
        if data.ndim == 3:
            data = data[None]
        data = np.moveaxis(data, 1, 0).reshape(len(self.channels), -1)
        if self.shift is None:  # shifted sums keep the variance exact for large means (DEM, x10000)
            self.shift = np.nan_to_num(np.nanmean(data, axis=1)) if np.isfinite(data).any() else np.zeros(len(data))
        centred = data - self.shift[:, None]
        valid = np.isfinite(centred)
        centred = np.where(valid, centred, 0.0)
        self.n += valid.sum(axis=1)
        self.s1 += centred.sum(axis=1)
        self.s2 += (centred**2).sum(axis=1)

    def result(self, source: str = "") -> BandStats:
        """Statistics so far; DataFormatError when a channel has no valid pixel."""
        if (self.n == 0).any():
            empty = [c for c, k in zip(self.channels, self.n, strict=True) if k == 0]
            raise DataFormatError(source or "statistics", f"no valid pixel for channels {empty}")
        mean = self.s1 / self.n
        var = np.maximum(self.s2 / self.n - mean**2, 0.0)
        std = np.sqrt(var)
        std = np.where(std > 0, std, 1.0)
        return BandStats(self.channels, tuple((mean + self.shift).tolist()), tuple(std.tolist()),
                         int(self.n.min()), source)


def compute_stats(images: Iterable[np.ndarray], channels: Sequence[str], source: str = "") -> BandStats:
    """Mean/std per channel over an iterable of NaN-masked ``(C, H, W)`` arrays."""
    running = RunningStats(channels)
    for image in images:
        running.update(image)
    return running.result(source)


def normalize(image: Any, stats: BandStats | tuple[Any, Any]) -> Any:
    """Z-score ``image`` (numpy or torch, ``(C, H, W)`` or ``(N, C, H, W)``); NaN stays NaN."""
    mean, std = stats.arrays() if isinstance(stats, BandStats) else stats
    return (image - mean) / std
