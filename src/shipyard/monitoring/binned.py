"""Binned profiles: what drift detection compares, built in one streaming pass, mergeable.

A numeric column is counted on a linear grid anchored at the reference: cell i holds the
values in [anchor + i*width, anchor + (i+1)*width). The width comes from the reference
(std / 1000 for continuous data, so a cell is a thousandth of a standard deviation; 1 for an
integer column, anchored at an integer, so the cells ARE the distinct values and every
statistic computed from them is exact). The current window is counted on the reference's
grid, so the two line up cell for cell. When a column's occupied cells would exceed
`MAX_CELLS`, pairs of cells merge (the width doubles): memory stays bounded whatever the data,
and two profiles of one grid at different widths are brought to the coarser one to compare.

A categorical column counts its levels (`pyarrow.compute.value_counts`), up to `MAX_LEVELS`;
later new levels go to one overflow bucket.

Nulls, NaN and infinities are counted apart and left out of the distributions, as Evidently
drops them before its tests.

`reference_profile` and `current_profile` read Arrow tables or record batches batch by batch
and update the columns of each batch in parallel threads (numpy and pyarrow release the GIL),
so neither side ever needs its raw rows in memory at once.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from shipyard.data.profile import column_kind
from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.data.profile import TableProfile
    from shipyard.data.versions import DatasetVersion

BINNING = "grid-v1"  # the format of these profiles; a stored reference of another is rebuilt
CELLS_PER_STD = 1000  # grid width of continuous data: std / CELLS_PER_STD
MAX_CELLS = 100_000  # occupied span of one numeric column, in cells, before pairs merge
MAX_LEVELS = 1_000  # levels counted per categorical column; the rest share OVERFLOW
OVERFLOW = "(other levels)"
SLICE_ROWS = 262_144  # rows handled at once per column: bounds the temporary arrays

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


# -- the grid ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """Cell i = [anchor + i*width, anchor + (i+1)*width); `exact` when cells are values."""

    anchor: float
    width: float
    integer: bool = False

    @property
    def exact(self) -> bool:
        """Integer data at width 1: each cell holds exactly one value, its left edge."""
        return self.integer and self.width == 1.0

    def coarser(self, factor: int) -> Grid:
        return Grid(self.anchor, self.width * factor, self.integer)

    def to_dict(self) -> dict[str, Any]:
        return {"anchor": self.anchor, "width": self.width, "integer": self.integer}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Grid:
        return cls(float(data["anchor"]), float(data["width"]), bool(data["integer"]))


def grid_for(minimum: float, std: float, integer: bool) -> Grid:
    """The grid of a reference column from its minimum and standard deviation."""
    if integer:
        return Grid(float(math.floor(minimum)), 1.0, True)
    width = std / CELLS_PER_STD
    if not math.isfinite(width) or width <= 0:
        # A constant column: any width works; pick one far below the values' own scale.
        width = max(abs(minimum), 1.0) * 1e-9
    return Grid(float(minimum), float(width), False)


# -- columns ----------------------------------------------------------------------------------


class ColumnBins(ABC):
    """The binned distribution of one column; subclasses by kind."""

    kind: ClassVar[str]

    def __init__(self) -> None:
        self.rows = 0  # every row seen, nulls included
        self.nulls = 0  # nulls, NaN and infinities: left out of the distribution

    @property
    def count(self) -> int:
        """Values in the distribution (rows less nulls)."""
        return self.rows - self.nulls

    def update(self, array: pa.Array | pa.ChunkedArray) -> None:
        chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
        for chunk in chunks:
            for start in range(0, len(chunk), SLICE_ROWS):
                self._update(chunk.slice(start, SLICE_ROWS))

    @abstractmethod
    def _update(self, array: pa.Array) -> None:
        """Fold in one slice of values."""

    @abstractmethod
    def merge(self, other: ColumnBins) -> None:
        """Fold in another profile of the same column."""

    @abstractmethod
    def empty_like(self) -> ColumnBins:
        """A profile of no rows that counts on the same grid / in the same way."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rows": self.rows, "nulls": self.nulls}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnBins:
        kinds: dict[str, type[ColumnBins]] = {"numeric": NumericBins, "categorical": LevelCounts}
        column = kinds[data["kind"]]._load(data)
        column.rows, column.nulls = int(data["rows"]), int(data["nulls"])
        return column

    @classmethod
    @abstractmethod
    def _load(cls, data: Mapping[str, Any]) -> ColumnBins:
        """The kind-specific state from `to_dict` output."""


class NumericBins(ColumnBins):
    """Counts per occupied grid cell, plus exact count, min, max, and sums for the std.

    The sums are of (x - anchor), which keeps the variance from cancelling for data far from
    zero; the grid is fixed by the reference (or by the first batch when none is given).
    """

    kind = "numeric"

    def __init__(self, grid: Grid | None = None, integer: bool = False) -> None:
        super().__init__()
        self.grid = grid
        self.integer = integer if grid is None else grid.integer
        self.offset = 0
        self.counts: IntArray = np.zeros(0, dtype=np.int64)
        self.minimum: float | None = None
        self.maximum: float | None = None
        self.sum = 0.0
        self.sumsq = 0.0

    # -- reading values

    def _update(self, array: pa.Array) -> None:
        self.rows += len(array)
        values = _floats(array)  # non-null; NaN and infinities still in
        if self.grid is None:
            finite = values[np.isfinite(values)]
            if not finite.size:
                self.nulls += len(array)
                return
            self.grid = grid_for(float(finite.min()), float(finite.std()), self.integer)
        shifted = values - self.grid.anchor
        total = float(shifted.sum())
        if not math.isfinite(total):  # NaN or an infinity somewhere: one more pass drops them
            keep = np.isfinite(shifted)
            values, shifted = values[keep], shifted[keep]
            total = float(shifted.sum())
        self.nulls += len(array) - values.size
        if values.size:
            self._add(values, shifted, total)

    def _add(self, values: FloatArray, shifted: FloatArray, total: float) -> None:
        """Count finite values; `shifted` (values - anchor) is overwritten."""
        assert self.grid is not None
        low, high = float(values.min()), float(values.max())
        self.sum += total
        self.sumsq += float(np.einsum("i,i->", shifted, shifted))  # BLAS dot: slower here
        self.minimum = low if self.minimum is None else min(self.minimum, low)
        self.maximum = high if self.maximum is None else max(self.maximum, high)
        # floor((x - a) / w) is monotone in x, so the extreme cells are those of min and max.
        self._fit(self._cell(low), self._cell(high))
        # The same operations as `_cell`, in place: a value always lands in the same cell.
        first = self._cell(low)
        shifted /= self.grid.width
        np.floor(shifted, out=shifted)
        shifted -= first  # integral floats: exact
        self._add_counts(first, np.bincount(shifted.astype(np.intp)).astype(np.int64))

    def _cell(self, value: float) -> int:
        assert self.grid is not None
        return math.floor((value - self.grid.anchor) / self.grid.width)

    def _fit(self, first: int, last: int) -> None:
        """Coarsen until the occupied span, with cells first..last added, fits MAX_CELLS."""
        assert self.grid is not None
        low = first if not self.counts.size else min(first, self.offset)
        high = last if not self.counts.size else max(last, self.offset + self.counts.size - 1)
        factor = 1
        while _floor_div(high, factor) - _floor_div(low, factor) + 1 > MAX_CELLS:
            factor *= 2
        if factor > 1:
            self.coarsen(factor)

    def coarsen(self, factor: int) -> None:
        """Merge every `factor` consecutive cells (a power of two) into one."""
        assert self.grid is not None
        if factor == 1:
            return
        self.grid = self.grid.coarser(factor)
        if not self.counts.size:
            self.offset = _floor_div(self.offset, factor)
            return
        start = _floor_div(self.offset, factor)
        cells = np.arange(self.offset, self.offset + self.counts.size, dtype=np.int64)
        merged = np.bincount(cells // factor - start, weights=self.counts)
        self.offset, self.counts = start, np.rint(merged).astype(np.int64)

    def _add_counts(self, offset: int, counts: IntArray) -> None:
        if not counts.size:
            return
        if not self.counts.size:
            self.offset, self.counts = offset, counts
            return
        low = min(self.offset, offset)
        high = max(self.offset + self.counts.size, offset + counts.size)
        merged = np.zeros(high - low, dtype=np.int64)
        merged[self.offset - low : self.offset - low + self.counts.size] += self.counts
        merged[offset - low : offset - low + counts.size] += counts
        self.offset, self.counts = low, merged

    # -- combining

    def merge(self, other: ColumnBins) -> None:
        if not isinstance(other, NumericBins):
            raise InvalidInput(f"cannot merge a {other.kind} profile into a numeric one")
        if other.grid is None or not other.count:
            self.rows, self.nulls = self.rows + other.rows, self.nulls + other.nulls
            return
        if self.grid is None:
            self.grid = other.grid
        if (self.grid.anchor, self.grid.integer) != (other.grid.anchor, other.grid.integer):
            raise InvalidInput("cannot merge numeric profiles counted on different grids")
        other = other.at_width(max(self.grid.width, other.grid.width))
        assert other.grid is not None
        self.coarsen(round(other.grid.width / self.grid.width))
        self.rows, self.nulls = self.rows + other.rows, self.nulls + other.nulls
        self.sum, self.sumsq = self.sum + other.sum, self.sumsq + other.sumsq
        for bound in (other.minimum, other.maximum):
            assert bound is not None
            self.minimum = bound if self.minimum is None else min(self.minimum, bound)
            self.maximum = bound if self.maximum is None else max(self.maximum, bound)
        self._add_counts(other.offset, other.counts)
        self._fit(self.offset, self.offset + self.counts.size - 1)

    def at_width(self, width: float) -> NumericBins:
        """A copy counted at `width` (a power-of-two multiple of this grid's width)."""
        assert self.grid is not None
        copy = NumericBins(self.grid, self.integer)
        copy.rows, copy.nulls, copy.offset, copy.counts = (
            self.rows,
            self.nulls,
            self.offset,
            self.counts,  # coarsen replaces the array, never writes into it
        )
        copy.minimum, copy.maximum, copy.sum, copy.sumsq = (
            self.minimum,
            self.maximum,
            self.sum,
            self.sumsq,
        )
        copy.coarsen(round(width / self.grid.width))
        return copy

    def empty_like(self) -> NumericBins:
        return NumericBins(self.grid, self.integer)

    # -- reading back

    @property
    def mean(self) -> float | None:
        if not self.count or self.grid is None:
            return None
        return self.grid.anchor + self.sum / self.count

    @property
    def std(self) -> float | None:
        """Population standard deviation (numpy's default, Evidently's norm)."""
        if not self.count:
            return None
        mean = self.sum / self.count
        return math.sqrt(max(self.sumsq / self.count - mean * mean, 0.0))

    def values(self) -> tuple[FloatArray, IntArray]:
        """Occupied cells as (representative value, count), ascending.

        The value is the cell's left edge on an exact integer grid (the value itself), its
        centre otherwise, clipped to the observed range.
        """
        if self.grid is None or not self.counts.size:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        occupied = np.flatnonzero(self.counts)
        shift = 0.0 if self.grid.exact else 0.5
        values = self.grid.anchor + (occupied + self.offset + shift) * self.grid.width
        assert self.minimum is not None and self.maximum is not None
        return np.clip(values, self.minimum, self.maximum), self.counts[occupied]

    @property
    def occupied(self) -> int:
        return int(np.count_nonzero(self.counts))

    def to_dict(self) -> dict[str, Any]:
        occupied = np.flatnonzero(self.counts)
        first, last = (int(occupied[0]), int(occupied[-1]) + 1) if occupied.size else (0, 0)
        return {
            **super().to_dict(),
            "grid": self.grid.to_dict() if self.grid is not None else None,
            "integer": self.integer,
            "offset": self.offset + first,
            "counts": self.counts[first:last].tolist(),
            "min": self.minimum,
            "max": self.maximum,
            "sum": self.sum,
            "sumsq": self.sumsq,
        }

    @classmethod
    def _load(cls, data: Mapping[str, Any]) -> NumericBins:
        grid = Grid.from_dict(data["grid"]) if data.get("grid") else None
        column = cls(grid, bool(data["integer"]))
        column.offset = int(data["offset"])
        column.counts = np.asarray(data["counts"], dtype=np.int64)
        column.minimum, column.maximum = data["min"], data["max"]
        column.sum, column.sumsq = float(data["sum"]), float(data["sumsq"])
        return column


class LevelCounts(ColumnBins):
    """Counts per level (as text), at most MAX_LEVELS of them; the rest in OVERFLOW."""

    kind = "categorical"

    def __init__(self) -> None:
        super().__init__()
        self.levels: dict[str, int] = {}

    def _update(self, array: pa.Array) -> None:
        self.rows += len(array)
        self.nulls += array.null_count
        if array.null_count == len(array):
            return
        counted = pc.value_counts(array.drop_null() if array.null_count else array)
        levels = counted.field("values").to_pylist()
        counts = counted.field("counts").to_pylist()
        for level, count in zip(levels, counts, strict=True):
            self._add(level_key(level), int(count))

    def _add(self, key: str, count: int) -> None:
        if key in self.levels or len(self.levels) < MAX_LEVELS:
            self.levels[key] = self.levels.get(key, 0) + count
        else:
            self.levels[OVERFLOW] = self.levels.get(OVERFLOW, 0) + count

    def merge(self, other: ColumnBins) -> None:
        if not isinstance(other, LevelCounts):
            raise InvalidInput(f"cannot merge a {other.kind} profile into a categorical one")
        self.rows, self.nulls = self.rows + other.rows, self.nulls + other.nulls
        for key, count in other.levels.items():
            self._add(key, count)

    def empty_like(self) -> LevelCounts:
        return LevelCounts()

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "levels": dict(sorted(self.levels.items()))}

    @classmethod
    def _load(cls, data: Mapping[str, Any]) -> LevelCounts:
        column = cls()
        column.levels = {str(k): int(v) for k, v in data["levels"].items()}
        return column


def level_key(level: Any) -> str:
    """A level as text, the same whichever side it came from (booleans as true/false)."""
    if isinstance(level, bool):
        return "true" if level else "false"
    return str(level)


def _floor_div(value: int, factor: int) -> int:
    return value // factor  # Python's // floors, negative cells included


def _floats(array: pa.Array) -> FloatArray:
    """The non-null values of a numeric array as float64 (NaN and infinities kept)."""
    if array.null_count:
        array = array.drop_null()
    kind = array.type
    if len(array) and (pat.is_integer(kind) or pat.is_floating(kind)):
        # A plain buffer numpy reads in place (pyarrow's to_numpy may import pandas).
        dtype = np.dtype(kind.to_pandas_dtype())
        raw = np.frombuffer(array.buffers()[1], dtype, len(array), array.offset * dtype.itemsize)
        return np.asarray(raw, dtype=np.float64)
    if pat.is_decimal(kind) or pat.is_boolean(kind) or not len(array):
        return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64)
    raise InvalidInput(f"expected numbers; got values of type {kind}")


# -- tables -----------------------------------------------------------------------------------


class BinnedProfile:
    """One binned column per name, in order; JSON-serialisable and mergeable."""

    binning = BINNING

    def __init__(self, columns: dict[str, ColumnBins], rows: int = 0) -> None:
        self.columns = columns
        self.rows = rows

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __getitem__(self, name: str) -> ColumnBins:
        return self.columns[name]

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def empty_like(self, names: Iterable[str] | None = None) -> BinnedProfile:
        chosen = self.names if names is None else list(names)
        return BinnedProfile({name: self.columns[name].empty_like() for name in chosen})

    def merge(self, other: BinnedProfile) -> None:
        if list(other.columns) != list(self.columns):
            raise InvalidInput("cannot merge binned profiles of different columns")
        for name, column in other.columns.items():
            self.columns[name].merge(column)
        self.rows += other.rows

    def update(self, batch: pa.RecordBatch | pa.Table, pool: ThreadPoolExecutor) -> None:
        """Count one batch, its columns in parallel."""

        def count(name: str) -> None:
            self.columns[name].update(batch.column(name))

        list(pool.map(count, self.names))
        self.rows += batch.num_rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "binning": self.binning,
            "rows": self.rows,
            "order": self.names,
            "columns": {name: column.to_dict() for name, column in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BinnedProfile:
        if data.get("binning") != BINNING:
            raise InvalidInput(
                f"a binned profile of format {data.get('binning')!r} cannot be read; "
                f"expected {BINNING!r}"
            )
        # PostgreSQL's JSONB does not keep key order: "order" does.
        names = data.get("order") or list(data["columns"])
        columns = {name: ColumnBins.from_dict(data["columns"][name]) for name in names}
        return cls(columns, int(data["rows"]))


# -- building profiles ------------------------------------------------------------------------


def workers_for(workers: int | None) -> int:
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise InvalidInput(f"workers must be an integer >= 1; got {workers!r}")
    return workers or min(8, os.cpu_count() or 1)


def reference_profile(
    source: pa.Table | Iterable[pa.RecordBatch] | DatasetVersion,
    columns: list[str] | None = None,
    *,
    workers: int | None = None,
) -> BinnedProfile:
    """The binned profile of a reference: a table, record batches, or a dataset version.

    Grids come from the whole reference where its statistics are at hand (a table's, or a
    dataset version's stored profile), else from the first batch of each column.
    """
    schema, batches, grids = _reference_source(source, columns)
    names = columns if columns is not None else profilable(schema)
    missing = [name for name in names if name not in schema.names]
    if missing:
        raise InvalidInput(
            f"column(s) {', '.join(missing)} are not in the reference; "
            f"its columns are {', '.join(schema.names)}"
        )
    profile = BinnedProfile(
        {name: _empty_column(name, schema.field(name).type, grids.get(name)) for name in names}
    )
    _count(profile, batches, workers)
    return profile


def current_profile(
    reference: BinnedProfile,
    source: pa.Table | Iterable[pa.RecordBatch],
    *,
    workers: int | None = None,
) -> BinnedProfile:
    """The binned profile of `source` on the reference's grids, for the reference's columns
    that `source` has (a column the reference lacks is an error: there is nothing to compare
    it against)."""
    batches = _batches(source)
    first = next(batches, None)
    if first is None:
        return reference.empty_like()
    unknown = [name for name in first.schema.names if name not in reference]
    if unknown:
        raise InvalidInput(
            f"column(s) {', '.join(unknown)} are not in the reference profile; "
            f"its columns are {', '.join(reference.names)}"
        )
    profile = reference.empty_like([n for n in reference.names if n in first.schema.names])
    _count(profile, _chain(first, batches), workers, conform=True)
    return profile


def _count(
    profile: BinnedProfile,
    batches: Iterable[pa.RecordBatch],
    workers: int | None,
    conform: bool = False,
) -> None:
    with ThreadPoolExecutor(max_workers=workers_for(workers)) as pool:
        for batch in batches:
            if conform:
                batch = conform_batch(batch, profile)
            profile.update(batch, pool)


def conform_batch(batch: pa.RecordBatch, profile: BinnedProfile) -> pa.RecordBatch:
    """The batch's columns of `profile`, each as the kind its profile counts."""
    arrays, names = [], []
    for name in profile.names:
        if name not in batch.schema.names:
            continue
        array = batch.column(name)
        if profile[name].kind == "numeric" and column_kind(array.type) != "numeric":
            array = _as_numbers(name, array)
        arrays.append(array)
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _as_numbers(name: str, array: pa.Array) -> pa.Array:
    if pat.is_null(array.type) or pat.is_boolean(array.type):
        return pc.cast(array, pa.float64())
    try:
        return pc.cast(array, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        sample = next((v for v in array.to_pylist() if v is not None), None)
        raise InvalidInput(
            f"column {name!r} is numeric in the reference but the current data holds "
            f"{array.type} values such as {sample!r}; expected numbers"
        ) from None


def profilable(schema: pa.Schema) -> list[str]:
    """The columns of `schema` drift can compare: numbers, text, booleans, categories."""
    return [f.name for f in schema if column_kind(f.type) in ("numeric", "categorical")]


def _empty_column(name: str, kind: pa.DataType, grid: Grid | None) -> ColumnBins:
    profile_kind = column_kind(kind)
    if profile_kind == "numeric":
        return NumericBins(grid, integer=pat.is_integer(kind))
    if profile_kind == "categorical":
        return LevelCounts()
    raise InvalidInput(
        f"column {name!r} of type {kind} cannot be profiled for drift: expected numbers, "
        "text, booleans or categories (leave it out with `ignore`)"
    )


def _reference_source(
    source: Any, columns: list[str] | None
) -> tuple[pa.Schema, Iterator[pa.RecordBatch], dict[str, Grid]]:
    if isinstance(source, pa.Table):
        names = columns if columns is not None else profilable(source.schema)
        return source.schema, _batches(source), _table_grids(source, names)
    if hasattr(source, "iter_batches") and hasattr(source, "schema"):  # a DatasetVersion
        import pyarrow.parquet as pq

        table_profile: TableProfile = source.profile
        schema = pq.ParquetFile(source.path()).schema_arrow
        return schema, iter(source.iter_batches(columns)), _profile_grids(table_profile)
    batches = _batches(source)
    first = next(batches, None)
    if first is None:
        raise InvalidInput("the reference has no record batches: nothing to compare against")
    return first.schema, _chain(first, batches), {}


def _table_grids(table: pa.Table, names: list[str]) -> dict[str, Grid]:
    grids: dict[str, Grid] = {}
    for name in names:
        if name not in table.schema.names:
            continue
        column = table.column(name)
        if column_kind(column.type) != "numeric":
            continue
        finite = column if pat.is_integer(column.type) else _drop_non_finite(column)
        low = pc.min(finite).as_py()
        if low is None:
            continue
        std = pc.stddev(finite).as_py() or 0.0
        grids[name] = grid_for(float(low), float(std), pat.is_integer(column.type))
    return grids


def _drop_non_finite(column: pa.ChunkedArray) -> pa.ChunkedArray:
    numbers = pc.cast(column, pa.float64())
    return pc.filter(numbers, pc.is_finite(numbers))


def _profile_grids(profile: TableProfile) -> dict[str, Grid]:
    grids: dict[str, Grid] = {}
    for name, column in profile.columns.items():
        if column.kind != "numeric":
            continue
        low, std = getattr(column, "minimum", None), getattr(column, "std", None)
        if low is not None:
            integer = bool(getattr(column, "is_integer", False))
            grids[name] = grid_for(float(low), float(std or 0.0), integer)
    return grids


def _batches(source: Any) -> Iterator[pa.RecordBatch]:
    if isinstance(source, pa.Table):
        return iter(source.to_batches())
    if isinstance(source, pa.RecordBatch):
        return iter([source])
    return iter(source)


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


__all__ = [
    "BINNING",
    "BinnedProfile",
    "ColumnBins",
    "Grid",
    "LevelCounts",
    "NumericBins",
    "current_profile",
    "reference_profile",
]
