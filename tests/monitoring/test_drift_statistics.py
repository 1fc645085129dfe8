"""Every drift statistic against scipy on the same data, to 1e-9 (binned data exact where the
bins are the values; continuous data against scipy on the bins, and within the grid's error
bound of scipy on the raw values)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial import distance

from shipyard.monitoring.binned import (
    MAX_CELLS,
    BinnedProfile,
    LevelCounts,
    NumericBins,
    current_profile,
    reference_profile,
)
from shipyard.monitoring.statistics import (
    align,
    categorical_statistics,
    fill_zeros,
    numeric_statistics,
)

TOLERANCE = 1e-9


def _profiles(
    reference: np.ndarray | list, current: np.ndarray | list
) -> tuple[BinnedProfile, BinnedProfile]:
    ref = reference_profile(pa.table({"x": reference}))
    return ref, current_profile(ref, pa.table({"x": current}))


def _psi(ref_shares: np.ndarray, cur_shares: np.ndarray) -> float:
    ref, cur = fill_zeros(ref_shares), fill_zeros(cur_shares)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def _value_shares(
    ref: np.ndarray, cur: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    levels = np.union1d(ref, cur)
    ref_counts = np.array([(ref == v).sum() for v in levels])
    cur_counts = np.array([(cur == v).sum() for v in levels])
    return ref_counts, cur_counts, ref_counts / ref.size, cur_counts / cur.size


@pytest.mark.parametrize(
    ("seed", "sizes", "span", "shift"),
    [
        (0, (400, 700), 12, 0),
        (1, (3000, 2500), 15, 2),
        (2, (20_000, 15_000), 60, 1),
        (3, (900, 1200), 40, 0),
    ],
)
def test_integer_columns_match_scipy_on_the_raw_values(
    seed: int, sizes: tuple[int, int], span: int, shift: int
) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, span, sizes[0])
    cur = rng.integers(0, span, sizes[1]) + shift
    reference, current = _profiles(ref, cur)
    found = numeric_statistics(reference["x"], current["x"])  # type: ignore[arg-type]

    expected = stats.ks_2samp(ref, cur)  # "auto": exact up to 10,000 rows, asymptotic above
    assert found["ks"] == pytest.approx(expected.statistic, abs=TOLERANCE)
    assert found["ks_p_value"] == pytest.approx(expected.pvalue, abs=TOLERANCE)
    assert found["wasserstein"] == pytest.approx(
        stats.wasserstein_distance(ref, cur), abs=TOLERANCE
    )
    assert found["wasserstein_normed"] == pytest.approx(
        stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001), abs=TOLERANCE
    )
    if np.unique(ref).size <= 20:  # Evidently's per-value bins
        ref_counts, cur_counts, ref_shares, cur_shares = _value_shares(ref, cur)
        chi2 = stats.chi2_contingency(np.vstack([ref_counts, cur_counts]), correction=False)
        assert found["chi2"] == pytest.approx(chi2.statistic, abs=TOLERANCE)
        assert found["chi2_p_value"] == pytest.approx(chi2.pvalue, abs=TOLERANCE)
    else:  # Evidently's Sturges bins over both samples
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        ref_shares = np.histogram(ref, edges)[0] / ref.size
        cur_shares = np.histogram(cur, edges)[0] / cur.size
    assert found["jensenshannon"] == pytest.approx(
        distance.jensenshannon(ref_shares, cur_shares), abs=TOLERANCE
    )
    assert found["psi"] == pytest.approx(_psi(ref_shares, cur_shares), abs=TOLERANCE)


@pytest.mark.parametrize("seed", [0, 1])
def test_categorical_columns_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.choice(["a", "b", "c", "d"], 2000, p=[0.4, 0.3, 0.2, 0.1])
    cur = rng.choice(["a", "b", "c", "e"], 1500, p=[0.25, 0.25, 0.25, 0.25])  # "d" gone, "e" new
    reference, current = _profiles(ref, cur)
    found = categorical_statistics(reference["x"], current["x"])  # type: ignore[arg-type]
    ref_counts, cur_counts, ref_shares, cur_shares = _value_shares(ref, cur)
    chi2 = stats.chi2_contingency(np.vstack([ref_counts, cur_counts]), correction=False)
    assert found["chi2"] == pytest.approx(chi2.statistic, abs=TOLERANCE)
    assert found["chi2_p_value"] == pytest.approx(chi2.pvalue, abs=TOLERANCE)
    assert found["jensenshannon"] == pytest.approx(
        distance.jensenshannon(ref_shares, cur_shares), abs=TOLERANCE
    )
    assert found["psi"] == pytest.approx(_psi(ref_shares, cur_shares), abs=TOLERANCE)
    assert found["psi"] > 0.1 and found["distinct"] == 5


@pytest.mark.parametrize(("seed", "sizes"), [(0, (5_000, 8_000)), (1, (50_000, 40_000))])
def test_continuous_columns_match_scipy_on_the_bins_and_the_raw_data_within_the_grid(
    seed: int, sizes: tuple[int, int]
) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.normal(100.0, 15.0, sizes[0])
    cur = rng.normal(103.0, 17.0, sizes[1])
    reference, current = _profiles(ref, cur)
    ref_bins, cur_bins = reference["x"], current["x"]
    assert isinstance(ref_bins, NumericBins) and isinstance(cur_bins, NumericBins)
    found = numeric_statistics(ref_bins, cur_bins)
    aligned = align(ref_bins, cur_bins)
    keep = aligned.occupied
    values, ref_w, cur_w = aligned.values[keep], aligned.reference[keep], aligned.current[keep]

    # scipy on the binned data: each cell's value weighted by its count
    binned_ref, binned_cur = np.repeat(values, ref_w), np.repeat(values, cur_w)
    expected = stats.ks_2samp(binned_ref, binned_cur)
    assert found["ks"] == pytest.approx(expected.statistic, abs=TOLERANCE)
    assert found["ks_p_value"] == pytest.approx(expected.pvalue, abs=TOLERANCE)
    binned_w = stats.wasserstein_distance(values, values, ref_w, cur_w)
    assert found["wasserstein"] == pytest.approx(binned_w, abs=TOLERANCE)
    assert ref_bins.std == pytest.approx(np.std(ref), rel=1e-9)

    # scipy on the raw data: within the grid's error bound
    largest_share = max(ref_w.max() / ref.size, cur_w.max() / cur.size)
    assert abs(found["ks"] - stats.ks_2samp(ref, cur).statistic) <= largest_share
    assert abs(found["wasserstein"] - stats.wasserstein_distance(ref, cur)) <= aligned.width
    assert aligned.width == pytest.approx(np.std(ref) / 1000)


def test_profiles_merge_and_round_trip_exactly() -> None:
    rng = np.random.default_rng(4)
    table = pa.table(
        {
            "x": rng.normal(0, 1, 10_000),
            "n": rng.integers(0, 9, 10_000),
            "c": rng.choice(["a", "b"], 10_000),
        }
    )
    whole = reference_profile(table)
    first = current_profile(whole, table.slice(0, 3000))
    second = current_profile(whole, table.slice(3000))
    first.merge(second)
    restored = BinnedProfile.from_dict(first.to_dict())
    for name in ("x", "n"):
        merged, full = restored[name], whole[name]
        assert isinstance(merged, NumericBins) and isinstance(full, NumericBins)
        assert merged.counts.tolist() == full.counts.tolist() and merged.offset == full.offset
        assert merged.std == pytest.approx(full.std, rel=1e-9)
    categories = restored["c"]
    assert isinstance(categories, LevelCounts) and categories.levels == whole["c"].levels  # type: ignore[attr-defined]


def test_a_wide_column_coarsens_and_stays_bounded() -> None:
    rng = np.random.default_rng(5)
    ref = rng.normal(0, 1, 5000)
    reference = reference_profile(pa.table({"x": ref}))
    cur = np.concatenate([rng.normal(0, 1, 5000), [1e6, -1e6, np.nan, np.inf]])
    current = current_profile(reference, pa.table({"x": cur}))
    column = current["x"]
    assert isinstance(column, NumericBins)
    assert column.counts.size <= MAX_CELLS and column.nulls == 2 and column.count == 5002
    found = numeric_statistics(reference["x"], column)  # type: ignore[arg-type]
    aligned = align(reference["x"], column)  # type: ignore[arg-type]
    finite = cur[np.isfinite(cur)]
    assert abs(found["wasserstein"] - stats.wasserstein_distance(ref, finite)) <= aligned.width
