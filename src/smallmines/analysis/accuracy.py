"""Area estimates and accuracy that follow good practice (Olofsson et al., 2014): pure numpy and pandas.

A change map counts pixels, and its errors bias every area it reports. Good practice (Olofsson, P.,
Foody, G. M., Herold, M., Stehman, S. V., Woodcock, C. E. and Wulder, M. A., 2014. Good practices for
estimating area and assessing accuracy of land change. Remote Sensing of Environment 148: 42-57)
is to label a stratified random sample of points (strata = map classes) and estimate each class's
area from the sample, with a confidence interval:

- :func:`allocate_sample`: how many points each stratum gets (a minimum for every mapped class, the
  rest in proportion to mapped area; the paper's recommended compromise between equal and proportional
  allocation for rare change classes);
- :func:`error_matrix`: sample counts ``n_ij`` (rows: map class / stratum, columns: reference class);
- :func:`estimate_areas`: the error matrix in area proportions ``p_ij = W_i n_ij / n_i.``, user's,
  producer's and overall accuracy with standard errors, and the stratified area estimates
  ``A_j = A * p_.j`` with ``SE(p_.j) = sqrt(sum_i W_i^2 (n_ij/n_i.)(1 - n_ij/n_i.)/(n_i. - 1))`` and
  the 95 % interval ``A_j +- 1.96 A SE(p_.j)`` (the paper's eqs. 2-11).

**A caveat.** The interval is a normal approximation. It holds when every stratum's sample holds
several points of each class it hides (simulated: 200 samples of 800 points from a 300 x 300 truth,
coverage 0.94-0.96 for all four classes, ``tests/test_accuracy.py``). It is too narrow when a class
hides in a large stratum only rarely (omitted new mining in the no-mining stratum): with 30 % of a
class of about 1 % of the map mapped as no mining and 220 points in that stratum, a variant of the
test covered that class's true area in 75 % of the repeats. Omission is found only by labelling
enough points of the largest stratum, so give ``n`` large enough that the no-mining stratum gets
several hundred points (the allocation gives it the rest).

Nothing here reads or writes files: :mod:`smallmines.analysis.sampling` does the I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from smallmines.errors import ChangeError

logger = logging.getLogger(__name__)


Z95 = 1.96
"""Normal quantile of the two-sided 95 % interval, rounded as in the paper (1.96)."""
MIN_PER_CLASS = 50
"""Default smallest sample of a mapped stratum (reduced when ``n`` cannot give every stratum this many)."""


# --------------------------------------------------------------------------------------------
# sample allocation


def allocate_sample(pixels: Sequence[int] | np.ndarray, n: int, min_per_class: int = MIN_PER_CLASS) -> np.ndarray:
    """Sample size of each stratum: a minimum for every mapped stratum, the rest proportional to area.

    The rule: every stratum with mapped pixels gets at least ``m = min(min_per_class, n // k)`` points
    (``k`` mapped strata) and no more points than it has pixels; the rest of ``n`` goes to the other
    strata in proportion to their mapped area (largest remainders round the shares to whole points).
    A rare class (new or ceased mining covering 0.5 % of the map) so gets enough points for its user's
    accuracy, and the common class (no mining) keeps most of the sample, as Olofsson et al. (2014,
    section 5.1.1) recommend for rare change classes. Empty strata get none.

    Args:
        pixels: mapped pixels of each stratum.
        n: total sample size.
        min_per_class: smallest sample of a mapped stratum.

    Returns:
        int64 array of sample sizes, one per stratum, summing to ``n``.

    Raises:
        ChangeError: ``n`` is not positive or exceeds the number of mapped pixels, or the map is empty.
    """
    pixels = np.asarray(pixels, dtype=np.int64)
    total = int(pixels.sum())
    if total == 0:
        raise ChangeError("the change map has no valid pixel to sample; check change.tif")
    if n < 1 or n > total:
        raise ChangeError(f"sample size {n} must be between 1 and the {total:,} valid pixels of the map")
    if min_per_class < 0:
        raise ChangeError(f"min_per_class {min_per_class} must be 0 or more")
    mapped = np.flatnonzero(pixels > 0)
    floor = min(min_per_class, n // len(mapped))
    fixed: dict[int, int] = {}
    while True:
        free = [i for i in mapped if i not in fixed]
        if not free:
            break
        rest = n - sum(fixed.values())
        share = rest * pixels[free] / pixels[free].sum()
        low = {i: int(min(floor, pixels[i])) for i, s in zip(free, share, strict=True) if s < floor}
        high = {i: int(pixels[i]) for i, s in zip(free, share, strict=True) if s > pixels[i]}
        if not low and not high:
            break
        fixed.update(low)
        fixed.update(high)
    out = np.zeros(len(pixels), np.int64)
    for i, count in fixed.items():
        out[i] = count
    free = [i for i in mapped if i not in fixed]
    if free:
        rest = n - int(out.sum())
        share = rest * pixels[free] / pixels[free].sum()
        whole = np.floor(share).astype(np.int64)
        order = np.argsort(-(share - whole), kind="stable")
        whole[order[: rest - int(whole.sum())]] += 1
        out[free] = whole
    return out


# --------------------------------------------------------------------------------------------
# the error matrix and the estimates


def error_matrix(map_class: Sequence[int] | np.ndarray, reference: Sequence[int] | np.ndarray,
                 n_classes: int) -> np.ndarray:
    """Sample counts ``n_ij``: rows the map class (the stratum), columns the reference class.

    Args:
        map_class: class code of each sample point in the map (0 .. ``n_classes - 1``).
        reference: class code a person gave each point (same length).
        n_classes: number of classes.

    Raises:
        ChangeError: the two differ in length or hold a code outside the classes.
    """
    m = np.asarray(map_class, dtype=np.int64)
    r = np.asarray(reference, dtype=np.int64)
    if m.shape != r.shape:
        raise ChangeError(f"{m.size} map classes but {r.size} reference labels; give one of each per point")
    for name, values in (("map class", m), ("reference", r)):
        bad = values[(values < 0) | (values >= n_classes)]
        if bad.size:
            raise ChangeError(f"{name} code {int(bad[0])} is not a class (0 .. {n_classes - 1})")
    counts = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(counts, (m, r), 1)
    return counts


@dataclass
class AreaEstimate:
    """The stratified estimates of one sample (Olofsson et al., 2014, eqs. 2-11).

    Attributes:
        labels: class names, in the order of the matrices.
        counts: sample counts ``n_ij`` (rows: map class, columns: reference class).
        mapped_pixels: mapped pixels of each class ``N_i``.
        pixel_area_ha: area of one pixel.
        proportions: ``p_ij = W_i n_ij / n_i.`` (sums to 1).
        area_ha: estimated area of each reference class ``A * p_.j``.
        area_se_ha: its standard error ``A * SE(p_.j)``.
        users: user's accuracy ``n_ii / n_i.`` per map class.
        users_se: its standard error.
        producers: producer's accuracy ``p_jj / p_.j`` per reference class.
        producers_se: its standard error (eq. 7).
        overall: overall accuracy ``sum_j p_jj``.
        overall_se: its standard error.
        z: the normal quantile of the intervals (1.96: 95 %).
    """

    labels: list[str]
    counts: np.ndarray
    mapped_pixels: np.ndarray
    pixel_area_ha: float
    proportions: np.ndarray
    area_ha: np.ndarray
    area_se_ha: np.ndarray
    users: np.ndarray
    users_se: np.ndarray
    producers: np.ndarray
    producers_se: np.ndarray
    overall: float
    overall_se: float
    z: float = Z95

    @property
    def mapped_ha(self) -> np.ndarray:
        """Pixel-counted area of each map class."""
        return self.mapped_pixels * self.pixel_area_ha

    @property
    def total_ha(self) -> float:
        """Area of the whole map (all strata)."""
        return float(self.mapped_ha.sum())

    @property
    def area_ci_ha(self) -> np.ndarray:
        """Half-width of the interval of each area estimate (``z`` standard errors)."""
        return self.z * self.area_se_ha

    def table(self, codes: Sequence[int] | None = None) -> pd.DataFrame:
        """One row per class: mapped and estimated area with the interval, accuracies with theirs.

        Columns: ``class``, ``code``, ``samples`` (points in the stratum), ``reference_samples``
        (points labelled this class), ``mapped_ha``, ``estimated_ha``, ``se_ha``, ``ci95_ha`` (the
        half-width), ``ci_low_ha`` (clipped at 0: an area is not negative), ``ci_high_ha``,
        ``users_accuracy``, ``users_ci95``, ``producers_accuracy``, ``producers_ci95``.
        """
        ci = self.area_ci_ha
        return pd.DataFrame({
            "class": self.labels,
            "code": list(codes) if codes is not None else list(range(len(self.labels))),
            "samples": self.counts.sum(axis=1),
            "reference_samples": self.counts.sum(axis=0),
            "mapped_ha": self.mapped_ha,
            "estimated_ha": self.area_ha,
            "se_ha": self.area_se_ha,
            "ci95_ha": ci,
            "ci_low_ha": np.maximum(self.area_ha - ci, 0.0),
            "ci_high_ha": self.area_ha + ci,
            "users_accuracy": self.users,
            "users_ci95": self.z * self.users_se,
            "producers_accuracy": self.producers,
            "producers_ci95": self.z * self.producers_se,
        })

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain lists and numbers (NaN stays NaN: write it with a NaN-free JSON writer)."""
        return {
            "method": "stratified estimation, Olofsson et al. (2014) Remote Sensing of Environment 148: 42-57",
            "confidence": 0.95 if abs(self.z - Z95) < 1e-9 else None,
            "z": self.z,
            "classes": self.labels,
            "samples": int(self.counts.sum()),
            "pixel_area_ha": self.pixel_area_ha,
            "total_ha": self.total_ha,
            "mapped_pixels": self.mapped_pixels.tolist(),
            "error_matrix_counts": self.counts.tolist(),
            "error_matrix_proportions": self.proportions.tolist(),
            "overall_accuracy": self.overall,
            "overall_accuracy_ci95": self.z * self.overall_se,
            "users_accuracy": self.users.tolist(),
            "users_accuracy_ci95": (self.z * self.users_se).tolist(),
            "producers_accuracy": self.producers.tolist(),
            "producers_accuracy_ci95": (self.z * self.producers_se).tolist(),
            "estimated_ha": self.area_ha.tolist(),
            "estimated_ci95_ha": self.area_ci_ha.tolist(),
            "mapped_ha": self.mapped_ha.tolist(),
        }


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def estimate_areas(counts: np.ndarray, mapped_pixels: Sequence[int] | np.ndarray, pixel_area_ha: float = 1.0,
                   labels: Sequence[str] | None = None, z: float = Z95) -> AreaEstimate:
    """Stratified estimates of area and accuracy from a sample's error matrix.

    With ``W_i = N_i / N`` (the mapped share of stratum ``i``) and ``n_i.`` its sample size:
    ``p_ij = W_i n_ij / n_i.``; the area of reference class ``j`` is ``A p_.j`` with the standard
    error ``A sqrt(sum_i W_i^2 (n_ij/n_i.)(1 - n_ij/n_i.)/(n_i. - 1))``; user's accuracy
    ``U_i = n_ii / n_i.`` with variance ``U_i (1 - U_i)/(n_i. - 1)``; producer's accuracy
    ``P_j = p_jj / p_.j`` with the variance of eq. 7; overall accuracy ``sum_j p_jj`` with variance
    ``sum_i W_i^2 U_i (1 - U_i)/(n_i. - 1)``. A standard error needs two points in every stratum that
    contributes; it is NaN where it cannot be estimated.

    Args:
        counts: ``K x K`` sample counts (rows: map class, columns: reference class).
        mapped_pixels: ``N_i``, mapped pixels (or any area unit) of each map class.
        pixel_area_ha: area of one unit of ``mapped_pixels`` in hectares (1.0 keeps pixels).
        labels: class names (default ``"0"``, ``"1"``, ...).
        z: normal quantile of the intervals.

    Raises:
        ChangeError: shapes disagree, or a mapped stratum has no sample point (its share of every
            class would be unknown).
    """
    n = np.asarray(counts, dtype=np.float64)
    big_n = np.asarray(mapped_pixels, dtype=np.float64)
    k = len(big_n)
    if n.shape != (k, k):
        raise ChangeError(f"the error matrix is {n.shape}, expected {k} x {k} (one row and column per class)")
    names = list(labels) if labels is not None else [str(i) for i in range(k)]
    n_i = n.sum(axis=1)
    unsampled = [names[i] for i in range(k) if big_n[i] > 0 and n_i[i] == 0]
    if unsampled:
        raise ChangeError(f"no sample point in the mapped stratum {', '.join(unsampled)}; every mapped class "
                          "needs labelled points (draw the sample with `smallmines sample`)")
    w = big_n / big_n.sum()
    share = _ratio(n, n_i[:, None])  # n_ij / n_i.
    share = np.nan_to_num(share)  # empty strata (W_i = 0) contribute nothing
    p = w[:, None] * share
    p_col = p.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        dof = np.where(n_i > 1, n_i - 1, np.nan)
    contributes = w > 0
    terms = np.where(contributes[:, None], w[:, None] ** 2 * share * (1 - share) / dof[:, None], 0.0)
    se_col = np.sqrt(terms.sum(axis=0))

    users = _ratio(np.diag(n), n_i)
    users_var = users * (1 - users) / dof
    overall = float(np.trace(p))
    overall_var = float(np.where(contributes, w ** 2 * np.nan_to_num(users) * (1 - np.nan_to_num(users)) / dof,
                                 0.0).sum())
    producers = _ratio(np.diag(p), p_col)
    producers_var = _producers_variance(n, big_n, n_i, users, producers, dof)

    area_total = float(big_n.sum()) * pixel_area_ha
    return AreaEstimate(names, n.astype(np.int64), big_n.astype(np.int64), float(pixel_area_ha), p,
                        area_total * p_col, area_total * se_col, users, np.sqrt(users_var), producers,
                        np.sqrt(producers_var), overall, float(np.sqrt(overall_var)), z)


def _producers_variance(n: np.ndarray, big_n: np.ndarray, n_i: np.ndarray, users: np.ndarray,
                        producers: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """Variance of producer's accuracy, Olofsson et al. (2014) eq. 7 (Olofsson et al., 2013, eq. 6)."""
    k = len(big_n)
    share = np.nan_to_num(_ratio(n, n_i[:, None]))
    n_hat_col = (big_n[:, None] * share).sum(axis=0)  # estimated pixels of each reference class
    out = np.full(k, np.nan)
    for j in range(k):
        if n_hat_col[j] <= 0 or np.isnan(producers[j]):
            continue
        first = big_n[j] ** 2 * (1 - producers[j]) ** 2 * users[j] * (1 - users[j]) / dof[j] if big_n[j] else 0.0
        others = sum(big_n[i] ** 2 * share[i, j] * (1 - share[i, j]) / dof[i]
                     for i in range(k) if i != j and big_n[i] > 0)
        out[j] = (first + producers[j] ** 2 * others) / n_hat_col[j] ** 2
    return out


def summary_block(est: AreaEstimate, keys: Sequence[str]) -> dict[str, Any]:
    """Compact per-class view for a change summary: ``{key: {mapped_ha, estimated_ha, ci95_ha, ...}}``."""
    rows: dict[str, Any] = {}
    for i, key in enumerate(keys):
        rows[key] = {"mapped_ha": float(est.mapped_ha[i]), "estimated_ha": float(est.area_ha[i]),
                     "ci95_ha": float(est.area_ci_ha[i]), "users_accuracy": float(est.users[i]),
                     "producers_accuracy": float(est.producers[i]), "samples": int(est.counts[i].sum())}
    return {"samples": int(est.counts.sum()), "overall_accuracy": est.overall,
            "overall_accuracy_ci95": est.z * est.overall_se, "classes": rows}

