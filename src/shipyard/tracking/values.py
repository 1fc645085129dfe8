"""Python values as stored artifacts: step outputs and run artifacts, safe formats first.

`store_value` writes a value to the project's content-addressed artifact store in the first
format that fits it, `load_value` brings it back, `can_store` answers without writing, and
`compare_values` says whether two stored values are identical, close within a tolerance, or
different (and where).

    kind      stored as                     Python value
    table     Parquet (zstd)                pandas DataFrame, pyarrow Table
    series    Parquet, one column           pandas Series
    array     .npy, never pickled           numpy ndarray whose dtype holds no Python objects
    json      canonical JSON                None, bool, int, float (NaN, inf too), str, numpy
                                            scalars, and lists, tuples, str-keyed dicts of those
    bytes     the bytes themselves          bytes, bytearray
    dataset   no new blob: a reference      a DatasetVersion
    pickle    pickle protocol 5             anything else, unless `allow_pickle=False`

Safe formats can be read by other tools and run no code when loaded. Unpickling can run any
code, so pickles are a last resort, and they are only ever loaded from the project's own
store after their bytes have been checked against their sha256.

Equal values give equal bytes (hence the same digest) for every safe format: Parquet is written
with fixed options and no timestamps, arrays in C order, JSON with sorted keys.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import pickle
import re
import sys
import tempfile
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import ArtifactCorrupted, InvalidInput

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from shipyard.project import Project

KINDS = ("table", "series", "array", "json", "bytes", "dataset", "pickle")
PICKLE_PROTOCOL = 5
PARQUET_COMPRESSION = "zstd"

_SERIES_COLUMN = "__series__"
# Nested tuples in JSON are written as {"__tuple__": [...]}; a user's own one-key dict whose key
# is a tag is wrapped as {"__dict__": {...}} so that it is never mistaken for a tag.
_TUPLE_TAG = "__tuple__"
_DICT_TAG = "__dict__"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_STORABLE = (
    "pandas DataFrames and Series, pyarrow Tables, numpy arrays (not of dtype object), None, "
    "bool, int, float, str, numpy scalars, lists, tuples and str-keyed dicts of those, bytes, "
    "and dataset versions"
)


@dataclass(frozen=True)
class StoredValue:
    """A value in the artifact store: which format, which blob, and what it takes to restore it."""

    kind: str
    digest: str
    size: int
    meta: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "digest": self.digest,
            "size": self.size,
            "meta": copy.deepcopy(self.meta),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> StoredValue:
        if not isinstance(doc, Mapping):
            raise InvalidInput(f"a stored value must be a JSON object, not {_type_name(doc)}")
        kind, digest, size, meta = (doc.get(key) for key in ("kind", "digest", "size", "meta"))
        if kind not in KINDS:
            raise InvalidInput(f"stored value kind {kind!r} is unknown: expected one of {KINDS}")
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise InvalidInput(
                f"stored value digest {digest!r} is invalid: expected 64 lowercase hex digits"
            )
        if type(size) is not int or size < 0:
            raise InvalidInput(f"stored value size {size!r} is invalid: expected an int >= 0")
        if meta is None:
            meta = {}
        if not isinstance(meta, Mapping):
            raise InvalidInput(f"stored value meta must be a JSON object, not {_type_name(meta)}")
        return cls(kind, digest, size, copy.deepcopy(dict(meta)))


@dataclass(frozen=True)
class Comparison:
    """How two stored values relate: "identical", "close" (within tolerance) or "different"."""

    verdict: str
    detail: str
    max_abs_diff: float | None = None


# -- storing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Encoded:
    """A value turned into what its safe format writes, not yet stored."""

    kind: str
    payload: Any
    meta: dict[str, Any]


class _Unsafe(Exception):
    """The value is of a safe kind's type but that format cannot hold this one."""


def store_value(value: Any, project: Project, *, allow_pickle: bool = True) -> StoredValue:
    """Store `value` in the project's artifact store in the safest format that holds it.

    Raises InvalidInput when only a pickle would do and `allow_pickle` is False, or when the
    value cannot be pickled either; nothing is written then.
    """
    reason: str | None = None
    try:
        encoded = _encode(value)
        if encoded is not None:
            return _write(encoded, project)
    except _Unsafe as exc:
        reason = str(exc)
    if not allow_pickle:
        raise InvalidInput(_pickle_refused(value, reason))
    return _store_pickle(value, project, reason)


def can_store(value: Any, *, allow_pickle: bool = True) -> str | None:
    """None when `store_value` would store `value`, else why not; writes nothing.

    Tables are converted to Arrow to find out, so this costs about as much memory as the table.
    """
    try:
        if _encode(value) is not None:
            return None
        reason = None
    except _Unsafe as exc:
        reason = str(exc)
    if not allow_pickle:
        return _pickle_refused(value, reason)
    try:
        pickle.dump(value, _Discard(), protocol=PICKLE_PROTOCOL)
    except Exception as exc:  # a value's own __reduce__ may raise anything
        return _unpicklable(value, reason, exc)
    return None


def _encode(value: Any) -> _Encoded | None:
    """The value in its safe format; None when no safe format is meant for its type."""
    for encoder in _ENCODERS:
        encoded = encoder(value)
        if encoded is not None:
            return encoded
    return None


def _encode_pandas(value: Any) -> _Encoded | None:
    # A module that was never imported cannot have made the value: no need to import it here.
    pd = sys.modules.get("pandas")
    # Subclasses (GeoDataFrame, ...) would come back as plain frames: they are pickled instead.
    if pd is None or type(value) not in (pd.DataFrame, pd.Series):
        return None
    meta: dict[str, Any] = {"format": "parquet", "library": "pandas", "rows": len(value)}
    if type(value) is pd.DataFrame:
        return _Encoded("table", _arrow_from_pandas(value), {**meta, "columns": value.shape[1]})
    name = value.name
    if not _is_json_scalar(name):
        raise _Unsafe(f"its name {name!r} is not a str, int, finite float, bool or None")
    table = _arrow_from_pandas(value.to_frame(_SERIES_COLUMN))
    return _Encoded("series", table, {**meta, "columns": 1, "name": name})


def _arrow_from_pandas(frame: Any) -> pa.Table:
    import pyarrow as pa

    try:
        # The index is kept: a RangeIndex as metadata, any other index as columns.
        return pa.Table.from_pandas(frame)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise _Unsafe(f"pyarrow cannot convert it to a table ({exc})") from exc


def _encode_arrow(value: Any) -> _Encoded | None:
    pa = sys.modules.get("pyarrow")
    if pa is None or type(value) is not pa.Table:
        return None
    meta = {"format": "parquet", "library": "arrow", "rows": value.num_rows}
    return _Encoded("table", value, {**meta, "columns": value.num_columns})


def _encode_array(value: Any) -> _Encoded | None:
    np = sys.modules.get("numpy")
    # Subclasses (masked arrays, matrices) would lose their type in .npy: they are pickled.
    if np is None or type(value) is not np.ndarray:
        return None
    if value.dtype.hasobject:
        raise _Unsafe(f"its dtype {value.dtype} holds Python objects, which .npy only pickles")
    # One memory order for equal data, so that equal arrays get equal bytes.
    array = value if value.flags.c_contiguous else value.copy(order="C")
    return _Encoded("array", array, {"dtype": str(value.dtype), "shape": list(value.shape)})


def _encode_json(value: Any) -> _Encoded | None:
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.generic):
        item = value.item()
        if not _is_json_leaf(item):
            return None
        meta = {"python": "numpy", "dtype": value.dtype.str}
        return _Encoded("json", _canonical_json(item), meta)
    if value is not None and type(value) not in (bool, int, float, str, list, tuple, dict):
        return None
    top = list(value) if type(value) is tuple else value
    context = _JsonContext(tag_tuples=False)
    tree = context.convert(top, "$")
    meta = {"python": type(value).__name__}
    if context.nested_tuples:
        # Rare: pay a second pass only when a nested tuple must come back as a tuple.
        tree = _JsonContext(tag_tuples=True).convert(top, "$")
        meta["tuples"] = "tagged"
    return _Encoded("json", _canonical_json(tree), meta)


def _encode_bytes(value: Any) -> _Encoded | None:
    if type(value) not in (bytes, bytearray):
        return None
    return _Encoded("bytes", bytes(value), {"python": type(value).__name__})


def _encode_dataset(value: Any) -> _Encoded | None:
    versions = sys.modules.get("shipyard.data.versions")
    if versions is None or not isinstance(value, versions.DatasetVersion):
        return None
    return _Encoded("dataset", value, {"ref": value.ref, "content_hash": value.content_hash})


_ENCODERS: tuple[Callable[[Any], _Encoded | None], ...] = (
    _encode_pandas,
    _encode_arrow,
    _encode_array,
    _encode_json,
    _encode_bytes,
    _encode_dataset,
)


class _JsonContext:
    """Turns a value into plain JSON types, noting (or tagging) tuples below the top level."""

    def __init__(self, *, tag_tuples: bool) -> None:
        self.tag_tuples = tag_tuples
        self.nested_tuples = False

    def convert(self, value: Any, where: str) -> Any:
        kind = type(value)
        if value is None or kind in (bool, int, float, str):
            return value
        if kind is list or kind is tuple:
            items = [self.convert(item, f"{where}[{i}]") for i, item in enumerate(value)]
            if kind is list:
                return items
            self.nested_tuples = True
            return {_TUPLE_TAG: items} if self.tag_tuples else items
        if kind is dict:
            return self._convert_dict(value, where)
        return self._convert_numpy(value, where)

    def _convert_dict(self, value: dict[Any, Any], where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _Unsafe(f"{where} has the key {key!r}, but JSON keys are strings")
            out[key] = self.convert(item, f"{where}[{key!r}]")
        if self.tag_tuples and len(out) == 1 and next(iter(out)) in (_TUPLE_TAG, _DICT_TAG):
            return {_DICT_TAG: out}
        return out

    def _convert_numpy(self, value: Any, where: str) -> Any:
        np = sys.modules.get("numpy")
        # Metrics often arrive as numpy scalars inside dicts; they load back as Python numbers,
        # which compare equal to them.
        if np is not None and isinstance(value, np.bool_ | np.integer | np.floating):
            return value.item()
        raise _Unsafe(f"{where} is a {_type_name(value)}, which JSON cannot hold")


def _canonical_json(tree: Any) -> bytes:
    # ASCII escapes keep lone surrogates encodable; NaN and Infinity are Python's extensions.
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return text.encode("ascii")


def _is_json_leaf(value: Any) -> bool:
    return value is None or type(value) in (bool, int, float, str)


def _is_json_scalar(value: Any) -> bool:
    """Fits in `meta`, which lands in database JSON columns: no NaN or infinity there."""
    if type(value) is float:
        return math.isfinite(value)
    return value is None or type(value) in (bool, int, str)


def _write(encoded: _Encoded, project: Project) -> StoredValue:
    kind, payload, meta = encoded.kind, encoded.payload, encoded.meta
    if kind in ("table", "series"):
        digest, size = _write_parquet(payload, project)
    elif kind == "array":
        digest, size = _write_npy(payload, project)
    elif kind == "dataset":
        digest, size = _dataset_blob(payload, project)
    else:
        blob = project.artifacts.put_bytes(payload)
        digest, size = blob.digest, blob.size
    return StoredValue(kind, digest, size, meta)


@contextlib.contextmanager
def _scratch_file(suffix: str) -> Iterator[Path]:
    """A temporary file name, removed afterwards: big values go to disk, not into bytes."""
    with tempfile.TemporaryDirectory(prefix="shipyard-value-") as folder:
        yield Path(folder) / f"value{suffix}"


def _write_parquet(table: pa.Table, project: Project) -> tuple[str, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _scratch_file(".parquet") as path:
        try:
            # Fixed options: the same data always gives the same bytes (Parquet has no clock).
            pq.write_table(table, path, compression=PARQUET_COMPRESSION)
        except pa.ArrowException as exc:
            raise _Unsafe(f"Parquet cannot hold it ({exc})") from exc
        blob = project.artifacts.put_file(path)
    return blob.digest, blob.size


def _write_npy(array: np.ndarray[Any, Any], project: Project) -> tuple[str, int]:
    import numpy as np

    with _scratch_file(".npy") as path:
        np.save(path, array, allow_pickle=False)
        blob = project.artifacts.put_file(path)
    return blob.digest, blob.size


def _dataset_blob(version: Any, project: Project) -> tuple[str, int]:
    # A dataset version is stored already: the value is a reference to its blob.
    if not project.artifacts.exists(version.artifact):
        raise InvalidInput(
            f"dataset version {version.ref} is not in this project's artifact store "
            f"({project.artifacts.url}): expected a version added to this project"
        )
    return str(version.artifact), int(version.size_bytes)


class _Discard:
    """A file that forgets what is written: pickling into it checks that a value pickles."""

    def write(self, data: bytes) -> int:
        return len(data)


def _store_pickle(value: Any, project: Project, reason: str | None) -> StoredValue:
    with _scratch_file(".pkl") as path:
        try:
            with path.open("wb") as handle:
                pickle.dump(value, handle, protocol=PICKLE_PROTOCOL)
        except Exception as exc:  # a value's own __reduce__ may raise anything
            raise InvalidInput(_unpicklable(value, reason, exc)) from exc
        blob = project.artifacts.put_file(path)
    return StoredValue("pickle", blob.digest, blob.size, {"type": _type_name(value)})


def _pickle_refused(value: Any, reason: str | None) -> str:
    why = f" ({reason})" if reason else ""
    return (
        f"cannot store a {_type_name(value)} without pickling it{why}, and pickles are not "
        f"allowed here (allow_pickle=False); expected one of: {_STORABLE}"
    )


def _unpicklable(value: Any, reason: str | None, exc: Exception) -> str:
    why = f" ({reason})" if reason else ""
    return (
        f"cannot store a {_type_name(value)}: no safe format holds it{why} and pickling it "
        f"failed ({type(exc).__name__}: {exc}); expected plain data ({_STORABLE}) or an object "
        "that pickles, without open files, locks, generators or lambdas"
    )


def _type_name(value: Any) -> str:
    kind = type(value)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


# -- loading ----------------------------------------------------------------------------------


def load_value(stored: StoredValue, project: Project) -> Any:
    """The Python value `store_value` stored, read back from the project's artifact store."""
    loader = _LOADERS.get(stored.kind)
    if loader is None:
        raise InvalidInput(f"stored value kind {stored.kind!r} is unknown: expected one of {KINDS}")
    return loader(stored, project)


def _meta(stored: StoredValue, key: str) -> Any:
    if key not in stored.meta:
        raise InvalidInput(
            f"stored {stored.kind} value sha256:{stored.digest} lacks {key!r} in its meta: "
            "expected the meta that store_value wrote"
        )
    return stored.meta[key]


def _read_table(stored: StoredValue, project: Project) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.ParquetFile(project.artifacts.fetch(stored.digest)).read()


def _load_table(stored: StoredValue, project: Project) -> Any:
    table = _read_table(stored, project)
    return table.to_pandas() if stored.meta.get("library") == "pandas" else table


def _load_series(stored: StoredValue, project: Project) -> Any:
    frame = _read_table(stored, project).to_pandas()
    return frame[_SERIES_COLUMN].rename(_meta(stored, "name"))


def _load_array(stored: StoredValue, project: Project) -> Any:
    import numpy as np

    return np.load(project.artifacts.fetch(stored.digest), allow_pickle=False)


def _load_json(stored: StoredValue, project: Project) -> Any:
    tree = json.loads(project.artifacts.read_bytes(stored.digest))
    if stored.meta.get("tuples") == "tagged":
        tree = _untag(tree)
    python = stored.meta.get("python")
    if python == "tuple":
        return tuple(tree)
    if python == "numpy":
        import numpy as np

        return np.dtype(_meta(stored, "dtype")).type(tree)
    return tree


def _untag(tree: Any) -> Any:
    if type(tree) is list:
        return [_untag(item) for item in tree]
    if type(tree) is not dict:
        return tree
    if len(tree) == 1:
        ((key, inner),) = tree.items()
        if key == _TUPLE_TAG:
            return tuple(_untag(item) for item in inner)
        if key == _DICT_TAG:
            return {name: _untag(item) for name, item in inner.items()}
    return {name: _untag(item) for name, item in tree.items()}


def _load_bytes(stored: StoredValue, project: Project) -> Any:
    data = project.artifacts.read_bytes(stored.digest)
    return bytearray(data) if stored.meta.get("python") == "bytearray" else data


def _load_dataset(stored: StoredValue, project: Project) -> Any:
    from shipyard.data.versions import get

    ref, expected = _meta(stored, "ref"), _meta(stored, "content_hash")
    version = get(ref, project=project)
    if version.content_hash != expected:
        raise ArtifactCorrupted(
            f"dataset version {ref} now has content hash {version.content_hash}, but the stored "
            f"value refers to content {expected}; versions are immutable, so the metadata store "
            "was changed outside shipyard. It was not loaded"
        )
    return version


def _load_pickle(stored: StoredValue, project: Project) -> Any:
    # Unpickling runs code. Pickles are never loaded from outside the project's own store: only
    # by digest, through `fetch`, which checks the blob against its sha256. The bytes actually
    # read are hashed again, so the file cannot be swapped between that check and the load.
    data = project.artifacts.fetch(stored.digest).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != stored.digest:
        raise ArtifactCorrupted(
            f"pickled value sha256:{stored.digest} changed while it was read (its bytes hash to "
            f"sha256:{actual}); it was not loaded. Store the value again"
        )
    try:
        return pickle.loads(data)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(
            f"cannot load the pickled {stored.meta.get('type', 'value')} sha256:{stored.digest} "
            f"({exc}); expected the packages (and versions) of the environment that stored it"
        ) from exc


_LOADERS: dict[str, Callable[[StoredValue, Project], Any]] = {
    "table": _load_table,
    "series": _load_series,
    "array": _load_array,
    "json": _load_json,
    "bytes": _load_bytes,
    "dataset": _load_dataset,
    "pickle": _load_pickle,
}


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
    x = _load_array(a, project)
    y = _load_array(b, project)
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
            raise _Differs(f"{where} is a {_type_name(x)} vs a {_type_name(y)}")
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
        kind = _type_name(x)
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
