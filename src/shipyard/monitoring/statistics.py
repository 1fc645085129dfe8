"""Two-sample drift statistics computed from binned columns, each matching scipy's.

Numbers (`NumericBins`, both sides on one grid):

- `ks`: the Kolmogorov-Smirnov statistic, max |F_ref - F_cur| at the cell edges, and its
  p-value as `scipy.stats.ks_2samp` gives it: with both sides at most 10,000 values, ks_2samp
  itself on the cells' values (its exact method); above, Smirnov's asymptotic distribution,
  `kstwo.sf(d, round(n m / (n + m)))`, which is what ks_2samp does for large samples.
- `wasserstein`: the integral of |F_ref - F_cur| over the grid (scipy's wasserstein_distance
  on the cells' values with their counts as weights); `wasserstein_normed` divides it by
  max(std of the reference, 0.001), Evidently's norm.
- `psi` and `jensenshannon` on Evidently's bins: one per value when the reference has at most
  20 distinct values, else Sturges' equal-width bins over the union's range.
- `chi2` on the distinct values when they are few (<= 20).

Categories (`LevelCounts`): `chi2` (scipy's chi2_contingency on the 2 x k table, no
correction), `jensenshannon` and `psi` over the union of levels.

Exactness: on an exact grid (integers, one cell per value) and on categories every statistic
is what scipy gives on the raw values. On a continuous grid the cells' values stand in for
the raw ones: the KS statistic is off by at most the largest cell's share, the Wasserstein
distance by at most one cell width (std / 1000), and PSI / JS by what moves across a bin edge.

Zero shares: PSI replaces a zero share by 0.0001 (or by the smallest share / 10^6 when that
is smaller), as Evidently's get_binned_data does; its Jensen-Shannon test does not fill zeros
(it calls get_binned_data with feel_zeroes=False), and neither does this one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.spatial import distance

from shipyard.monitoring.binned import ColumnBins, LevelCounts, NumericBins

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

EXACT_KS_ROWS = 10_000  # scipy's MAX_AUTO_N: up to here ks_2samp computes the exact p-value
PER_VALUE_BINS = 20  # Evidently: numbers with more distinct values use Sturges' bins
MIN_NORM = 0.001  # Evidently's floor of the normalising std
ZERO_SHARE = 0.0001


@dataclass(frozen=True)
class Aligned:
    """Two numeric columns on one grid: counts per cell over the union's cells."""

    values: FloatArray  # one representative value per cell of the union
    reference: IntArray
    current: IntArray
    width: float
    occupied: npt.NDArray[np.bool_]  # cells holding a value of either side


def align(reference: NumericBins, current: NumericBins) -> Aligned:
    """Both columns at the coarser of their widths, counted over the same cells."""
    if reference.grid is None or current.grid is None:
        raise ValueError("cannot align a numeric column that has no values")
    width = max(reference.grid.width, current.grid.width)
    ref, cur = reference.at_width(width), current.at_width(width)
    low = min(ref.offset, cur.offset)
    high = max(ref.offset + ref.counts.size, cur.offset + cur.counts.size)
    counts = []
    for side in (ref, cur):
        dense = np.zeros(high - low, dtype=np.int64)
        dense[side.offset - low : side.offset - low + side.counts.size] = side.counts
        counts.append(dense)
    assert ref.grid is not None
    shift = 0.0 if ref.grid.exact else 0.5
    values = ref.grid.anchor + (np.arange(low, high, dtype=np.float64) + shift) * width
    bounds = [b for b in (ref.minimum, ref.maximum, cur.minimum, cur.maximum) if b is not None]
    values = np.clip(values, min(bounds), max(bounds))
    return Aligned(values, counts[0], counts[1], width, (counts[0] + counts[1]) > 0)


# -- numbers ----------------------------------------------------------------------------------


def ks(aligned: Aligned) -> tuple[float, float]:
    """(statistic, p-value) of the two-sided two-sample Kolmogorov-Smirnov test."""
    n, m = int(aligned.reference.sum()), int(aligned.current.sum())
    if max(n, m) <= EXACT_KS_ROWS:
        keep = aligned.occupied
        result = stats.ks_2samp(
            np.repeat(aligned.values[keep], aligned.reference[keep]),
            np.repeat(aligned.values[keep], aligned.current[keep]),
        )
        return float(result.statistic), float(result.pvalue)
    d = ks_statistic(aligned)
    big, small = max(n, m), min(n, m)
    en = float(big) * float(small) / (big + small)
    return d, float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))


def ks_statistic(aligned: Aligned) -> float:
    n, m = aligned.reference.sum(), aligned.current.sum()
    gap = np.cumsum(aligned.reference) / n - np.cumsum(aligned.current) / m
    return float(np.max(np.abs(gap)))


def wasserstein(aligned: Aligned) -> float:
    """The first Wasserstein distance: the area between the two step CDFs."""
    keep = aligned.occupied
    values = aligned.values[keep]
    if values.size < 2:
        return 0.0
    f_ref = np.cumsum(aligned.reference[keep]) / aligned.reference.sum()
    f_cur = np.cumsum(aligned.current[keep]) / aligned.current.sum()
    return float(np.sum(np.abs(f_ref - f_cur)[:-1] * np.diff(values)))


def normed(distance_value: float, reference_std: float | None) -> float:
    """Evidently's normed Wasserstein distance: divided by max(reference std, 0.001)."""
    return distance_value / max(reference_std or 0.0, MIN_NORM)


def numeric_shares(
    aligned: Aligned, reference_distinct: int, low: float, high: float
) -> tuple[FloatArray, FloatArray]:
    """Shares per Evidently bin: per value for few distinct values, else Sturges' bins."""
    keep = aligned.occupied
    values, ref, cur = aligned.values[keep], aligned.reference[keep], aligned.current[keep]
    n, m = ref.sum(), cur.sum()
    if reference_distinct <= PER_VALUE_BINS:
        return ref / n, cur / m
    edges = sturges_edges(low, high, int(n + m))
    ref_hist, _ = np.histogram(values, edges, weights=ref)
    cur_hist, _ = np.histogram(values, edges, weights=cur)
    return ref_hist / n, cur_hist / m


def sturges_edges(low: float, high: float, size: int) -> FloatArray:
    """`numpy.histogram_bin_edges(data, "sturges")` for data of this range and size."""
    if high <= low:
        return np.asarray([low - 0.5, high + 0.5])
    width = (high - low) / (np.log2(size) + 1.0)
    bins = max(int(np.ceil((high - low) / width)), 1)
    return np.linspace(low, high, bins + 1)


# -- shares, categories -----------------------------------------------------------------------


def fill_zeros(shares: FloatArray) -> FloatArray:
    """Evidently's zero filling (get_binned_data's feel_zeroes) for PSI."""
    filled = shares.astype(np.float64, copy=True)
    nonzero = filled[filled != 0]
    if nonzero.size == 0:
        return filled
    smallest = float(nonzero.min())
    np.place(filled, filled == 0, smallest / 10**6 if smallest <= ZERO_SHARE else ZERO_SHARE)
    return filled


def psi(reference_shares: FloatArray, current_shares: FloatArray) -> float:
    """Population stability index: sum (r - c) ln(r / c), zero shares filled."""
    ref, cur = fill_zeros(reference_shares), fill_zeros(current_shares)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def jensenshannon(reference_shares: FloatArray, current_shares: FloatArray) -> float:
    """Jensen-Shannon distance, natural log (scipy's, Evidently's default base)."""
    if not reference_shares.sum() or not current_shares.sum():
        return math.nan
    return float(distance.jensenshannon(reference_shares, current_shares))


def chi2(reference_counts: IntArray, current_counts: IntArray) -> tuple[float, float]:
    """Chi-square test of homogeneity on the 2 x k table (no continuity correction)."""
    keep = (reference_counts + current_counts) > 0
    table = np.vstack([reference_counts[keep], current_counts[keep]])
    if table.shape[1] < 2:
        return 0.0, 1.0  # one level on both sides: nothing differs
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def level_counts(
    reference: LevelCounts, current: LevelCounts
) -> tuple[list[str], IntArray, IntArray]:
    """The union of levels, most frequent in the reference first, and both sides' counts."""
    levels = sorted(
        set(reference.levels) | set(current.levels),
        key=lambda level: (-reference.levels.get(level, 0), -current.levels.get(level, 0), level),
    )
    ref = np.asarray([reference.levels.get(level, 0) for level in levels], dtype=np.int64)
    cur = np.asarray([current.levels.get(level, 0) for level in levels], dtype=np.int64)
    return levels, ref, cur


# -- every statistic of one column ------------------------------------------------------------


def numeric_statistics(reference: NumericBins, current: NumericBins) -> dict[str, Any]:
    """Every statistic of a numeric column, and the distinct values of the union."""
    aligned = align(reference, current)
    statistic, p_value = ks(aligned)
    w = wasserstein(aligned)
    bounds = [reference.minimum, reference.maximum, current.minimum, current.maximum]
    known = [b for b in bounds if b is not None]
    reference_distinct = int(np.count_nonzero(aligned.reference))
    ref_shares, cur_shares = numeric_shares(aligned, reference_distinct, min(known), max(known))
    found: dict[str, Any] = {
        "ks": statistic,
        "ks_p_value": p_value,
        "wasserstein": w,
        "wasserstein_normed": normed(w, reference.std),
        "psi": psi(ref_shares, cur_shares),
        "jensenshannon": jensenshannon(ref_shares, cur_shares),
        "distinct": int(np.count_nonzero(aligned.occupied)),
    }
    if found["distinct"] <= PER_VALUE_BINS:
        keep = aligned.occupied
        found["chi2"], found["chi2_p_value"] = chi2(aligned.reference[keep], aligned.current[keep])
    return found


def categorical_statistics(reference: LevelCounts, current: LevelCounts) -> dict[str, Any]:
    _, ref, cur = level_counts(reference, current)
    ref_shares, cur_shares = ref / max(ref.sum(), 1), cur / max(cur.sum(), 1)
    statistic, p_value = chi2(ref, cur)
    return {
        "chi2": statistic,
        "chi2_p_value": p_value,
        "jensenshannon": jensenshannon(ref_shares, cur_shares),
        "psi": psi(ref_shares, cur_shares),
        "distinct": len(ref),
    }


def column_statistics(reference: ColumnBins, current: ColumnBins) -> dict[str, Any]:
    if isinstance(reference, NumericBins) and isinstance(current, NumericBins):
        return numeric_statistics(reference, current)
    if isinstance(reference, LevelCounts) and isinstance(current, LevelCounts):
        return categorical_statistics(reference, current)
    raise ValueError(f"cannot compare a {reference.kind} column with a {current.kind} one")


__all__ = [
    "Aligned",
    "align",
    "categorical_statistics",
    "chi2",
    "column_statistics",
    "fill_zeros",
    "jensenshannon",
    "ks",
    "level_counts",
    "normed",
    "numeric_statistics",
    "psi",
    "wasserstein",
]
