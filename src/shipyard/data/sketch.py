"""A mergeable quantile sketch with relative accuracy (the DDSketch construction), vectorised.

Values are counted in logarithmic buckets: bucket i holds values in (gamma^(i-1), gamma^i],
so any quantile read back is within `relative_accuracy` of a true value of that rank. Two
sketches of the same accuracy merge by adding counts, which is what makes dataset profiles
mergeable across batches, files and workers. Reference: Masson, Rim, Lee, "DDSketch: a fast
and fully-mergeable quantile sketch with relative-error guarantees", VLDB 2019.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

DEFAULT_RELATIVE_ACCURACY = 0.005
# Magnitudes below this count as zero; it bounds the number of buckets.
MIN_MAGNITUDE = 1e-9

FloatArray = npt.NDArray[np.float64]


@dataclass
class DenseCounts:
    """Dense bucket counts starting at bucket index `offset`."""

    offset: int = 0
    counts: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def add_indices(self, indices: npt.NDArray[np.int64]) -> None:
        if indices.size == 0:
            return
        low = int(indices.min())
        self.add_counts(low, np.bincount(indices - low).astype(np.int64))

    def add_counts(self, offset: int, counts: npt.NDArray[np.int64]) -> None:
        if counts.size == 0:
            return
        if self.counts.size == 0:
            self.offset, self.counts = offset, counts.copy()
            return
        low = min(self.offset, offset)
        high = max(self.offset + self.counts.size, offset + counts.size)
        merged = np.zeros(high - low, dtype=np.int64)
        merged[self.offset - low : self.offset - low + self.counts.size] += self.counts
        merged[offset - low : offset - low + counts.size] += counts
        self.offset, self.counts = low, merged

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def to_dict(self) -> dict[str, Any]:
        nonzero = np.flatnonzero(self.counts)
        if nonzero.size == 0:
            return {"offset": 0, "counts": []}
        first, last = int(nonzero[0]), int(nonzero[-1])
        return {"offset": self.offset + first, "counts": self.counts[first : last + 1].tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DenseCounts:
        return cls(int(data["offset"]), np.asarray(data["counts"], dtype=np.int64))


class QuantileSketch:
    """Mergeable quantiles over finite floats, accurate to a relative error."""

    def __init__(self, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> None:
        if not 0 < relative_accuracy < 1:
            raise ValueError("relative_accuracy must be between 0 and 1")
        self.relative_accuracy = relative_accuracy
        self.gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._log_gamma = math.log(self.gamma)
        self.positive = DenseCounts()
        self.negative = DenseCounts()
        self.zero_count = 0

    @property
    def count(self) -> int:
        return self.positive.total + self.negative.total + self.zero_count

    def add(self, values: FloatArray) -> None:
        """Count finite values (the caller drops nulls, NaN and infinities)."""
        # One pass per step over the whole batch, with no copies in the common case (no zeros,
        # one sign): magnitudes are computed once and turned into bucket indices in place.
        magnitude = np.abs(values)
        counted = magnitude >= MIN_MAGNITUDE  # False for zeros, and for NaN as before
        kept = int(np.count_nonzero(counted))
        if kept < values.size:
            self.zero_count += int(np.count_nonzero(magnitude < MIN_MAGNITUDE))
            magnitude, values = magnitude[counted], values[counted]
        if kept == 0:
            return
        indices = self._indices_in_place(magnitude)
        negative = values < 0
        negatives = int(np.count_nonzero(negative))
        if negatives == 0:
            self.positive.add_indices(indices)
        elif negatives == kept:
            self.negative.add_indices(indices)
        else:
            self._add_both_signs(indices, negative)

    def _add_both_signs(
        self, indices: npt.NDArray[np.int64], negative: npt.NDArray[np.bool_]
    ) -> None:
        """What `add_indices` on each sign's part would do, in one bincount without masking.

        Splitting a batch by a mixed sign mask is several times slower than counting: negative
        values' buckets are shifted past the positive ones, counted together, then each half
        is trimmed to its first and last non-empty bucket, as `add_indices` would store it.
        """
        low = int(indices.min())
        span = int(indices.max()) - low + 1
        indices -= low
        indices += negative * span
        counts = np.bincount(indices, minlength=2 * span).astype(np.int64)
        for store, part in ((self.positive, counts[:span]), (self.negative, counts[span:])):
            nonzero = np.flatnonzero(part)
            if nonzero.size:
                first, last = int(nonzero[0]), int(nonzero[-1])
                store.add_counts(low + first, part[first : last + 1])

    def _indices(self, magnitudes: FloatArray) -> npt.NDArray[np.int64]:
        return np.ceil(np.log(magnitudes) / self._log_gamma).astype(np.int64)

    def _indices_in_place(self, magnitudes: FloatArray) -> npt.NDArray[np.int64]:
        """`_indices`, the same operations, overwriting `magnitudes` instead of allocating."""
        np.log(magnitudes, out=magnitudes)
        np.divide(magnitudes, self._log_gamma, out=magnitudes)
        np.ceil(magnitudes, out=magnitudes)
        return magnitudes.astype(np.int64)

    def merge(self, other: QuantileSketch) -> None:
        if not math.isclose(other.relative_accuracy, self.relative_accuracy):
            raise ValueError("cannot merge sketches of different accuracy")
        self.positive.add_counts(other.positive.offset, other.positive.counts)
        self.negative.add_counts(other.negative.offset, other.negative.counts)
        self.zero_count += other.zero_count

    def _value(self, index: npt.NDArray[np.int64]) -> FloatArray:
        # The point of bucket i whose relative distance to both bucket edges is equal.
        return np.asarray(2 * np.power(self.gamma, index) / (self.gamma + 1), dtype=np.float64)

    def centroids(self) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        """Every non-empty bucket as (representative value, count), ascending by value."""
        neg_index = np.arange(self.negative.counts.size, dtype=np.int64) + self.negative.offset
        pos_index = np.arange(self.positive.counts.size, dtype=np.int64) + self.positive.offset
        values = np.concatenate(
            [-self._value(neg_index)[::-1], np.zeros(1), self._value(pos_index)]
        )
        counts = np.concatenate(
            [
                self.negative.counts[::-1],
                np.asarray([self.zero_count], dtype=np.int64),
                self.positive.counts,
            ]
        )
        keep = counts > 0
        return values[keep], counts[keep]

    def quantiles(self, qs: list[float]) -> list[float | None]:
        """Approximate quantiles, `None` for an empty sketch."""
        return weighted_quantiles(*self.centroids(), qs)

    def histogram(self, edges: FloatArray) -> npt.NDArray[np.int64]:
        """Counts in the bins given by `edges` (each bucket falls in its representative's bin)."""
        return weighted_histogram(*self.centroids(), edges)

    def to_dict(self) -> dict[str, Any]:
        return {
            "relative_accuracy": self.relative_accuracy,
            "positive": self.positive.to_dict(),
            "negative": self.negative.to_dict(),
            "zero_count": self.zero_count,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantileSketch:
        sketch = cls(float(data["relative_accuracy"]))
        sketch.positive = DenseCounts.from_dict(data["positive"])
        sketch.negative = DenseCounts.from_dict(data["negative"])
        sketch.zero_count = int(data["zero_count"])
        return sketch


def weighted_quantiles(
    values: FloatArray, counts: npt.NDArray[np.int64], qs: list[float]
) -> list[float | None]:
    """Quantiles of ascending `values` seen `counts` times each (lower value at a tie)."""
    if counts.size == 0:
        return [None for _ in qs]
    cumulative = np.cumsum(counts)
    ranks = np.asarray(qs, dtype=np.float64) * (cumulative[-1] - 1)
    positions = np.searchsorted(cumulative, ranks, side="right")
    return [float(v) for v in values[np.minimum(positions, values.size - 1)]]


def weighted_histogram(
    values: FloatArray, counts: npt.NDArray[np.int64], edges: FloatArray
) -> npt.NDArray[np.int64]:
    """Counts of `values` seen `counts` times each, in the bins given by `edges`."""
    clipped = np.clip(values, edges[0], edges[-1])
    hist, _ = np.histogram(clipped, bins=edges, weights=counts)
    rounded: npt.NDArray[np.int64] = np.rint(hist).astype(np.int64)
    return rounded
