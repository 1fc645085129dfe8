"""Column and table profiles: the statistics a dataset version carries, computed in one pass.

A profile is built batch by batch from Arrow record batches and two profiles of the same
columns merge exactly (counts, min/max, mean and variance by Chan's formula, level counts,
quantile sketches), so a 10 GB file is profiled in bounded memory and partial profiles from
several workers combine. Drift detection compares against these profiles later, which is why
numbers carry a histogram over fixed edges and categories carry their level frequencies.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from shipyard.data.sketch import (
    DenseCounts,
    QuantileSketch,
    weighted_histogram,
    weighted_quantiles,
)

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HISTOGRAM_BINS = 20
# Past this many distinct values a text column stops counting levels: it is not a category.
MAX_TRACKED_LEVELS = 10_000
# Integer columns spanning fewer values than this are counted exactly, value by value (codes,
# years, ratings): their histograms and quantiles are then exact, not sketched.
EXACT_INTEGER_SPAN = 1_024


def column_kind(arrow_type: pa.DataType) -> str:
    """Which profile fits a column of this Arrow type."""
    if pat.is_integer(arrow_type) or pat.is_floating(arrow_type) or pat.is_decimal(arrow_type):
        return "numeric"
    if (
        pat.is_boolean(arrow_type)
        or pat.is_string(arrow_type)
        or pat.is_large_string(arrow_type)
        or pat.is_dictionary(arrow_type)
        or str(arrow_type) == "string_view"
    ):
        return "categorical"
    if pat.is_timestamp(arrow_type) or pat.is_date(arrow_type):
        return "temporal"
    return "other"


class ColumnProfile(ABC):
    """Statistics of one column; subclasses by kind of value."""

    kind: ClassVar[str]

    def __init__(self) -> None:
        self.count = 0
        self.null_count = 0

    def update(self, array: pa.Array) -> None:
        self.count += len(array)
        self.null_count += array.null_count
        if array.null_count < len(array):
            self._update_values(array.drop_null() if array.null_count else array)

    @abstractmethod
    def _update_values(self, values: pa.Array) -> None:
        """Fold in a batch of non-null values."""

    def merge(self, other: ColumnProfile) -> None:
        if type(other) is not type(self):
            raise ValueError(f"cannot merge a {other.kind} profile into a {self.kind} profile")
        self.count += other.count
        self.null_count += other.null_count
        self._merge_values(other)

    @abstractmethod
    def _merge_values(self, other: Any) -> None:
        """Fold in another profile of the same kind."""

    @property
    def null_share(self) -> float:
        return self.null_count / self.count if self.count else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "count": self.count, "null_count": self.null_count}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnProfile:
        profile_class = _KINDS[data["kind"]]
        profile = profile_class.__new__(profile_class)
        ColumnProfile.__init__(profile)
        profile.count, profile.null_count = int(data["count"]), int(data["null_count"])
        profile._load(data)
        return profile

    @abstractmethod
    def _load(self, data: dict[str, Any]) -> None:
        """Restore kind-specific state from `to_dict` output."""

    def summary(self) -> dict[str, Any]:
        """Readable statistics (what `data show` prints)."""
        return {"count": self.count, "null_share": self.null_share}


class NumericProfile(ColumnProfile):
    kind = "numeric"

    def __init__(self) -> None:
        super().__init__()
        self.nan_count = 0
        self.inf_count = 0
        self.finite_count = 0
        self.minimum: float | None = None
        self.maximum: float | None = None
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean
        self.is_integer = True
        self.sketch = QuantileSketch()
        self.integer_counts: DenseCounts | None = DenseCounts()

    def _update_values(self, values: pa.Array) -> None:
        integer = pat.is_integer(values.type)
        if not integer:
            self.is_integer = False
            self.integer_counts = None
        numbers = _as_float64(values)
        if not integer:  # integers converted to float64 are always finite
            finite = np.isfinite(numbers)
            if not finite.all():
                nan = np.isnan(numbers)
                self.nan_count += int(nan.sum())
                self.inf_count += int((~finite & ~nan).sum())
                numbers = numbers[finite]
        if numbers.size == 0:
            return
        batch_mean = float(numbers.mean())
        deviations = numbers - batch_mean
        batch_m2 = float(np.square(deviations, out=deviations).sum())
        self._combine(
            numbers.size, batch_mean, batch_m2, float(numbers.min()), float(numbers.max())
        )
        self.sketch.add(numbers)
        if integer and self._keeps_integer_counts():
            assert self.integer_counts is not None
            self.integer_counts.add_indices(numbers.astype(np.int64))

    def _keeps_integer_counts(self) -> bool:
        """Whether exact per-value counts still fit; once they do not, they are dropped."""
        span = (self.maximum or 0.0) - (self.minimum or 0.0)
        if not self.is_integer or span >= EXACT_INTEGER_SPAN:
            self.integer_counts = None
        return self.integer_counts is not None

    def _combine(self, n: int, mean: float, m2: float, low: float, high: float) -> None:
        total = self.finite_count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.finite_count * n / total
        self.finite_count = total
        self.minimum = low if self.minimum is None else min(self.minimum, low)
        self.maximum = high if self.maximum is None else max(self.maximum, high)

    def _merge_values(self, other: NumericProfile) -> None:
        self.nan_count += other.nan_count
        self.inf_count += other.inf_count
        self.is_integer = self.is_integer and other.is_integer
        if other.finite_count and other.minimum is not None and other.maximum is not None:
            self._combine(other.finite_count, other.mean, other.m2, other.minimum, other.maximum)
            self.sketch.merge(other.sketch)
        if other.integer_counts is None:
            self.integer_counts = None
        elif self._keeps_integer_counts():
            assert self.integer_counts is not None
            self.integer_counts.add_counts(other.integer_counts.offset, other.integer_counts.counts)

    @property
    def std(self) -> float | None:
        return math.sqrt(self.m2 / self.finite_count) if self.finite_count else None

    def histogram_edges(self, bins: int = HISTOGRAM_BINS) -> list[float]:
        """Fixed edges: one bin per integer over a small integer range, else equal widths."""
        if self.minimum is None or self.maximum is None:
            return []
        low, high = self.minimum, self.maximum
        if self.is_integer and high - low < bins:
            return [float(x) for x in np.arange(low - 0.5, high + 1.0, 1.0)]
        if low == high:
            return [low - 0.5, high + 0.5]
        return [float(x) for x in np.linspace(low, high, bins + 1)]

    def histogram(self, edges: list[float] | None = None) -> dict[str, list[Any]]:
        edges = edges if edges is not None else self.histogram_edges()
        if not edges or self.finite_count == 0:
            return {"edges": edges, "counts": [0] * max(len(edges) - 1, 0)}
        counts = weighted_histogram(*self._distribution(), np.asarray(edges, dtype=np.float64))
        return {"edges": edges, "counts": counts.tolist()}

    def _distribution(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """(value, count) pairs, ascending: exact for narrow integer columns, else sketched."""
        exact = self.integer_counts
        if exact is not None and self.is_integer and exact.counts.size:
            values = np.arange(exact.counts.size, dtype=np.float64) + exact.offset
            keep = exact.counts > 0
            return values[keep], exact.counts[keep]
        return self.sketch.centroids()

    def quantiles(self) -> dict[str, float | None]:
        values = weighted_quantiles(*self._distribution(), list(QUANTILES))
        low = self.minimum if self.minimum is not None else -math.inf
        high = self.maximum if self.maximum is not None else math.inf
        # The sketch is accurate to a relative error; the exact range still bounds it.
        clamped = [None if v is None else min(max(v, low), high) for v in values]
        return {f"p{round(q * 100)}": v for q, v in zip(QUANTILES, clamped, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "nan_count": self.nan_count,
            "inf_count": self.inf_count,
            "finite_count": self.finite_count,
            "min": self.minimum,
            "max": self.maximum,
            "mean": self.mean,
            "m2": self.m2,
            "is_integer": self.is_integer,
            "sketch": self.sketch.to_dict(),
            "integer_counts": (
                self.integer_counts.to_dict() if self.integer_counts is not None else None
            ),
            # Derived, stored for readers that do not load this class (dashboards, SQL).
            "std": self.std,
            "quantiles": self.quantiles(),
            "histogram": self.histogram(),
        }

    def _load(self, data: dict[str, Any]) -> None:
        self.nan_count = int(data["nan_count"])
        self.inf_count = int(data["inf_count"])
        self.finite_count = int(data["finite_count"])
        self.minimum, self.maximum = data["min"], data["max"]
        self.mean, self.m2 = float(data["mean"]), float(data["m2"])
        self.is_integer = bool(data["is_integer"])
        self.sketch = QuantileSketch.from_dict(data["sketch"])
        counts = data.get("integer_counts")
        self.integer_counts = DenseCounts.from_dict(counts) if counts is not None else None

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "min": self.minimum,
            "max": self.maximum,
            "mean": self.mean if self.finite_count else None,
            "std": self.std,
            **self.quantiles(),
        }


class CategoricalProfile(ColumnProfile):
    kind = "categorical"

    def __init__(self) -> None:
        super().__init__()
        self.frequencies: dict[str, int] = {}
        self.overflow = False

    def _update_values(self, values: pa.Array) -> None:
        if self.overflow:
            return
        counted = pc.value_counts(values)
        levels = counted.field("values").to_pylist()
        counts = counted.field("counts").to_pylist()
        for level, count in zip(levels, counts, strict=True):
            key = _level_key(level)
            self.frequencies[key] = self.frequencies.get(key, 0) + count
        self._check_overflow()

    def _check_overflow(self) -> None:
        if len(self.frequencies) > MAX_TRACKED_LEVELS:
            self.overflow = True
            self.frequencies = {}

    def _merge_values(self, other: CategoricalProfile) -> None:
        if self.overflow or other.overflow:
            self.overflow, self.frequencies = True, {}
            return
        for level, count in other.frequencies.items():
            self.frequencies[level] = self.frequencies.get(level, 0) + count
        self._check_overflow()

    @property
    def distinct(self) -> int | None:
        """Number of levels, or None when there were too many to count."""
        return None if self.overflow else len(self.frequencies)

    def top(self, n: int = 10) -> list[tuple[str, int]]:
        return sorted(self.frequencies.items(), key=lambda item: (-item[1], item[0]))[:n]

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "overflow": self.overflow,
            "frequencies": dict(sorted(self.frequencies.items())),
        }

    def _load(self, data: dict[str, Any]) -> None:
        self.overflow = bool(data["overflow"])
        self.frequencies = {str(k): int(v) for k, v in data["frequencies"].items()}

    def summary(self) -> dict[str, Any]:
        top = ", ".join(f"{level} ({count})" for level, count in self.top(5))
        return {**super().summary(), "distinct": self.distinct, "top": top}


class TemporalProfile(ColumnProfile):
    """Dates and timestamps: range and nulls, kept as ISO strings."""

    kind = "temporal"

    def __init__(self) -> None:
        super().__init__()
        self.minimum: str | None = None
        self.maximum: str | None = None

    def _update_values(self, values: pa.Array) -> None:
        bounds = pc.min_max(values)
        self._widen(_iso(bounds["min"].as_py()), _iso(bounds["max"].as_py()))

    def _widen(self, low: str | None, high: str | None) -> None:
        # ISO 8601 strings of one column share a format, so they order like the times.
        if low is not None:
            self.minimum = low if self.minimum is None else min(self.minimum, low)
        if high is not None:
            self.maximum = high if self.maximum is None else max(self.maximum, high)

    def _merge_values(self, other: TemporalProfile) -> None:
        self._widen(other.minimum, other.maximum)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "min": self.minimum, "max": self.maximum}

    def _load(self, data: dict[str, Any]) -> None:
        self.minimum, self.maximum = data["min"], data["max"]

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "min": self.minimum, "max": self.maximum}


class OtherProfile(ColumnProfile):
    """Nested or binary columns: only counts and nulls."""

    kind = "other"

    def _update_values(self, values: pa.Array) -> None:
        return

    def _merge_values(self, other: OtherProfile) -> None:
        return

    def _load(self, data: dict[str, Any]) -> None:
        return


def _as_float64(values: pa.Array) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Non-null numbers as float64, without pyarrow's pandas-based conversion where possible.

    pyarrow's `to_numpy` imports pandas (a second or so the first time); integer and float
    arrays without nulls are plain buffers that numpy reads in place and converts the same way.
    """
    kind = values.type
    if len(values) and not values.null_count and (pat.is_integer(kind) or pat.is_floating(kind)):
        dtype = np.dtype(kind.to_pandas_dtype())  # a numpy type; pandas stays unloaded
        data = values.buffers()[1]
        raw = np.frombuffer(data, dtype, len(values), values.offset * dtype.itemsize)
        return np.asarray(raw, dtype=np.float64)
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)


_KINDS: dict[str, type[ColumnProfile]] = {
    cls.kind: cls for cls in (NumericProfile, CategoricalProfile, TemporalProfile, OtherProfile)
}


def _level_key(level: Any) -> str:
    if isinstance(level, bool):
        return "true" if level else "false"
    return str(level)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


class TableProfile:
    """The profile of a whole table: row count and one profile per column, in order."""

    def __init__(self, columns: dict[str, ColumnProfile]) -> None:
        self.columns = columns

    @classmethod
    def empty(cls, schema: pa.Schema) -> TableProfile:
        return cls({field.name: _KINDS[column_kind(field.type)]() for field in schema})

    @classmethod
    def of_batches(cls, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> TableProfile:
        profile = cls.empty(schema)
        for batch in batches:
            profile.update(batch)
        return profile

    @property
    def num_rows(self) -> int:
        return next(iter(self.columns.values())).count if self.columns else 0

    def update(self, batch: pa.RecordBatch) -> None:
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            self.columns[name].update(column)

    def merge(self, other: TableProfile) -> None:
        if list(other.columns) != list(self.columns):
            raise ValueError("cannot merge profiles of tables with different columns")
        for name, column in other.columns.items():
            self.columns[name].merge(column)

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_rows": self.num_rows,
            "columns": {name: column.to_dict() for name, column in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableProfile:
        return cls(
            {name: ColumnProfile.from_dict(column) for name, column in data["columns"].items()}
        )
