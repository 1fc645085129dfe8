"""Python values as stored artifacts: step outputs and run artifacts, safe formats first.

`store_value` writes a value to the project's content-addressed artifact store in the first
format that fits it, `load_value` brings it back, and `can_store` answers without writing.
`shipyard.tracking.comparison` says whether two stored values are identical, close or different.

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
            raise InvalidInput(f"a stored value must be a JSON object, not {type_name(doc)}")
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
            raise InvalidInput(f"stored value meta must be a JSON object, not {type_name(meta)}")
        return cls(kind, digest, size, copy.deepcopy(dict(meta)))


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
        raise _Unsafe(f"{where} is a {type_name(value)}, which JSON cannot hold")


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
    return StoredValue("pickle", blob.digest, blob.size, {"type": type_name(value)})


def _pickle_refused(value: Any, reason: str | None) -> str:
    why = f" ({reason})" if reason else ""
    return (
        f"cannot store a {type_name(value)} without pickling it{why}, and pickles are not "
        f"allowed here (allow_pickle=False); expected one of: {_STORABLE}"
    )


def _unpicklable(value: Any, reason: str | None, exc: Exception) -> str:
    why = f" ({reason})" if reason else ""
    return (
        f"cannot store a {type_name(value)}: no safe format holds it{why} and pickling it "
        f"failed ({type(exc).__name__}: {exc}); expected plain data ({_STORABLE}) or an object "
        "that pickles, without open files, locks, generators or lambdas"
    )


def type_name(value: Any) -> str:
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


def meta_value(stored: StoredValue, key: str) -> Any:
    if key not in stored.meta:
        raise InvalidInput(
            f"stored {stored.kind} value sha256:{stored.digest} lacks {key!r} in its meta: "
            "expected the meta that store_value wrote"
        )
    return stored.meta[key]


def read_table(stored: StoredValue, project: Project) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.ParquetFile(project.artifacts.fetch(stored.digest)).read()


def _load_table(stored: StoredValue, project: Project) -> Any:
    table = read_table(stored, project)
    return table.to_pandas() if stored.meta.get("library") == "pandas" else table


def _load_series(stored: StoredValue, project: Project) -> Any:
    frame = read_table(stored, project).to_pandas()
    return frame[_SERIES_COLUMN].rename(meta_value(stored, "name"))


def load_array(stored: StoredValue, project: Project) -> Any:
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

        return np.dtype(meta_value(stored, "dtype")).type(tree)
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

    ref, expected = meta_value(stored, "ref"), meta_value(stored, "content_hash")
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
    "array": load_array,
    "json": _load_json,
    "bytes": _load_bytes,
    "dataset": _load_dataset,
    "pickle": _load_pickle,
}
