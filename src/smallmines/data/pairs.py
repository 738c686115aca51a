"""Paired samples for change models: the same tile in two years, and its 4-class change label.

A *pair* is one site (tile id) seen in an earlier year ``a`` and a later year ``b``. Its label comes
from the two masks with the codes of :class:`smallmines.legend.ChangeClass` (0 no mining, 1 new,
2 persistent, 3 ceased) and 255 wherever either mask is nodata. A change model's input channels are
the channels of each date with a date prefix, ``a:blue, ..., b:blue, ...`` (:func:`date_channels`),
so model cards, statistics and ``load_model`` work unchanged.

Splits for pairs must keep both years of a site on the same side: the random and spatial splits are
site-grouped; the official split files are not (about 42 % of the real dataset's tiles are train in
one year and test in the other), so :func:`check_pair_split` refuses them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from smallmines.bands import MASK_NODATA
from smallmines.data.layout import PatchKey
from smallmines.errors import ConfigError, SplitError
from smallmines.legend import CHANGE_NODATA, ChangeClass

logger = logging.getLogger(__name__)

DATE_PREFIXES = ("a", "b")
"""Prefixes of the earlier and the later date's channels (``a:blue``, ``b:blue``)."""
CHANGE_CLASS_COUNT = len(ChangeClass)
"""Classes a change model predicts: no mining, new, persistent, ceased."""

_LUT = np.array([ChangeClass.NO_MINING, ChangeClass.NEW, ChangeClass.CEASED, ChangeClass.PERSISTENT], np.uint8)
"""Index ``2 * a + b`` (a, b: mining in the earlier and later year) -> change class."""


def change_labels(mask_a: np.ndarray, mask_b: np.ndarray) -> np.ndarray:
    """The 4-class change label of two aligned 0/1/255 masks (255 where either is nodata).

    Args:
        mask_a: earlier year, uint8 0/1 with 255 nodata (any shape).
        mask_b: later year, the same shape.

    Raises:
        ConfigError: the masks differ in shape.
    """
    mask_a, mask_b = np.asarray(mask_a), np.asarray(mask_b)
    if mask_a.shape != mask_b.shape:
        raise ConfigError(f"masks of shapes {mask_a.shape} and {mask_b.shape}; a pair needs one grid")
    valid = (mask_a != MASK_NODATA) & (mask_b != MASK_NODATA)
    code = _LUT[(2 * (mask_a == 1) + (mask_b == 1)).astype(np.intp)]
    return np.where(valid, code, np.uint8(CHANGE_NODATA)).astype(np.uint8)


def date_channels(channels: Sequence[str]) -> tuple[str, ...]:
    """``(blue, green)`` -> ``(a:blue, a:green, b:blue, b:green)``."""
    return tuple(f"{p}:{c}" for p in DATE_PREFIXES for c in channels)


def split_date_channels(channels: Sequence[str]) -> tuple[str, ...] | None:
    """The per-date channels of a change model's channel list, or None for a single-date list.

    Raises:
        ConfigError: a list with date prefixes that is not ``a:X...`` followed by the same ``b:X...``.
    """
    channels = tuple(channels)
    if not channels or not any(":" in c and c.split(":", 1)[0] in DATE_PREFIXES for c in channels):
        return None
    half = len(channels) // 2
    base = tuple(c.split(":", 1)[1] if ":" in c else c for c in channels[:half])
    if len(channels) % 2 or date_channels(base) != channels:
        raise ConfigError(f"channels {list(channels)[:4]}...: a change model's channels are a:X for every X, "
                          "then b:X in the same order")
    return base


@dataclass(frozen=True)
class Pair:
    """One site in two years: positions of its two patches in a :class:`~smallmines.data.dataset.PatchSource`."""

    site: str
    index_a: int
    index_b: int
    year_a: int
    year_b: int

    @property
    def id(self) -> str:
        """``GH_0001_2016-2022``."""
        return f"{self.site}_{self.year_a}-{self.year_b}"


def find_pairs(keys: Sequence[PatchKey], indices: Sequence[int] | None = None,
               years: tuple[int, int] | None = None) -> list[Pair]:
    """Sites present in both years, among ``keys[i]`` for ``i`` in ``indices``, sorted by site.

    Args:
        keys: patch keys by position.
        indices: the positions to consider (default: all).
        years: ``(earlier, later)``; default the earliest and the latest year present.

    Raises:
        SplitError: fewer than two years are present.
    """
    indices = range(len(keys)) if indices is None else indices
    by_site: dict[str, dict[int, int]] = {}
    for i in indices:
        by_site.setdefault(keys[i].site, {})[keys[i].year] = i
    present = sorted({y for s in by_site.values() for y in s})
    if years is None:
        if len(present) < 2:
            raise SplitError(f"change pairs need two years; found {present or 'none'}")
        years = (present[0], present[-1])
    a, b = int(years[0]), int(years[1])
    if a >= b:
        raise ConfigError(f"pair years {a} and {b}: the first must be earlier than the second")
    return [Pair(site, s[a], s[b], a, b) for site, s in sorted(by_site.items()) if a in s and b in s]


def check_pair_split(method: object, split: Mapping[str, str], keys: Mapping[str, PatchKey]) -> None:
    """Refuse a split that puts the years of one site on different sides (it leaks in change models).

    Args:
        method: the split method or file, for the message.
        split: patch id -> train/val/test.
        keys: patch id -> key.

    Raises:
        SplitError: the official split (always), or any split with a site in two splits.
    """
    if str(method) == "official":
        raise SplitError("data.splits=official: the official split files put about 42 % of tiles in train in one "
                         "year and test in the other, so a change model would be scored on places it trained on; "
                         "use a site-grouped split (data.splits=random or spatial)")
    sides: dict[str, set[str]] = {}
    for pid, name in split.items():
        if pid in keys:
            sides.setdefault(keys[pid].site, set()).add(name)
    mixed = sorted(site for site, names in sides.items() if len(names) > 1)
    if mixed:
        raise SplitError(f"split {method!s}: {len(mixed)} sites have years in different splits (e.g. {mixed[0]}); "
                         "change models need a site-grouped split (data.splits=random or spatial)")
