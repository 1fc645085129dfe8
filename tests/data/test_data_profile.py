"""Profiles and the quantile sketch, checked against numpy and pandas on the same data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shipyard.data as data
from shipyard.data.profile import (
    QUANTILES,
    CategoricalProfile,
    NumericProfile,
    TableProfile,
    TemporalProfile,
)
from shipyard.data.sketch import DEFAULT_RELATIVE_ACCURACY, QuantileSketch
from shipyard.data.sources import BATCH_ROWS
from shipyard.project import Project

ALPHA = DEFAULT_RELATIVE_ACCURACY
# The sketch's bound, plus room for the last bit of float rounding at a bucket edge.
BOUND = ALPHA * (1 + 1e-9)

PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _seeded_frame(rows: int = 20_000, seed: int = 42) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.5, rows)
    x[rng.random(rows) < 0.1] = np.nan  # pandas NaN becomes an Arrow null
    counts = rng.poisson(4.0, rows).astype(np.int64)
    heavy = rng.lognormal(2.0, 1.5, rows) * np.where(rng.random(rows) < 0.3, -1.0, 1.0)
    heavy[rng.random(rows) < 0.05] = 0.0
    colors = rng.choice(["red", "green", "blue", "violet"], rows, p=[0.5, 0.3, 0.15, 0.05])
    colors = pd.Series(colors, dtype="object")
    colors[rng.random(rows) < 0.02] = None
    return pd.DataFrame({"x": x, "counts": counts, "heavy": heavy, "color": colors})


def _profile_of(frame: pd.DataFrame, chunk: int = 3_000) -> TableProfile:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return TableProfile.of_batches(table.schema, table.to_batches(max_chunksize=chunk))


def _assert_matches_numpy(profile: NumericProfile, column: pd.Series) -> None:
    values = column.dropna().to_numpy(dtype=np.float64)
    assert profile.count == len(column)
    assert profile.null_count == int(column.isna().sum())
    assert profile.finite_count == values.size
    assert profile.minimum == values.min()
    assert profile.maximum == values.max()
    assert profile.mean == pytest.approx(values.mean(), rel=1e-9)
    assert profile.std == pytest.approx(values.std(ddof=0), rel=1e-9)
    for key, estimate in profile.quantiles().items():
        q = int(key[1:]) / 100
        exact = float(np.quantile(values, q, method="lower"))
        assert estimate is not None
        assert abs(estimate - exact) <= BOUND * abs(exact), (key, estimate, exact)


@pytest.mark.parametrize("column", ["x", "counts", "heavy"])
def test_numeric_profile_equals_numpy(column: str) -> None:
    frame = _seeded_frame()
    profile = _profile_of(frame).columns[column]
    assert isinstance(profile, NumericProfile)
    _assert_matches_numpy(profile, frame[column])
    assert profile.is_integer is (column == "counts")


def test_stored_profile_equals_numpy(sqlite_project: Project) -> None:
    """The profile survives its trip through the metadata store (JSON) unchanged."""
    frame = _seeded_frame(rows=5_000, seed=3)
    version = data.add(frame, "numbers", project=sqlite_project)
    stored = version.profile
    for column in ("x", "counts", "heavy"):
        numeric = stored.columns[column]
        assert isinstance(numeric, NumericProfile)
        _assert_matches_numpy(numeric, frame[column])
    # Read as one batch, like `add` does: the same numbers, bit for bit, after the JSON trip.
    assert stored.to_dict() == _profile_of(frame, chunk=BATCH_ROWS).to_dict()


def test_categorical_frequencies_equal_pandas_value_counts() -> None:
    frame = _seeded_frame()
    profile = _profile_of(frame).columns["color"]
    assert isinstance(profile, CategoricalProfile)
    expected = frame["color"].value_counts(dropna=True).to_dict()
    assert profile.frequencies == expected
    assert profile.null_count == int(frame["color"].isna().sum())
    assert profile.count == len(frame)
    assert profile.distinct == 4
    assert profile.top(2) == sorted(expected.items(), key=lambda kv: -kv[1])[:2]
    assert profile.null_share == pytest.approx(frame["color"].isna().mean(), rel=1e-12)


def test_boolean_levels_are_named_true_and_false() -> None:
    table = pa.table({"flag": pa.array([True, False, True, None, True])})
    profile = TableProfile.of_batches(table.schema, table.to_batches()).columns["flag"]
    assert isinstance(profile, CategoricalProfile)
    assert profile.frequencies == {"true": 3, "false": 1}
    assert profile.null_count == 1


def test_temporal_profile_range() -> None:
    stamps = pd.to_datetime(
        ["2024-03-01 12:00", None, "2023-12-31 23:59", "2024-01-15 00:00"], format="%Y-%m-%d %H:%M"
    )
    table = pa.Table.from_pandas(pd.DataFrame({"at": stamps}), preserve_index=False)
    profile = TableProfile.of_batches(table.schema, table.to_batches(max_chunksize=2))
    at = profile.columns["at"]
    assert isinstance(at, TemporalProfile)
    assert (at.minimum, at.maximum) == ("2023-12-31T23:59:00", "2024-03-01T12:00:00")
    assert (at.count, at.null_count) == (4, 1)


def test_histogram_counts_sum_to_finite_values() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(0, 1, 5_000)
    values[:7] = np.nan
    values[7:10] = np.inf
    values[10:12] = -np.inf
    array = pa.array(values, from_pandas=False)  # NaN stays a value, not a null
    array = pa.concat_arrays([array, pa.array([None, None], type=pa.float64())])
    table = pa.table({"v": array})
    profile = TableProfile.of_batches(table.schema, table.to_batches(max_chunksize=1_000))
    numeric = profile.columns["v"]
    assert isinstance(numeric, NumericProfile)
    assert (numeric.nan_count, numeric.inf_count, numeric.null_count) == (7, 5, 2)
    assert numeric.finite_count == 5_000 - 12
    histogram = numeric.histogram()
    assert len(histogram["edges"]) == len(histogram["counts"]) + 1
    assert histogram["edges"] == sorted(histogram["edges"])
    assert histogram["edges"][0] == numeric.minimum
    assert histogram["edges"][-1] == numeric.maximum
    assert sum(histogram["counts"]) == numeric.finite_count
    finite = values[np.isfinite(values)]
    assert numeric.mean == pytest.approx(finite.mean(), rel=1e-9)


def test_small_integer_range_gets_one_bin_per_value_with_exact_counts() -> None:
    """`histogram_edges` promises one bin per integer over a small range: each bin must
    then count exactly the rows holding that integer, also for integers far from zero
    (years, codes), where the sketch's buckets are wider than one."""
    rng = np.random.default_rng(11)
    for low in (0, 2015):
        values = rng.integers(low, low + 10, 2_000)
        table = pa.table({"v": values})
        numeric = TableProfile.of_batches(table.schema, table.to_batches()).columns["v"]
        assert isinstance(numeric, NumericProfile)
        histogram = numeric.histogram()
        assert histogram["edges"] == [low - 0.5 + i for i in range(11)]
        exact = np.bincount(values - low, minlength=10).tolist()
        assert histogram["counts"] == exact, f"integers {low}..{low + 9}"


def test_empty_and_all_null_columns() -> None:
    table = pa.table({"v": pa.array([None, None], type=pa.float64())})
    numeric = TableProfile.of_batches(table.schema, table.to_batches()).columns["v"]
    assert isinstance(numeric, NumericProfile)
    assert numeric.std is None
    assert numeric.minimum is None
    assert all(value is None for value in numeric.quantiles().values())
    assert numeric.histogram() == {"edges": [], "counts": []}
    assert numeric.null_share == 1.0


def test_profile_round_trips_through_its_dict() -> None:
    profile = _profile_of(_seeded_frame(rows=3_000))
    again = TableProfile.from_dict(profile.to_dict())
    assert again.to_dict() == profile.to_dict()
    assert again.num_rows == 3_000


def test_merging_profiles_of_different_columns_is_refused() -> None:
    one = TableProfile.of_batches(pa.schema([("a", pa.int64())]), [])
    other = TableProfile.of_batches(pa.schema([("b", pa.int64())]), [])
    with pytest.raises(ValueError, match="different columns"):
        one.merge(other)


# -- properties --------------------------------------------------------------------------

_finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
_maybe_null = st.one_of(st.none(), _finite)


def _close(a: float | None, b: float | None, scale: float) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * max(1.0, scale))


# Values the float arithmetic of a profile may reorder; the rest must match exactly.
_ROUNDED = ("mean", "m2", "std")


def _assert_same_numeric(merged: dict[str, Any], whole: dict[str, Any], scale: float) -> None:
    for key in _ROUNDED:
        assert _close(merged[key], whole[key], scale * scale if key == "m2" else scale), key
    exact = {k: v for k, v in merged.items() if k not in _ROUNDED}
    assert exact == {k: v for k, v in whole.items() if k not in _ROUNDED}


@PROPERTY_SETTINGS
@given(
    rows=st.lists(
        st.tuples(
            _maybe_null,
            st.one_of(st.none(), st.integers(min_value=-50, max_value=50)),
            st.integers(min_value=-(10**9), max_value=10**9),
            st.sampled_from(["a", "b", "c", None]),
        ),
        min_size=1,
        max_size=200,
    ),
    cut=st.integers(min_value=0, max_value=200),
)
def test_merged_halves_equal_whole(
    rows: list[tuple[float | None, int | None, int, str | None]], cut: int
) -> None:
    cut = min(cut, len(rows))
    floats, narrow, wide, labels = (list(column) for column in zip(*rows, strict=True))
    table = pa.table(
        {
            "v": pa.array(floats, pa.float64()),
            "narrow": pa.array(narrow, pa.int64()),
            "wide": pa.array(wide, pa.int64()),
            "level": labels,
        }
    )
    whole = TableProfile.of_batches(table.schema, table.to_batches())
    merged = TableProfile.of_batches(table.schema, table.slice(0, cut).to_batches())
    merged.merge(TableProfile.of_batches(table.schema, table.slice(cut).to_batches()))

    assert merged.num_rows == whole.num_rows == len(rows)
    for name, values in (("v", floats), ("narrow", narrow), ("wide", wide)):
        m, w = merged.columns[name], whole.columns[name]
        assert isinstance(m, NumericProfile) and isinstance(w, NumericProfile)
        scale = max((abs(v) for v in values if v is not None), default=1.0)
        _assert_same_numeric(m.to_dict(), w.to_dict(), scale)
        assert m.quantiles() == w.quantiles()
        assert m.histogram() == w.histogram()
    assert merged.columns["level"].to_dict() == whole.columns["level"].to_dict()


_magnitude = st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=1e9))
_signed = st.tuples(_magnitude, st.booleans()).map(lambda p: -p[0] if p[1] else p[0])


@PROPERTY_SETTINGS
@given(
    values=st.lists(_signed, min_size=1, max_size=300),
    qs=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=5),
)
def test_sketch_quantiles_are_within_relative_accuracy(
    values: list[float], qs: list[float]
) -> None:
    sketch = QuantileSketch()
    sketch.add(np.asarray(values, dtype=np.float64))
    assert sketch.count == len(values)
    ordered = np.sort(np.asarray(values))
    for q, estimate in zip(qs, sketch.quantiles(qs), strict=True):
        exact = float(np.quantile(ordered, q, method="lower"))
        assert ordered[math.floor(q * (len(values) - 1))] == exact
        assert estimate is not None
        assert abs(estimate - exact) <= BOUND * abs(exact), (q, estimate, exact)


@PROPERTY_SETTINGS
@given(
    left=st.lists(_signed, max_size=100),
    right=st.lists(_signed, max_size=100),
)
def test_merged_sketches_equal_sketch_of_all_values(left: list[float], right: list[float]) -> None:
    a, b, whole = QuantileSketch(), QuantileSketch(), QuantileSketch()
    a.add(np.asarray(left, dtype=np.float64))
    b.add(np.asarray(right, dtype=np.float64))
    whole.add(np.asarray(left + right, dtype=np.float64))
    a.merge(b)
    assert a.to_dict() == whole.to_dict()
    assert a.quantiles(list(QUANTILES)) == whole.quantiles(list(QUANTILES))
    assert QuantileSketch.from_dict(a.to_dict()).to_dict() == a.to_dict()


@PROPERTY_SETTINGS
@given(
    values=st.lists(
        st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=32)),
        min_size=1,
        max_size=200,
    )
)
def test_histogram_sums_to_finite_non_null_count(values: list[float | None]) -> None:
    array = pa.array(values, pa.float64(), from_pandas=False)
    table = pa.table({"v": array})
    numeric = TableProfile.of_batches(table.schema, table.to_batches()).columns["v"]
    assert isinstance(numeric, NumericProfile)
    finite = [v for v in values if v is not None and math.isfinite(v)]
    assert numeric.finite_count == len(finite)
    assert sum(numeric.histogram()["counts"]) == len(finite)
    assert numeric.null_count == sum(v is None for v in values)
    assert numeric.nan_count == sum(v is not None and math.isnan(v) for v in values)


def test_sketch_rejects_bad_accuracy_and_mismatched_merge() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        QuantileSketch(0.0)
    with pytest.raises(ValueError, match="different accuracy"):
        QuantileSketch(0.01).merge(QuantileSketch(0.02))
    assert QuantileSketch().quantiles([0.5]) == [None]
