"""Model signatures: what a model takes and returns, inferred from its training data, enforced.

A signature lists the input columns with their logical types (the `LogicalType`s of
`shipyard.data`, so one schema runs from data validation to serving), nullability, the
category levels and numeric ranges seen in training, and the outputs. It is inferred from the
training dataset version's stored schema and profile (no re-reading of the data), or from a
frame, table or arrays with the same code `shipyard.data` uses; it is stored with the model
version as JSON and enforced on every call:

>>> signature = infer_signature(train, target="churned")     # train: a DatasetVersion
>>> checked = enforce(signature, [{"age": 41, "plan": "pro", "visits": None}])
>>> model.predict(checked.frame); checked.out_of_range           # {"age": 1} if 41 is new

Enforcement rules (a broken rule is a `SignatureError` naming the column, what was expected,
what was received, the row, and what to do; every broken column is reported at once):

- Columns: a missing input column is an error (listing the expected columns). Extra columns
  are dropped and reported in `CheckedInput.ignored_columns`: HTTP clients routinely send ids
  and metadata along with the features, and the model never sees them. Columns come back in
  signature order.
- Types: only lossless matches. Integers for a float column widen (as `WIDENS_TO` says);
  floats for an integer column pass only when every value is whole (JSON's `3.0`, or pandas'
  float column of integers with missing values); text for a number, booleans for a number and
  numbers for a boolean are errors, never a silent cast. Datetime columns take datetimes and
  ISO 8601 text (JSON has no datetime type; ISO text is unambiguous); numbers for a datetime
  are refused (epoch seconds or milliseconds?). Date columns take dates and `YYYY-MM-DD` text.
  `other` columns (nested, binary) pass through unchecked.
- Missing values: None, NaN, NaT and pd.NA are missing. A missing value in a column that had
  none in training is an error naming the row (counted from 0 in the received order). A
  nullable integer column with a missing value is handled: it comes back as pandas' `Int64`.
  (A float column with NaN in training is nullable: pandas writes missing numbers as NaN.)
- Categories: a value outside the training levels is always an error, listing a few levels.
- Ranges: numeric values outside the training [minimum, maximum] are counted per column in
  `CheckedInput.out_of_range`; with `range_policy="refuse"` they are an error. Datetime
  columns carry no range: time moves on, so every new timestamp would be out of range.
- Tensors: the dtype must cast without changing a value (ints to floats; float64 to float32
  for the JSON numbers that carry no width; whole floats to ints) and the shape must match,
  with -1 a free dimension. Booleans and text never pass for numbers.
- Payloads: a DataFrame, an Arrow table, a dict of columns, a dict of scalars (one row), a
  list of records (a key absent from one record is a missing value there), or, for a table
  signature, a 2-D array whose columns are taken in signature order.

The frame handed to the flavor has one dtype per logical type, whatever the payload:
integer -> int64 (`Int64` when nullable), float -> float64, boolean -> bool (`boolean` when
nullable), category and string -> object arrays of str (what every flavor accepts; pandas 3's
`str` arrays cost ~80 us a column to build) except columns that were pandas categoricals in
training (`dtype == "category"`), which come back as categoricals over the training levels,
datetime -> datetime64, date -> object arrays of `datetime.date`.

Compared with MLflow: MLflow refuses an integer column with a missing value (pandas made it
float) and drops the signature when inferring from such data; here it is a nullable integer.
MLflow does not know category levels or ranges, so an unknown level reaches the model (and
its one-hot encoder), and a value far outside training passes unnoticed. MLflow converts
some types silently (e.g. int to float for double columns, as here) and ignores extra
columns (as here).
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.types import infer_dtype

from shipyard.data.profile import ColumnProfile, NumericProfile, TableProfile
from shipyard.data.schema import ColumnSchema, LogicalType, Schema, infer_schema
from shipyard.data.versions import DatasetVersion
from shipyard.errors import InvalidInput

Array = np.ndarray[Any, Any]

TABLE = "table"
TENSOR = "tensor"
RANGE_POLICIES = ("flag", "refuse")
# A tensor given as one bare array gets this name; predictions get "prediction".
TENSOR_INPUT = "input"
PREDICTION = "prediction"
LISTED_LEVELS = 8


class SignatureError(InvalidInput):
    """Input that does not fit a model's signature; `problems` holds one line per column."""

    def __init__(self, problems: list[str]) -> None:
        if len(problems) == 1:
            message = problems[0]
        else:
            message = f"{len(problems)} problems with the input: " + "; ".join(problems)
        super().__init__(message)
        self.problems = problems


class _Problem(Exception):
    """One column's problem, collected so that every broken column is reported at once."""


# -- the signature -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnSpec:
    """One input or output: a table column, or a named tensor (with `shape` and `dtype`).

    `minimum`/`maximum` are the numeric range seen in training (integer and float columns,
    numeric tensors). `dtype` is the numpy dtype of a tensor; for a table column it is
    "category" when the column was a pandas categorical in training, else None.
    """

    name: str
    type: LogicalType
    nullable: bool
    levels: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    shape: tuple[int, ...] | None = None
    dtype: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "type": self.type.value}
        data["nullable"] = self.nullable
        optional = {
            "levels": list(self.levels) if self.levels is not None else None,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "shape": list(self.shape) if self.shape is not None else None,
            "dtype": self.dtype,
        }
        data.update({key: value for key, value in optional.items() if value is not None})
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ColumnSpec:
        levels, shape = data.get("levels"), data.get("shape")
        minimum, maximum = data.get("minimum"), data.get("maximum")
        return cls(
            name=str(data["name"]),
            type=LogicalType(data["type"]),
            nullable=bool(data["nullable"]),
            levels=tuple(str(level) for level in levels) if levels is not None else None,
            minimum=float(minimum) if minimum is not None else None,
            maximum=float(maximum) if maximum is not None else None,
            shape=tuple(int(size) for size in shape) if shape is not None else None,
            dtype=data.get("dtype"),
        )

    def describe(self) -> str:
        """A short readable form: `integer, nullable, range [0, 90]`."""
        parts = [self.type.value if self.dtype is None else f"{self.type.value} ({self.dtype})"]
        if self.shape is not None:
            parts.append(f"shape {_shape_text(self.shape)}")
        if self.nullable:
            parts.append("nullable")
        if self.levels is not None:
            parts.append(f"levels {_listing(self.levels)}")
        if self.minimum is not None or self.maximum is not None:
            parts.append(f"range {_range_text(self)}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Signature:
    """What a model takes (`inputs`) and returns (`outputs`): named columns or named tensors."""

    inputs: tuple[ColumnSpec, ...]
    outputs: tuple[ColumnSpec, ...] = ()
    kind: str = TABLE

    def __post_init__(self) -> None:
        if self.kind not in (TABLE, TENSOR):
            raise InvalidInput(f"signature kind {self.kind!r} is unknown; expected table or tensor")
        names = self.input_names
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise InvalidInput(
                f"signature repeats the input name(s) {', '.join(repeated)}; names must be unique"
            )
        if self.kind == TENSOR and any(spec.shape is None for spec in self.inputs):
            raise InvalidInput("a tensor signature needs a shape for every input")

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "inputs": [spec.to_json() for spec in self.inputs],
            "outputs": [spec.to_json() for spec in self.outputs],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Signature:
        try:
            return cls(
                inputs=tuple(ColumnSpec.from_json(spec) for spec in data["inputs"]),
                outputs=tuple(ColumnSpec.from_json(spec) for spec in data.get("outputs") or ()),
                kind=str(data.get("kind", TABLE)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(
                f"the stored signature is malformed ({type(exc).__name__}: {exc}); "
                "infer it again with infer_signature() from the training data"
            ) from None

    def describe_differences(self, other: Signature) -> list[str]:
        """What changed from this signature to `other`, one line per change ([] when none)."""
        lines = [f"kind: {self.kind} -> {other.kind}"] if self.kind != other.kind else []
        lines += _spec_differences("input", self.inputs, other.inputs)
        lines += _spec_differences("output", self.outputs, other.outputs)
        return lines

    def enforcer(self) -> Enforcer:
        """The compiled checks for this signature, built once and kept."""
        return self._enforcer

    @functools.cached_property
    def _enforcer(self) -> Enforcer:
        # A frozen dataclass still has a __dict__: cached_property stores the value there.
        return Enforcer(self)

    def __getstate__(self) -> dict[str, Any]:
        # The compiled enforcer holds closures: rebuild it after unpickling, never ship it.
        return {key: value for key, value in self.__dict__.items() if key != "_enforcer"}


def _spec_differences(
    role: str, old: tuple[ColumnSpec, ...], new: tuple[ColumnSpec, ...]
) -> list[str]:
    old_specs = {spec.name: spec for spec in old}
    new_specs = {spec.name: spec for spec in new}
    lines = [f"{role} {name!r} removed" for name in old_specs if name not in new_specs]
    lines += [
        f"{role} {name!r} added ({spec.describe()})"
        for name, spec in new_specs.items()
        if name not in old_specs
    ]
    for name, before in old_specs.items():
        after = new_specs.get(name)
        if after is not None:
            lines += [f"{role} {name!r}: {change}" for change in _spec_changes(before, after)]
    return lines


def _spec_changes(old: ColumnSpec, new: ColumnSpec) -> list[str]:
    changes = []
    if old.type != new.type:
        changes.append(f"type {old.type.value} -> {new.type.value}")
    if old.dtype != new.dtype:
        changes.append(f"dtype {old.dtype} -> {new.dtype}")
    if old.shape != new.shape:
        changes.append(f"shape {_shape_text(old.shape)} -> {_shape_text(new.shape)}")
    if old.nullable != new.nullable:
        changes.append("now nullable" if new.nullable else "no longer nullable")
    if old.levels is not None and new.levels is not None:
        added = sorted(set(new.levels) - set(old.levels))
        gone = sorted(set(old.levels) - set(new.levels))
        if added:
            changes.append(f"new levels {_listing(added)}")
        if gone:
            changes.append(f"levels gone {_listing(gone)}")
    elif (old.levels is None) != (new.levels is None):
        changes.append("now has levels" if new.levels is not None else "no longer has levels")
    if (old.minimum, old.maximum) != (new.minimum, new.maximum):
        changes.append(f"range {_range_text(old)} -> {_range_text(new)}")
    return changes


# -- inference ---------------------------------------------------------------------------------


def infer_signature(
    data: DatasetVersion | pd.DataFrame | pa.Table | Array | Mapping[str, Any],
    *,
    target: str | Sequence[str] | None = None,
    predictions: Any = None,
) -> Signature:
    """The signature of a model trained on `data`.

    A DatasetVersion gives its stored schema and profile (the data is not read again); a
    DataFrame or Arrow table is profiled as `shipyard.data.add` would; an array, or a mapping
    of names to arrays, gives a tensor signature (first dimension free). `target` columns are
    left out of the inputs and become the outputs, unless `predictions` (an array, Series or
    DataFrame of the model's outputs on `data`) is given: then the outputs describe those.
    """
    targets = [target] if isinstance(target, str) else list(target or ())
    if isinstance(data, DatasetVersion | pd.DataFrame | pa.Table):
        schema, profile = _schema_and_profile(data)
        specs = _table_specs(schema, profile)
        _check_targets(targets, schema.names)
        inputs = tuple(spec for spec in specs if spec.name not in targets)
        outputs = tuple(spec for spec in specs if spec.name in targets)
        kind, rows = TABLE, profile.num_rows
    elif isinstance(data, np.ndarray | Mapping):
        if targets:
            raise InvalidInput(
                "target names a column, but arrays have no columns: pass the features as "
                "`data` and the labels (or the model's outputs) as `predictions`"
            )
        arrays = {TENSOR_INPUT: data} if isinstance(data, np.ndarray) else dict(data)
        inputs = tuple(_tensor_spec(str(name), value) for name, value in arrays.items())
        outputs, kind = (), TENSOR
        rows = len(np.asarray(next(iter(arrays.values())))) if arrays else 0
    else:
        raise InvalidInput(
            f"cannot infer a signature from a {type(data).__name__}: expected a DatasetVersion, "
            "a pandas DataFrame, a pyarrow Table, a numpy array or a dict of arrays"
        )
    if predictions is not None:
        outputs = _prediction_specs(predictions, targets, rows)
    return Signature(inputs=inputs, outputs=outputs, kind=kind)


def _schema_and_profile(
    data: DatasetVersion | pd.DataFrame | pa.Table,
) -> tuple[Schema, TableProfile]:
    if isinstance(data, DatasetVersion):
        return data.schema, data.profile
    table = _arrow_table(data)
    profile = TableProfile.of_batches(table.schema, table.to_batches())
    return infer_schema(table.schema, profile), profile


def _arrow_table(data: pd.DataFrame | pa.Table) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    try:
        return pa.Table.from_pandas(data, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(
            f"cannot infer a signature from this DataFrame: {exc}; give each column one type"
        ) from None


def _check_targets(targets: list[str], names: list[str]) -> None:
    for name in targets:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise InvalidInput(
                f"target column {name!r} is not in the data; its columns are "
                f"{', '.join(names)}{hint}"
            )


def _table_specs(schema: Schema, profile: TableProfile) -> list[ColumnSpec]:
    return [_table_spec(column, profile.columns[column.name]) for column in schema.columns]


def _table_spec(column: ColumnSchema, stats: ColumnProfile) -> ColumnSpec:
    numeric = isinstance(stats, NumericProfile)
    # NaN in an Arrow float column is a value, not a null; a model input treats it as missing.
    nullable = column.nullable or (isinstance(stats, NumericProfile) and stats.nan_count > 0)
    has_range = numeric and column.type in (LogicalType.INTEGER, LogicalType.FLOAT)
    return ColumnSpec(
        name=column.name,
        type=column.type,
        nullable=nullable,
        levels=column.levels,
        minimum=stats.minimum if has_range and isinstance(stats, NumericProfile) else None,
        maximum=stats.maximum if has_range and isinstance(stats, NumericProfile) else None,
        dtype="category" if column.arrow_type.startswith("dictionary") else None,
    )


_KIND_TYPES = {
    "i": LogicalType.INTEGER,
    "u": LogicalType.INTEGER,
    "f": LogicalType.FLOAT,
    "b": LogicalType.BOOLEAN,
    "U": LogicalType.STRING,
    "S": LogicalType.STRING,
    "O": LogicalType.STRING,
    "M": LogicalType.DATETIME,
}


def _tensor_spec(name: str, value: Any) -> ColumnSpec:
    array = np.asarray(value)
    if array.ndim == 0:
        raise InvalidInput(
            f"tensor {name!r} is a single value; expected an array whose first dimension is rows"
        )
    minimum = maximum = None
    if array.dtype.kind in "iuf" and array.size:
        finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
        if finite.size:
            minimum, maximum = float(finite.min()), float(finite.max())
    return ColumnSpec(
        name=name,
        type=_KIND_TYPES.get(array.dtype.kind, LogicalType.OTHER),
        nullable=array.dtype.kind == "f" and bool(np.isnan(array).any()),
        minimum=minimum,
        maximum=maximum,
        shape=(-1, *array.shape[1:]),
        dtype=array.dtype.name,
    )


def _prediction_specs(predictions: Any, targets: list[str], rows: int) -> tuple[ColumnSpec, ...]:
    default = targets[0] if len(targets) == 1 else PREDICTION
    if isinstance(predictions, pd.Series):
        predictions = predictions.to_frame(name=predictions.name or default)
    if not isinstance(predictions, pd.DataFrame):
        array = np.asarray(predictions)
        if array.ndim != 1:
            _check_rows(len(array) if array.ndim else 0, rows)
            return (_tensor_spec(PREDICTION, array),)
        predictions = pd.DataFrame({default: array})
    _check_rows(len(predictions), rows)
    schema, profile = _schema_and_profile(predictions)
    return tuple(_table_specs(schema, profile))


def _check_rows(predicted: int, rows: int) -> None:
    if predicted != rows:
        raise InvalidInput(
            f"predictions have {predicted} rows but the data has {rows}: pass the model's "
            "outputs on exactly this data"
        )


# -- enforcement -------------------------------------------------------------------------------


@dataclass
class CheckedInput:
    """Input that fits the signature, ready for the flavor.

    `frame` holds the columns in signature order with the dtypes the module docstring lists
    (for a tensor signature it is an empty frame: the arrays are in `tensors`).
    `out_of_range` counts, per column with any, the values outside the training range.
    """

    frame: pd.DataFrame
    out_of_range: dict[str, int]
    rows: int
    tensors: dict[str, Array] = field(default_factory=dict)
    ignored_columns: tuple[str, ...] = ()

    @property
    def model_input(self) -> pd.DataFrame | Array | dict[str, Array]:
        """What a flavor passes to the model: the frame, the one tensor, or the named tensors."""
        if not self.tensors:
            return self.frame
        if len(self.tensors) == 1:
            return next(iter(self.tensors.values()))
        return self.tensors


def enforce(
    signature: Signature,
    data: Any,
    *,
    range_policy: str = "flag",
) -> CheckedInput:
    """Check `data` against `signature` and return it in the training dtypes, or raise.

    `data`: a DataFrame, an Arrow table, a dict of columns (or of scalars, one row), a list of
    records, or arrays for a tensor signature. `range_policy`: "flag" counts values outside
    the training range, "refuse" makes them an error.
    """
    return signature.enforcer()(data, range_policy=range_policy)


class Enforcer:
    """A signature's checks, compiled once: one converter per input, the column index built."""

    def __init__(self, signature: Signature) -> None:
        self.signature = signature
        self.names = signature.input_names
        self._columns = pd.Index(self.names, dtype=object)
        self._converters = [_converter(spec) for spec in signature.inputs]
        self._wanted = frozenset(self.names)
        self._floats = _FloatColumns.of(signature)

    def __call__(
        self, data: Any, *, range_policy: str = "flag", refuse_extra: bool = False
    ) -> CheckedInput:
        """`refuse_extra`: a column the signature does not name is an error rather than
        dropped (the model server's choice: a client sending a field the model never reads
        has almost always misspelled one it does)."""
        if range_policy not in RANGE_POLICIES:
            raise InvalidInput(
                f"range policy {range_policy!r} is unknown; expected one of "
                + ", ".join(RANGE_POLICIES)
            )
        refuse = range_policy == "refuse"
        if self.signature.kind == TENSOR:
            return self._tensors(data, refuse)
        columns, rows, ignored = self._table_columns(data)
        arrays: list[Any] = []
        out_of_range: dict[str, int] = {}
        problems = []
        if refuse_extra:
            expected = ", ".join(self.names)
            problems += [
                f"unexpected input {name!r}: the model takes only {expected}" for name in ignored
            ]
        plain = None if problems or self._floats is None else self._floats(columns, refuse)
        if plain is not None:
            matrix, out_of_range = plain
            # One float block, as the model's array fast path wants it (~2x quicker than
            # assembling the frame column by column).
            frame = pd.DataFrame(matrix.T, columns=self._columns, copy=False)
            return CheckedInput(frame, out_of_range, rows, {}, ())
        for name, convert in zip(self.names, self._converters, strict=True):
            try:
                array, outside = convert(columns[name], refuse)
            except _Problem as problem:
                problems.append(str(problem))
                continue
            arrays.append(array)
            if outside:
                out_of_range[name] = outside
        if problems:
            raise SignatureError(problems)
        return CheckedInput(_frame(arrays, self._columns, rows), out_of_range, rows, {}, ignored)

    def _table_columns(self, data: Any) -> tuple[dict[str, Any], int, tuple[str, ...]]:
        """The payload as {name: values} for the signature's columns, its rows, extra names."""
        columns, rows, received = _payload_columns(data, self._wanted, len(self.names))
        if isinstance(columns, list):  # a 2-D array: columns by position
            columns = dict(zip(self.names, columns, strict=True))
        missing = [name for name in self.names if name not in columns]
        ignored = tuple(name for name in received if name not in self._wanted)
        if missing:
            raise SignatureError([_missing_columns(missing, self.names, ignored)])
        return columns, rows, ignored

    def _tensors(self, data: Any, refuse: bool) -> CheckedInput:
        arrays = self._tensor_arrays(data)
        tensors: dict[str, Array] = {}
        out_of_range: dict[str, int] = {}
        problems = []
        for spec in self.signature.inputs:
            try:
                tensors[spec.name], outside = _check_tensor(spec, arrays[spec.name], refuse)
            except _Problem as problem:
                problems.append(str(problem))
                continue
            if outside:
                out_of_range[spec.name] = outside
        if problems:
            raise SignatureError(problems)
        first = next(iter(tensors.values()), None)
        rows = len(first) if first is not None and first.ndim else 0
        ignored = tuple(str(name) for name in arrays if name not in self._wanted)
        empty = pd.DataFrame(index=pd.RangeIndex(rows))
        return CheckedInput(empty, out_of_range, rows, tensors, ignored)

    def _tensor_arrays(self, data: Any) -> dict[str, Any]:
        if isinstance(data, Mapping):
            missing = [name for name in self.names if name not in data]
            if missing:
                raise SignatureError([_missing_columns(missing, self.names, tuple(data))])
            return dict(data)
        if len(self.names) == 1 and isinstance(data, np.ndarray | list | tuple):
            return {self.names[0]: data}
        raise SignatureError(
            [
                f"the model takes the named tensors {', '.join(self.names)}; send a dict of "
                f"arrays with these names (received a {type(data).__name__})"
            ]
        )


_PLAIN_NUMBERS = frozenset({int, float})  # JSON numbers as parsed; bool (an int) is not one


@dataclass(frozen=True)
class _FloatColumns:
    """The served common case, all-float inputs sent as lists of plain numbers, checked in one
    numpy pass over a (columns x rows) matrix instead of one converter per column (a third of
    a one-row request's cost with eight columns).

    It only ever accepts: anything unusual (another type, a missing value, a value beyond
    float range, or one the range policy refuses) returns None, and the per-column
    converters judge the payload and word the error, so both paths agree on every input.
    """

    names: tuple[str, ...]
    low: Array  # (columns, 1): the training minimum, -inf when unknown
    high: Array

    @classmethod
    def of(cls, signature: Signature) -> _FloatColumns | None:
        specs = signature.inputs
        if signature.kind == TENSOR or not specs:
            return None
        if any(spec.type is not LogicalType.FLOAT or spec.dtype is not None for spec in specs):
            return None
        low = [-math.inf if spec.minimum is None else spec.minimum for spec in specs]
        high = [math.inf if spec.maximum is None else spec.maximum for spec in specs]
        return cls(
            tuple(spec.name for spec in specs),
            np.array(low, dtype=np.float64).reshape(-1, 1),
            np.array(high, dtype=np.float64).reshape(-1, 1),
        )

    def __call__(
        self, columns: dict[str, Any], refuse: bool
    ) -> tuple[Array, dict[str, int]] | None:
        """The (columns x rows) float matrix and the out-of-range counts, or None."""
        lists = [columns[name] for name in self.names]
        for values in lists:
            if not isinstance(values, list | tuple) or not _PLAIN_NUMBERS.issuperset(
                map(type, values)
            ):
                return None
        try:
            matrix = np.array(lists, dtype=np.float64)
        except (OverflowError, ValueError):
            return None
        if matrix.ndim != 2 or np.isnan(matrix).any():
            return None
        outside = (matrix < self.low) | (matrix > self.high)
        if not outside.any():
            return matrix, {}
        if refuse:
            return None
        counts = outside.sum(axis=1).tolist()
        return matrix, {name: n for name, n in zip(self.names, counts, strict=True) if n}


def _missing_columns(missing: list[str], expected: list[str], received: tuple[str, ...]) -> str:
    hints = []
    for name in missing:
        close = difflib.get_close_matches(name, [str(other) for other in received], n=1)
        if close:
            hints.append(f"{close[0]!r} for {name!r}")
    hint = f"; did you send {', '.join(hints)}?" if hints else ""
    return (
        f"the input lacks the column(s) {', '.join(map(repr, missing))} that the model needs; "
        f"expected the columns {', '.join(expected)} (send every one, with null where a "
        f"nullable value is unknown){hint}"
    )


def _frame(arrays: list[Any], columns: pd.Index, rows: int) -> pd.DataFrame:
    # The public dict constructor re-infers every dtype and rebuilds the column index (~4x the
    # time for one row); the arrays already have their final dtypes.
    build = getattr(pd.DataFrame, "_from_arrays", None)
    if build is None:
        return pd.DataFrame(dict(zip(columns, arrays, strict=True)), index=pd.RangeIndex(rows))
    frame: pd.DataFrame = build(
        arrays, columns=columns, index=pd.RangeIndex(rows), verify_integrity=False
    )
    return frame


# -- payloads ----------------------------------------------------------------------------------


def _payload_columns(
    data: Any, wanted: frozenset[str], width: int
) -> tuple[dict[str, Any] | list[Any], int, list[str]]:
    """The wanted columns of a payload, by name (by position for a 2-D array), its rows, and
    every column name it had."""
    if isinstance(data, pd.DataFrame):
        if not data.columns.is_unique:
            raise SignatureError(["the DataFrame repeats column names; give each column once"])
        received = [str(name) for name in data.columns]
        if len(data) <= SMALL_COLUMN:
            # A few rows (a served request): one conversion to Python values, then the same
            # fast pass as a JSON payload; a Series per column costs ~70 us each in pandas.
            values = data.to_numpy(dtype=object).T.tolist()
            small: dict[str, Any] = {
                name: column
                for name, column in zip(received, values, strict=True)
                if name in wanted
            }
            return small, len(data), received
        # Only the wanted columns become Series: a wide frame of extras costs nothing.
        columns = {str(name): data[name] for name in data.columns if str(name) in wanted}
        return columns, len(data), received
    if isinstance(data, pa.Table):
        received = [str(name) for name in data.column_names]
        frame = data.select([name for name in received if name in wanted]).to_pandas(
            types_mapper=_nullable_dtype
        )
        return {str(name): frame[name] for name in frame.columns}, data.num_rows, received
    if isinstance(data, Mapping):
        columns, rows = _mapping_columns(data)
        return columns, rows, list(columns)
    if isinstance(data, np.ndarray):
        return *_matrix_columns(data, width), []
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        columns, rows = _record_columns(data)
        return columns, rows, list(columns)
    raise SignatureError(
        [
            f"cannot read a {type(data).__name__} as model input: send a DataFrame, an Arrow "
            "table, a dict of columns or a list of records"
        ]
    )


def _nullable_dtype(arrow_type: pa.DataType) -> Any:
    # Arrow integers with nulls would otherwise become floats before they are checked.
    if pa.types.is_integer(arrow_type):
        return pd.Int64Dtype()
    if pa.types.is_boolean(arrow_type):
        return pd.BooleanDtype()
    return None


def _is_column(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray | pd.Series)


def _mapping_columns(data: Mapping[Any, Any]) -> tuple[dict[str, Any], int]:
    if not data:
        return {}, 0
    columns = {str(name): value for name, value in data.items()}
    shapes = [_is_column(value) for value in columns.values()]
    if not any(shapes):  # {"age": 41, "plan": "pro"}: one row
        return {name: [value] for name, value in columns.items()}, 1
    if not all(shapes):
        scalars = [name for name, is_column in zip(columns, shapes, strict=True) if not is_column]
        raise SignatureError(
            [
                f"the column(s) {', '.join(scalars)} hold a single value while others hold "
                "lists; send every column as a list (dict of columns) or none (one row)"
            ]
        )
    lengths = {name: len(value) for name, value in columns.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name}: {length}" for name, length in lengths.items())
        raise SignatureError(
            [f"the columns have different lengths ({described}); send one value per row in each"]
        )
    return columns, next(iter(lengths.values()))


def _record_columns(records: Sequence[Any]) -> tuple[dict[str, Any], int]:
    for row, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise SignatureError(
                [
                    f"record {row} is a {type(record).__name__}, not an object of column "
                    "values; send a list of {column: value} records"
                ]
            )
    names: dict[str, None] = {}  # ordered union of the keys
    for record in records:
        names.update(dict.fromkeys(record))
    columns = {str(name): [record.get(name) for record in records] for name in names}
    return columns, len(records)


def _matrix_columns(array: Array, width: int) -> tuple[list[Any], int]:
    if array.ndim != 2 or array.shape[1] != width:
        raise SignatureError(
            [
                f"an array input must be 2-D with one column per input ({width}); received "
                f"shape {array.shape}: send named columns (a DataFrame, records or a dict)"
            ]
        )
    return [array[:, position] for position in range(width)], len(array)


# -- one column --------------------------------------------------------------------------------


Converter = Callable[[Any, bool], tuple[Any, int]]


@dataclass
class _Values:
    """One received column: values as a 1-D numpy array, which are missing, and their kind.

    `kind` is pandas' `infer_dtype` vocabulary: integer, floating, mixed-integer-float,
    boolean, string, datetime, datetime64, date, empty (all missing), mixed, ...
    """

    values: Array
    missing: Array
    kind: str

    def first_missing(self) -> int:
        return int(np.flatnonzero(self.missing)[0])


_NUMPY_KINDS = {
    "i": "integer",
    "u": "integer",
    "f": "floating",
    "b": "boolean",
    "U": "string",
    "M": "datetime64",
    "m": "timedelta64",
    "c": "complex",
}


# Past this many values a Python list is judged by pandas' C code rather than a Python scan.
SMALL_COLUMN = 32
_PYTHON_KINDS = {int: "integer", float: "floating", bool: "boolean", str: "string"}
_KIND_DTYPES: dict[str, Any] = {
    "integer": np.int64,
    "floating": np.float64,
    "mixed-integer-float": np.float64,
    "boolean": np.bool_,
}


def _small_values(column: list[Any] | tuple[Any, ...]) -> _Values | None:
    """A short list of plain JSON values (the single-row case), judged in one Python pass.

    None when a value is of another type: the general path then judges the column.
    """
    kinds = set()
    missing = []
    for value in column:
        if value is None:
            missing.append(True)
            continue
        kind = _PYTHON_KINDS.get(type(value))
        if kind is None or value != value:  # numpy scalars, dates, NaN: the general path
            return None
        kinds.add(kind)
        missing.append(False)
    if not kinds:
        kind = "empty"
    elif len(kinds) == 1:
        (kind,) = kinds
    else:
        kind = "mixed-integer-float" if kinds == {"integer", "floating"} else "mixed"
    dtype = _KIND_DTYPES.get(kind)
    if dtype is not None and not any(missing):
        try:
            return _Values(np.array(column, dtype=dtype), np.zeros(len(column), bool), kind)
        except OverflowError:  # an integer beyond 64 bits: judged as an object below
            pass
    return _Values(np.fromiter(column, object, len(column)), np.array(missing, bool), kind)


def _values(column: Any) -> _Values:
    if isinstance(column, list | tuple) and len(column) <= SMALL_COLUMN:
        small = _small_values(column)
        if small is not None:
            return small
    if isinstance(column, pd.Series):
        column = _series_array(column)
    if isinstance(column, np.ndarray) and column.ndim == 1 and column.dtype.kind != "O":
        kind = _NUMPY_KINDS.get(column.dtype.kind, column.dtype.name)
        if column.dtype.kind in "fM":
            missing = np.isnan(column) if column.dtype.kind == "f" else np.isnat(column)
            kind = "empty" if len(column) and missing.all() else kind
        else:
            missing = np.zeros(len(column), dtype=bool)
        return _Values(column, missing, kind)
    if not isinstance(column, np.ndarray) or column.ndim != 1:
        column = np.fromiter(column, dtype=object, count=len(column))
    return _Values(column, pd.isna(column), infer_dtype(column, skipna=True))


def _series_array(series: pd.Series[Any]) -> Array:
    if isinstance(series.dtype, np.dtype):
        return series.to_numpy()
    # Masked numbers, pandas' str and categoricals: an object array whose missing values
    # (pd.NA, NaN) are judged like any other payload's (an Int64 column is still "integer").
    return series.to_numpy(dtype=object)


def _converter(spec: ColumnSpec) -> Converter:
    convert = _CONVERTERS.get(spec.type, _convert_other)
    levels = frozenset(spec.levels) if spec.levels is not None else None
    categorical = (
        pd.CategoricalDtype(list(spec.levels))
        if spec.dtype == "category" and spec.levels is not None
        else None
    )

    def check(column: Any, refuse: bool) -> tuple[Any, int]:
        received = _values(column)
        array = convert(spec, received)
        if not spec.nullable and received.missing.any():
            row = received.first_missing()
            raise _Problem(
                f"column {spec.name!r} has a missing value in row {row}, but it had none in "
                "training; send a value (the model was never trained on missing ones)"
            )
        if levels is not None:
            _check_levels(spec, received, levels)
        outside = _count_outside(spec, array, received.missing, refuse)
        if categorical is not None:
            return pd.Categorical(array, dtype=categorical), outside
        return _finish(spec, array, received.missing), outside

    return check


def _finish(spec: ColumnSpec, array: Array, missing: Array) -> Any:
    """Nullable integers and booleans become pandas' masked arrays; the rest stays numpy."""
    if not spec.nullable:
        return array
    if spec.type is LogicalType.INTEGER:
        return pd.arrays.IntegerArray(array, missing.copy())
    if spec.type is LogicalType.BOOLEAN:
        return pd.arrays.BooleanArray(array, missing.copy())
    return array


def _wrong_type(spec: ColumnSpec, received: _Values, accept: Callable[[Any], bool]) -> _Problem:
    row, value = _first_rejected(received, accept)
    hint = (
        "send numbers, not text"
        if isinstance(value, str) and spec.type in (LogicalType.INTEGER, LogicalType.FLOAT)
        else "convert it before sending; shipyard never casts silently"
    )
    return _Problem(
        f"column {spec.name!r} expects {_EXPECTED[spec.type]}; received {value!r} "
        f"({type(value).__name__}) in row {row}: {hint}"
    )


def _first_rejected(received: _Values, accept: Callable[[Any], bool]) -> tuple[int, Any]:
    for row, (value, missing) in enumerate(zip(received.values, received.missing, strict=True)):
        if not missing and not accept(value):
            return row, value.item() if isinstance(value, np.generic) else value
    # Each value passes alone but not together (e.g. mixed time zones): name the first one.
    row = int(np.flatnonzero(~received.missing)[0]) if (~received.missing).any() else 0
    return row, received.values[row] if len(received.values) else None


_EXPECTED = {
    LogicalType.INTEGER: "whole numbers (integer)",
    LogicalType.FLOAT: "numbers (float)",
    LogicalType.BOOLEAN: "true or false (boolean)",
    LogicalType.CATEGORY: "text (category)",
    LogicalType.STRING: "text (string)",
    LogicalType.DATETIME: "timestamps (datetime, or ISO 8601 text)",
    LogicalType.DATE: "dates (date, or YYYY-MM-DD text)",
    LogicalType.OTHER: "any value",
}


def _is_integer(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_integer(value) or isinstance(value, float | np.floating)


def _is_whole(value: Any) -> bool:
    return _is_integer(value) or (
        isinstance(value, float | np.floating)
        and math.isfinite(value)
        and float(value).is_integer()
    )


def _floats(spec: ColumnSpec, received: _Values) -> Array:
    """Numbers as float64 with NaN where missing (the kind was already checked)."""
    values = received.values
    if values.dtype.kind != "O":
        return values.astype(np.float64, copy=False)
    out = np.full(len(values), np.nan)
    present = ~received.missing
    try:
        out[present] = values[present].astype(np.float64)
    except OverflowError:
        raise _Problem(f"column {spec.name!r} holds a number beyond float range") from None
    return out


def _convert_integer(spec: ColumnSpec, received: _Values) -> Array:
    kind, values = received.kind, received.values
    if kind == "integer" and values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    if kind in ("integer", "empty"):
        out = np.zeros(len(values), dtype=np.int64)
        present = ~received.missing
        try:
            out[present] = values[present].astype(np.int64)
        except OverflowError:
            raise _Problem(
                f"column {spec.name!r} holds an integer beyond 64 bits; send smaller numbers"
            ) from None
        return out
    if kind in ("floating", "mixed-integer-float"):
        floats = _floats(spec, received)
        present = floats[~received.missing]
        if not np.all(np.isfinite(present) & (present == np.trunc(present))):
            raise _wrong_type(spec, received, _is_whole)
        if present.size and (present.min() < -(2.0**63) or present.max() >= 2.0**63):
            raise _Problem(
                f"column {spec.name!r} holds an integer beyond 64 bits; send smaller numbers"
            )
        return np.where(received.missing, 0.0, floats).astype(np.int64)
    raise _wrong_type(spec, received, _is_integer)


def _convert_float(spec: ColumnSpec, received: _Values) -> Array:
    if received.kind in ("integer", "floating", "mixed-integer-float", "empty"):
        return _floats(spec, received)
    raise _wrong_type(spec, received, _is_number)


def _convert_boolean(spec: ColumnSpec, received: _Values) -> Array:
    values = received.values
    if received.kind == "boolean" and values.dtype.kind == "b":
        return values
    if received.kind in ("boolean", "empty"):
        out = np.zeros(len(values), dtype=bool)
        present = ~received.missing
        out[present] = values[present].astype(bool)
        return out
    raise _wrong_type(spec, received, lambda value: isinstance(value, bool | np.bool_))


def _convert_text(spec: ColumnSpec, received: _Values) -> Array:
    if received.kind not in ("string", "empty"):
        raise _wrong_type(spec, received, lambda value: isinstance(value, str))
    values = received.values
    if values.dtype.kind != "O":
        return values.astype(object)
    if received.missing.any():
        values = values.copy()
        values[received.missing] = None  # one spelling of missing text, whatever was sent
    return values


def _convert_datetime(spec: ColumnSpec, received: _Values) -> Any:
    kind = received.kind
    if kind not in ("datetime", "datetime64", "string", "empty"):
        raise _wrong_type(spec, received, lambda value: isinstance(value, datetime | str))
    try:
        parsed = pd.to_datetime(received.values, format="ISO8601" if kind == "string" else None)
    except (ValueError, TypeError, OverflowError):
        raise _wrong_type(spec, received, _is_iso_datetime) from None
    return parsed.array


def _is_iso_datetime(value: Any) -> bool:
    if isinstance(value, datetime):
        return True
    try:
        pd.to_datetime(value, format="ISO8601")
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _convert_date(spec: ColumnSpec, received: _Values) -> Array:
    values = received.values
    if values.dtype == np.dtype("datetime64[D]"):
        out: Array = values.astype(object)
        return out
    if values.dtype.kind != "O" and received.kind != "string":
        raise _wrong_type(spec, received, _is_iso_date)
    # Dates and ISO text may come mixed in one JSON column: each value is judged alone.
    out = values.astype(object)
    for row in np.flatnonzero(~received.missing):
        value = out[row]
        if isinstance(value, str):
            try:
                out[row] = date.fromisoformat(value)
            except ValueError:
                raise _wrong_type(spec, received, _is_iso_date) from None
        elif not _is_iso_date(value):
            raise _wrong_type(spec, received, _is_iso_date)
    return out


def _is_iso_date(value: Any) -> bool:
    if isinstance(value, date) and not isinstance(value, datetime):
        return True
    try:
        date.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


def _convert_other(spec: ColumnSpec, received: _Values) -> Array:
    return received.values


_CONVERTERS: dict[LogicalType, Callable[[ColumnSpec, _Values], Any]] = {
    LogicalType.INTEGER: _convert_integer,
    LogicalType.FLOAT: _convert_float,
    LogicalType.BOOLEAN: _convert_boolean,
    LogicalType.CATEGORY: _convert_text,
    LogicalType.STRING: _convert_text,
    LogicalType.DATETIME: _convert_datetime,
    LogicalType.DATE: _convert_date,
}


def _check_levels(spec: ColumnSpec, received: _Values, levels: frozenset[str]) -> None:
    present = received.values[~received.missing] if received.missing.any() else received.values
    unknown = set(present.tolist()) - levels
    if unknown:
        value = sorted(unknown)[0]
        row = int(np.flatnonzero(received.values == value)[0])
        raise _Problem(
            f"column {spec.name!r} received the category {value!r} (row {row}), which was not "
            f"seen in training; known levels: {_listing(spec.levels or ())}. Send a known "
            "level, or retrain the model on data that has this one"
        )


def _count_outside(spec: ColumnSpec, array: Any, missing: Array, refuse: bool) -> int:
    if spec.minimum is None and spec.maximum is None:
        return 0
    low = spec.minimum if spec.minimum is not None else -math.inf
    high = spec.maximum if spec.maximum is not None else math.inf
    if len(array) <= SMALL_COLUMN:  # numpy's per-call overhead dwarfs a few comparisons
        values = array.tolist()
        flags = missing.tolist()
        rejected = [
            value
            for value, absent in zip(values, flags, strict=True)
            if not absent and (value < low or value > high)
        ]
        count = len(rejected)
        first = rejected[0] if rejected else None
    else:
        numbers = np.asarray(array, dtype=np.float64)
        if missing.any():
            numbers = numbers[~missing]
        outside = (numbers < low) | (numbers > high)
        count = int(np.count_nonzero(outside))
        first = numbers[outside][0] if count else None
    if count and refuse:
        value = float(first) if first is not None else math.nan
        raise _Problem(
            f"column {spec.name!r} received {value:g}, outside the training range "
            f"{_range_text(spec)} ({count} value(s) outside); the range policy refuses "
            "them: send values in range, or serve with range_policy='flag'"
        )
    return count


# -- tensors -----------------------------------------------------------------------------------


def _check_tensor(spec: ColumnSpec, value: Any, refuse: bool) -> tuple[Array, int]:
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    expected = np.dtype(spec.dtype) if spec.dtype is not None else array.dtype
    array = _cast_tensor(spec, array, expected)
    _check_shape(spec, array)
    missing = np.isnan(array) if array.dtype.kind == "f" else None
    if missing is not None and not spec.nullable and missing.any():
        position = tuple(int(i) for i in np.argwhere(missing)[0])
        raise _Problem(
            f"tensor {spec.name!r} has NaN at {position}, but had none in training; "
            "send numbers there"
        )
    outside = 0
    if spec.minimum is not None or spec.maximum is not None:
        flat = array.reshape(-1)
        outside = _count_outside(
            spec,
            flat,
            np.zeros(len(flat), bool) if missing is None else missing.reshape(-1),
            refuse,
        )
    return array, outside


def _cast_tensor(spec: ColumnSpec, array: Array, expected: np.dtype[Any]) -> Array:
    have, want = array.dtype, expected
    if have == want:
        return array
    problem = _Problem(
        f"tensor {spec.name!r} expects dtype {want.name}; received {have.name}, which does not "
        f"cast to it without changing values: send {want.name} values"
    )
    if want.kind in "ui" and have.kind in "uif":
        if have.kind == "f" and not np.all(np.isfinite(array) & (array == np.trunc(array))):
            raise problem
        limits = np.iinfo(want)
        if array.size and (array.min() < limits.min or array.max() > limits.max):
            raise problem
        return array.astype(want)
    if want.kind == "f" and have.kind in "uif":
        cast = array.astype(want)
        # float64 -> float32 keeps the numbers JSON sends (they carry no width) unless they
        # overflow the narrower type.
        if have.kind == "f" and np.any(np.isinf(cast) & np.isfinite(array)):
            raise problem
        return cast
    if want.kind in "OUS" and have.kind in "OUS":
        return array
    raise problem


def _check_shape(spec: ColumnSpec, array: Array) -> None:
    shape = spec.shape or ()
    fits = array.ndim == len(shape) and all(
        size in (-1, got) for size, got in zip(shape, array.shape, strict=True)
    )
    if not fits:
        raise _Problem(
            f"tensor {spec.name!r} expects shape {_shape_text(shape)} (-1: any size); "
            f"received {_shape_text(array.shape)}: reshape it, with rows first"
        )


# -- text --------------------------------------------------------------------------------------


def _listing(values: Sequence[str], limit: int = LISTED_LEVELS) -> str:
    shown = ", ".join(repr(value) for value in values[:limit])
    return shown + (f" ... ({len(values)} in all)" if len(values) > limit else "")


def _range_text(spec: ColumnSpec) -> str:
    low = "-inf" if spec.minimum is None else f"{spec.minimum:g}"
    high = "inf" if spec.maximum is None else f"{spec.maximum:g}"
    return f"[{low}, {high}]"


def _shape_text(shape: tuple[int, ...] | None) -> str:
    return "none" if shape is None else "(" + ", ".join(str(size) for size in shape) + ")"


__all__ = [
    "CheckedInput",
    "ColumnSpec",
    "Enforcer",
    "Signature",
    "SignatureError",
    "enforce",
    "infer_signature",
]
