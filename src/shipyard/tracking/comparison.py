"""Comparing two stored values: "identical" (same bytes), "close" (equal within a tolerance)
or "different", and where: the column and how many rows, the key, the attribute of a fitted
model, the shape. This is what `shipyard reproduce` reports, output by output.

Tables are compared two columns at a time; pickled objects are loaded (from the project's own
store only) and compared through their attributes, so two fitted models whose coefficients
differ in the last bits are "close", not "different".
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput
from shipyard.tracking.values import (
    KINDS,
    PICKLE_PROTOCOL,
    StoredValue,
    load_array,
    load_value,
    type_name,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from shipyard.project import Project


@dataclass(frozen=True)
class Comparison:
    """How two stored values relate: "identical", "close" (within tolerance) or "different"."""

    verdict: str
    detail: str
    max_abs_diff: float | None = None


# -- comparing --------------------------------------------------------------------------------


class _Differs(Exception):
    """The first difference found; it ends the comparison."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _Tolerance:
    """Compares numbers within rtol/atol, remembering the largest difference it let through."""

    def __init__(self, rtol: float, atol: float) -> None:
        self.rtol = rtol
        self.atol = atol
        self.max_abs = 0.0
        self.measured = False  # whether any numeric difference was measured at all
        self.inexact = False

    def describe(self) -> str:
        return f"rtol {self.rtol:g}, atol {self.atol:g}"

    def measure(self, gap: float) -> None:
        self.max_abs = max(self.max_abs, gap)
        self.measured = True

    @property
    def largest(self) -> float | None:
        return self.max_abs if self.measured else None

    def numbers(self, x: Any, y: Any, where: str) -> None:
        if x == y:
            return
        fx, fy = float(x), float(y)
        if math.isnan(fx) and math.isnan(fy):
            return
        # Integers subtract exactly: float64 would round large ones to equal.
        integral = _is_integral(x) and _is_integral(y)
        gap = float(abs(int(x) - int(y))) if integral else abs(fx - fy)
        gap = math.inf if math.isnan(gap) else gap
        self.measure(gap)
        if not gap <= self.atol + self.rtol * abs(fy):
            raise _Differs(f"{where}: {x!r} vs {y!r}, abs difference {gap:.3g} ({self.describe()})")
        self.inexact = True

    def arrays(self, a: Any, b: Any, where: str, unit: str) -> None:
        """Numeric arrays of one shape; raise _Differs when some elements are not close."""
        import numpy as np

        wide = np.complex128 if np.iscomplexobj(a) or np.iscomplexobj(b) else np.float64
        x, y = a.astype(wide), b.astype(wide)
        if a.dtype.kind in "biu" and b.dtype.kind in "biu":
            same = a == b  # exact: float64 would round large integers to equal
        else:
            same = (x == y) | (np.isnan(x) & np.isnan(y))
        if bool(np.all(same)):
            return
        with np.errstate(invalid="ignore", over="ignore"):
            if a.dtype.kind in "iu" and b.dtype.kind in "iu":
                # Python ints subtract exactly, and only the differing elements are converted.
                exact = np.abs(a[~same].astype(object) - b[~same].astype(object))
                gaps = exact.astype(np.float64)
            else:
                gaps = np.abs(x - y)[~same]
            close = np.isclose(x, y, rtol=self.rtol, atol=self.atol)[~same]
        gaps = np.where(np.isnan(gaps), np.inf, gaps)
        largest = float(gaps.max())
        self.measure(largest)
        beyond = int(np.count_nonzero(~close))
        if beyond:
            raise _Differs(
                f"{where} differs in {beyond} {unit} beyond tolerance (max abs difference "
                f"{largest:.3g}; {self.describe()})"
            )
        self.inexact = True


def _is_integral(value: Any) -> bool:
    np = sys.modules.get("numpy")
    return type(value) is int or (np is not None and isinstance(value, np.integer))


def compare_values(
    a: StoredValue,
    b: StoredValue,
    project: Project,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
) -> Comparison:
    """Whether two stored values are identical, close within rtol/atol, or different (where)."""
    if a.kind != b.kind:
        return Comparison("different", f"kinds differ: {a.kind} vs {b.kind}")
    # The same blob can restore different values (a tuple or a list, a Series' name): the meta
    # must match too.
    if a.digest == b.digest and a.meta == b.meta:
        return Comparison("identical", "same stored bytes (sha256)", 0.0)
    if a.kind == "dataset":
        return _compare_datasets(a, b)
    if a.kind == "bytes":
        return _compare_bytes(a, b)
    compare = _COMPARERS.get(a.kind)
    if compare is None:
        raise InvalidInput(f"stored value kind {a.kind!r} is unknown: expected one of {KINDS}")
    tolerance = _Tolerance(rtol, atol)
    try:
        compare(a, b, project, tolerance)
    except _Differs as exc:
        return Comparison("different", exc.detail, tolerance.largest)
    except RecursionError:
        return Comparison("different", "the values are nested too deeply to compare")
    if tolerance.inexact and tolerance.measured:
        detail = f"max abs difference {tolerance.max_abs:.3g} ({tolerance.describe()})"
        return Comparison("close", detail, tolerance.max_abs)
    if tolerance.inexact:  # e.g. frames inside a pickle, compared by pandas' own check
        return Comparison("close", f"equal within tolerance ({tolerance.describe()})")
    return Comparison("identical", "same values", 0.0)


def _compare_datasets(a: StoredValue, b: StoredValue) -> Comparison:
    refs = f"{a.meta.get('ref')} vs {b.meta.get('ref')}"
    if a.meta.get("content_hash") == b.meta.get("content_hash"):
        return Comparison("identical", f"same content ({refs})")
    return Comparison("different", f"dataset contents differ ({refs})")


def _compare_bytes(a: StoredValue, b: StoredValue) -> Comparison:
    if a.digest == b.digest:
        python = (a.meta.get("python"), b.meta.get("python"))
        return Comparison("different", f"same bytes, but a {python[0]} vs a {python[1]}")
    return Comparison("different", f"bytes differ ({a.size} vs {b.size} bytes)")


def _compare_tables(a: StoredValue, b: StoredValue, project: Project, tol: _Tolerance) -> None:
    import pyarrow.parquet as pq

    for key in ("library", "name"):
        if a.meta.get(key) != b.meta.get(key):
            raise _Differs(f"{key}s differ: {a.meta.get(key)!r} vs {b.meta.get(key)!r}")

    # Column by column, so that only two columns are in memory at a time.
    left = pq.ParquetFile(project.artifacts.fetch(a.digest))
    right = pq.ParquetFile(project.artifacts.fetch(b.digest))
    _compare_schemas(left.schema_arrow, right.schema_arrow)
    rows = (left.metadata.num_rows, right.metadata.num_rows)
    if rows[0] != rows[1]:
        raise _Differs(f"row counts differ: {rows[0]} vs {rows[1]}")
    for name in left.schema_arrow.names:
        x = left.read(columns=[name]).column(0)
        y = right.read(columns=[name]).column(0)
        label = "the series" if a.kind == "series" else f"column {name!r}"
        _compare_columns(label, x, y, tol)


def _compare_schemas(x: pa.Schema, y: pa.Schema) -> None:
    # The index first: a frame and its reset_index() differ there, not merely in column order.
    index_x = (x.pandas_metadata or {}).get("index_columns")
    index_y = (y.pandas_metadata or {}).get("index_columns")
    if index_x != index_y:
        raise _Differs(f"the pandas indexes differ: {index_x} vs {index_y}")
    if x.names != y.names:
        only_x = [n for n in x.names if n not in y.names]
        only_y = [n for n in y.names if n not in x.names]
        if only_x or only_y:
            detail = f"only in the first: {only_x}, only in the second: {only_y}"
            raise _Differs(f"columns differ ({detail})")
        raise _Differs(f"column order differs: {x.names} vs {y.names}")
    for left, right in zip(x, y, strict=True):
        if left.type != right.type:
            raise _Differs(f"column {left.name!r} is {left.type} vs {right.type}")


def _compare_columns(where: str, x: pa.ChunkedArray, y: pa.ChunkedArray, tol: _Tolerance) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    if x.equals(y):
        return
    nulls_x, nulls_y = x.is_null(), y.is_null()
    if not nulls_x.equals(nulls_y):
        moved = pc.sum(pc.not_equal(nulls_x, nulls_y)).as_py()
        raise _Differs(f"{where} has missing values in different places ({moved} rows)")
    if pa.types.is_integer(x.type) or pa.types.is_floating(x.type):
        values_x = x.drop_null().to_numpy()
        values_y = y.drop_null().to_numpy()
        tol.arrays(values_x, values_y, where, "rows")
        return
    try:
        # Both sides have nulls in the same rows (checked above): a null comparison is equal.
        differing = pc.sum(pc.fill_null(pc.not_equal(x, y), False)).as_py()
    except pa.ArrowException:
        raise _Differs(f"{where} differs") from None
    raise _Differs(f"{where} differs in {differing} rows")


def _compare_arrays(a: StoredValue, b: StoredValue, project: Project, tol: _Tolerance) -> None:
    x = load_array(a, project)
    y = load_array(b, project)
    _compare_ndarrays(x, y, "the array", tol)


def _compare_ndarrays(x: Any, y: Any, where: str, tol: _Tolerance) -> None:
    import numpy as np

    if x.shape != y.shape:
        raise _Differs(f"{where}: shapes differ: {x.shape} vs {y.shape}")
    if x.dtype != y.dtype:
        raise _Differs(f"{where}: dtypes differ: {x.dtype} vs {y.dtype}")
    if x.dtype.kind in "biufc":
        tol.arrays(x, y, where, "elements")
        return
    if x.dtype.hasobject:
        for index, (left, right) in enumerate(zip(x.flat, y.flat, strict=True)):
            _ObjectComparer(tol).compare(left, right, f"{where}.flat[{index}]")
        return
    if not np.array_equal(x, y):
        differing = int(np.count_nonzero(x != y))
        raise _Differs(f"{where} differs in {differing} of {x.size} elements")


def _compare_loaded(a: StoredValue, b: StoredValue, project: Project, tol: _Tolerance) -> None:
    _ObjectComparer(tol).compare(load_value(a, project), load_value(b, project), "value")


_COMPARERS: dict[str, Callable[[StoredValue, StoredValue, Project, _Tolerance], None]] = {
    "table": _compare_tables,
    "series": _compare_tables,
    "array": _compare_arrays,
    "json": _compare_loaded,
    "pickle": _compare_loaded,
}

_GLOBALS = (type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType)


class _ObjectComparer:
    """Deep comparison of loaded values: containers, numbers, arrays, then objects' state."""

    def __init__(self, tol: _Tolerance) -> None:
        self.tol = tol
        self.seen: set[tuple[int, int]] = set()

    def compare(self, x: Any, y: Any, where: str) -> None:
        if x is y:
            return
        if _is_number(x) and _is_number(y):
            self.tol.numbers(x, y, where)
            return
        if type(x) is not type(y):
            raise _Differs(f"{where} is a {type_name(x)} vs a {type_name(y)}")
        if isinstance(x, list | tuple):
            self._sequences(x, y, where)
        elif isinstance(x, dict):
            self._dicts(x, y, where)
        elif x is None or isinstance(x, str | bytes | bytearray | bool | set | frozenset):
            if x != y:
                raise _Differs(f"{where}: {_short(x)} vs {_short(y)}")
        elif isinstance(x, _GLOBALS):
            # Classes and functions pickle by name: the same name loads the same object.
            raise _Differs(f"{where}: {x!r} vs {y!r}")
        elif _is_ndarray(x):
            _compare_ndarrays(x, y, where, self.tol)
        elif _is_numpy_scalar(x):
            if not bool(x == y):
                raise _Differs(f"{where}: {_short(x)} vs {_short(y)}")
        elif _is_pandas(x):
            self._pandas(x, y, where)
        else:
            self._objects(x, y, where)

    def _sequences(self, x: list[Any] | tuple[Any, ...], y: Any, where: str) -> None:
        if len(x) != len(y):
            raise _Differs(f"{where}: lengths differ: {len(x)} vs {len(y)}")
        for index, (left, right) in enumerate(zip(x, y, strict=True)):
            self.compare(left, right, f"{where}[{index}]")

    def _dicts(self, x: dict[Any, Any], y: dict[Any, Any], where: str) -> None:
        if x.keys() != y.keys():
            only_x = [k for k in x if k not in y]
            only_y = [k for k in y if k not in x]
            raise _Differs(
                f"{where}: keys differ (only in the first: {only_x}, only in the second: {only_y})"
            )
        for key, left in x.items():
            self.compare(left, y[key], f"{where}[{key!r}]")

    def _pandas(self, x: Any, y: Any, where: str) -> None:
        from pandas import testing

        if x.equals(y):  # also requires equal dtypes, column by column
            return
        checks: dict[str, Any] = {
            "DataFrame": testing.assert_frame_equal,
            "Series": testing.assert_series_equal,
        }
        check = checks.get(type(x).__name__, testing.assert_index_equal)
        try:
            check(x, y, check_exact=False, rtol=self.tol.rtol, atol=self.tol.atol)
        except AssertionError as exc:
            message = " ".join(str(exc).split())  # pandas' report spans several lines
            raise _Differs(f"{where}: {_clip(message, 200)}") from None
        self.tol.inexact = True

    def _objects(self, x: Any, y: Any, where: str) -> None:
        if (id(x), id(y)) in self.seen:
            return  # a cycle: this pair is being compared further up
        self.seen.add((id(x), id(y)))
        equal = _equal_by_own_eq(x, y)
        if equal is True:
            return
        kind = type_name(x)
        try:
            # What pickle itself saves: (constructor, arguments, state, ...).
            reduced_x, reduced_y = _reduced(x), _reduced(y)
        except Exception as exc:  # an object's own __reduce_ex__ may raise anything
            if equal is False:
                raise _Differs(f"{where}: {_short(x)} vs {_short(y)} (not equal by ==)") from None
            raise _Differs(
                f"{where}: two {kind} objects cannot be compared: their class defines no usable "
                f"==, and their state cannot be read ({type(exc).__name__}: {exc})"
            ) from None
        was_inexact = self.tol.inexact
        self.tol.inexact = False
        try:
            self._reductions(reduced_x, reduced_y, where)
        except _Differs:
            if equal is False:
                # == has decided already; the object's own repr reads better than its state.
                raise _Differs(f"{where}: {_short(x)} vs {_short(y)}") from None
            raise
        within_tolerance = self.tol.inexact
        self.tol.inexact = was_inexact or within_tolerance
        # == said no although the state is exactly equal: == knows better (e.g. hidden state).
        if equal is False and not within_tolerance:
            raise _Differs(f"{where}: {_short(x)} vs {_short(y)} (not equal by ==)")

    def _reductions(self, x: Any, y: Any, where: str) -> None:
        if isinstance(x, str) or isinstance(y, str) or len(x) != len(y):
            self.compare(x, y, f"{where}<pickled as>")
            return
        for index, (part_x, part_y) in enumerate(zip(x, y, strict=True)):
            if index == 2 and type(part_x) is dict and type(part_y) is dict:
                self._attributes(part_x, part_y, where)
            else:
                self.compare(part_x, part_y, f"{where}{_REDUCED_PARTS[index]}")

    def _attributes(self, x: dict[str, Any], y: dict[str, Any], where: str) -> None:
        if x.keys() != y.keys():
            only_x = sorted(set(x) - set(y))
            only_y = sorted(set(y) - set(x))
            raise _Differs(
                f"{where}: attributes differ (only in the first: {only_x}, only in the "
                f"second: {only_y})"
            )
        for name, value in x.items():
            self.compare(value, y[name], f"{where}.{name}")


# The parts of what __reduce_ex__ returns, as they are named in paths to a difference.
_REDUCED_PARTS = ("<class>", "<args>", "<state>", "<items>", "<dict items>", "<state setter>")


def _is_number(value: Any) -> bool:
    if type(value) in (int, float):
        return True
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.integer | np.floating)


def _is_ndarray(value: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.ndarray)


def _is_numpy_scalar(value: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.generic)


def _is_pandas(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.DataFrame | pd.Series | pd.Index)


def _equal_by_own_eq(x: Any, y: Any) -> bool | None:
    """What the class's own == says; None when it has none, raises, or answers no plain bool."""
    own_eq: Any = type(x).__eq__
    if own_eq is object.__eq__:
        return None
    try:
        result = x == y
    except Exception:  # e.g. a dataclass holding arrays: "truth value is ambiguous"
        return None
    if isinstance(result, bool) or (_is_numpy_scalar(result) and result.dtype.kind == "b"):
        return bool(result)
    return None


def _reduced(value: Any) -> Any:
    reduced = value.__reduce_ex__(PICKLE_PROTOCOL)
    if isinstance(reduced, str):
        return reduced  # a global, pickled by name
    parts = list(reduced)
    # Items 3 and 4 are optional iterators over list items and dict items.
    return tuple(list(part) if isinstance(part, Iterator) else part for part in parts)


def _short(value: Any) -> str:
    return _clip(repr(value), 60)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
