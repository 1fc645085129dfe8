"""Python values in the artifact store: formats, determinism, refusals, tampering, comparison."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import shipyard.data as data
from shipyard.errors import ArtifactCorrupted, InvalidInput
from shipyard.project import Project
from shipyard.tracking.comparison import Comparison, compare_values
from shipyard.tracking.values import StoredValue, can_store, load_value, store_value


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    project = Project.init(tmp_path / ".shipyard")
    yield project
    project.close()


class Model:
    """A stand-in for a fitted estimator: plain attributes and numpy arrays."""

    def __init__(self, coef: list[float], alpha: float = 0.5) -> None:
        self.coef_ = np.asarray(coef)
        self.alpha = alpha
        self.classes_ = ["no", "yes"]


def _frame(shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {"x": [1.0 + shift, 2.0, 3.5], "n": [1, 2, 3], "plan": ["a", "b", "c"]},
        index=pd.Index([10, 20, 30], name="id"),
    )


def _roundtrip(value: Any, project: Project) -> tuple[StoredValue, Any]:
    stored = store_value(value, project, allow_pickle=False)
    again = StoredValue.from_json(stored.to_json())
    assert again == stored
    return stored, load_value(again, project)


# -- round trips ------------------------------------------------------------------------------


def test_dataframe_keeps_its_index_and_dtypes(project: Project) -> None:
    frame = _frame()
    frame["maybe"] = pd.array([1, None, 3], dtype="Int64")
    stored, loaded = _roundtrip(frame, project)
    assert stored.kind == "table"
    assert stored.meta == {"format": "parquet", "library": "pandas", "rows": 3, "columns": 4}
    assert stored.size == project.artifacts.size(stored.digest)
    pd.testing.assert_frame_equal(loaded, frame)


def test_series_keeps_its_name_and_index(project: Project) -> None:
    series = pd.Series([0.5, 1.5], index=pd.Index(["a", "b"], name="key"), name="score")
    stored, loaded = _roundtrip(series, project)
    assert (stored.kind, stored.meta["name"]) == ("series", "score")
    pd.testing.assert_series_equal(loaded, series)
    unnamed = pd.Series([1, 2])
    pd.testing.assert_series_equal(_roundtrip(unnamed, project)[1], unnamed)


def test_arrow_table_comes_back_as_arrow(project: Project) -> None:
    table = pa.table({"k": [1, 2], "v": ["x", None]})
    stored, loaded = _roundtrip(table, project)
    assert stored.meta["library"] == "arrow"
    assert loaded.equals(table)


def test_arrays_are_npy_without_pickle(project: Project) -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    stored, loaded = _roundtrip(array, project)
    assert stored.kind == "array"
    assert stored.meta == {"dtype": "float32", "shape": [3, 4]}
    assert project.artifacts.read_bytes(stored.digest).startswith(b"\x93NUMPY")
    assert loaded.dtype == array.dtype
    np.testing.assert_array_equal(loaded, array)
    # A Fortran-ordered view of the same data is the same blob.
    assert store_value(np.asfortranarray(array), project).digest == stored.digest
    zero_d = np.array(7)
    assert _roundtrip(zero_d, project)[1].shape == ()


def test_json_values_round_trip(project: Project) -> None:
    value = {"b": [1, 2.5, None, True], "a": {"nested": "x"}, "pair": (1, (2, "3"))}
    stored, loaded = _roundtrip(value, project)
    assert stored.kind == "json"
    assert loaded == value
    assert type(loaded["pair"]) is tuple and type(loaded["pair"][1]) is tuple
    # A user's own dict that looks like a tag is not mistaken for one.
    tricky = {"__tuple__": [1]}, {"__dict__": {"k": (1,)}}
    assert _roundtrip(tricky, project)[1] == tricky


def test_plain_json_is_canonical(project: Project) -> None:
    stored = store_value({"b": 1, "a": [1, 2]}, project)
    assert project.artifacts.read_bytes(stored.digest) == b'{"a":[1,2],"b":1}'
    assert stored.meta == {"python": "dict"}


def test_top_level_tuple_and_scalars(project: Project) -> None:
    stored, loaded = _roundtrip((1, "a", None), project)
    assert stored.meta["python"] == "tuple" and loaded == (1, "a", None)
    for scalar in (None, True, 3, "text", -0.0, math.inf, 10**30):
        assert _roundtrip(scalar, project)[1] == scalar


def test_nan_float(project: Project) -> None:
    stored, loaded = _roundtrip(float("nan"), project)
    assert stored.kind == "json" and math.isnan(loaded)
    assert math.isnan(_roundtrip({"loss": [float("nan")]}, project)[1]["loss"][0])


def test_numpy_scalars_are_json(project: Project) -> None:
    for scalar in (np.float32(0.1), np.int64(-3), np.bool_(True)):
        stored, loaded = _roundtrip(scalar, project)
        assert stored.kind == "json"
        assert type(loaded) is type(scalar) and loaded == scalar
    stored, loaded = _roundtrip({"acc": np.float64(0.9), "n": np.int64(4)}, project)
    assert stored.kind == "json" and loaded == {"acc": 0.9, "n": 4}


def test_bytes(project: Project) -> None:
    assert _roundtrip(b"\x00\xff", project)[1] == b"\x00\xff"
    loaded = _roundtrip(bytearray(b"ab"), project)[1]
    assert type(loaded) is bytearray and loaded == b"ab"


def test_objects_are_pickled_when_allowed(project: Project) -> None:
    stored = store_value(Model([1.0, 2.0]), project)
    assert stored.kind == "pickle"
    assert stored.meta == {"type": f"{__name__}.Model"}
    loaded = load_value(stored, project)
    assert isinstance(loaded, Model)
    np.testing.assert_array_equal(loaded.coef_, [1.0, 2.0])
    # Not quite JSON (an int key) and not quite a table (mixed column) fall back to pickle.
    assert store_value({1: "a"}, project).kind == "pickle"
    mixed = pd.DataFrame({"a": [1, "x"]})
    assert store_value(mixed, project).kind == "pickle"
    pd.testing.assert_frame_equal(load_value(store_value(mixed, project), project), mixed)


def test_dataset_version_is_a_reference(project: Project) -> None:
    version = data.add(_frame(), "things", project=project)
    before = set(project.artifacts.digests())
    stored, loaded = _roundtrip(version, project)
    assert set(project.artifacts.digests()) == before
    assert stored.kind == "dataset" and stored.digest == version.artifact
    assert stored.meta == {"ref": "things@1", "content_hash": version.content_hash}
    assert loaded == version


# -- determinism ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        _frame,
        lambda: pd.Series([1.0, 2.0], name="s"),
        lambda: pa.table({"a": [1, 2]}),
        lambda: np.linspace(0, 1, 5),
        lambda: {"z": 1, "a": (1, 2), "m": [0.1]},
    ],
    ids=["frame", "series", "arrow", "array", "json"],
)
def test_equal_values_get_equal_digests(project: Project, make: Any) -> None:
    first, second = store_value(make(), project), store_value(make(), project)
    assert first == second


def test_a_rebuilt_equal_frame_gets_the_same_digest(project: Project) -> None:
    frame = _frame()
    rebuilt = pd.DataFrame(
        {name: list(frame[name]) for name in reversed(frame.columns)},
        index=pd.Index([10, 20, 30], name="id"),
    )[list(frame.columns)]
    assert store_value(rebuilt, project).digest == store_value(frame, project).digest


# -- refusals ---------------------------------------------------------------------------------


def test_no_pickle_refuses_an_object_and_writes_nothing(project: Project) -> None:
    before = set(project.artifacts.digests())
    with pytest.raises(InvalidInput) as caught:
        store_value(Model([1.0]), project, allow_pickle=False)
    message = str(caught.value)
    assert f"{__name__}.Model" in message and "allow_pickle=False" in message
    assert "numpy arrays" in message  # says what would be storable
    assert set(project.artifacts.digests()) == before
    reason = can_store(Model([1.0]), allow_pickle=False)
    assert reason is not None and "Model" in reason
    assert can_store(Model([1.0])) is None


def test_no_pickle_names_the_part_json_cannot_hold(project: Project) -> None:
    with pytest.raises(InvalidInput, match=r"\$\['w'\]\[1\] is a set"):
        store_value({"w": [1, {2}]}, project, allow_pickle=False)
    with pytest.raises(InvalidInput, match="dtype object"):
        store_value(np.array([1, "a"], dtype=object), project, allow_pickle=False)


def _numbers() -> Iterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(lambda x: x, "function"), (_numbers(), "generator"), (threading.Lock(), "lock")],
    ids=["lambda", "generator", "lock"],
)
def test_unpicklable_values_are_refused(project: Project, value: Any, type_name: str) -> None:
    before = set(project.artifacts.digests())
    with pytest.raises(InvalidInput, match=f"cannot store a .*{type_name}.*pickling it failed"):
        store_value(value, project)
    # Inside plain data, the message points at the part that is to blame.
    with pytest.raises(InvalidInput, match=rf"cannot store a dict.*\$\['f'\] is a .*{type_name}"):
        store_value({"f": value}, project)
    assert set(project.artifacts.digests()) == before
    reason = can_store([value])
    assert reason is not None and "pickling it failed" in reason
    assert can_store([1, 2]) is None


def test_a_tampered_pickle_is_not_loaded(project: Project) -> None:
    stored = store_value(Model([1.0]), project)
    blob = Path(project.artifacts.key(stored.digest))
    blob.write_bytes(blob.read_bytes().replace(b"alpha", b"alphb"))
    with pytest.raises(ArtifactCorrupted, match=stored.digest):
        load_value(stored, project)


def test_bad_stored_value_documents_are_refused() -> None:
    good = {"kind": "json", "digest": "a" * 64, "size": 2, "meta": {}}
    assert StoredValue.from_json(good).kind == "json"
    for key, bad in (("kind", "yaml"), ("digest", "abc"), ("size", -1), ("meta", [])):
        with pytest.raises(InvalidInput, match=key):
            StoredValue.from_json({**good, key: bad})


# -- comparison -------------------------------------------------------------------------------


def _compare(a: Any, b: Any, project: Project, **tolerance: float) -> Comparison:
    return compare_values(store_value(a, project), store_value(b, project), project, **tolerance)


def test_compare_tables(project: Project) -> None:
    assert _compare(_frame(), _frame(), project).verdict == "identical"
    close = _compare(_frame(), _frame(shift=1e-10), project)
    assert close.verdict == "close" and close.max_abs_diff == pytest.approx(1e-10, rel=0.01)
    assert "max abs difference" in close.detail
    far = _compare(_frame(), _frame(shift=0.5), project)
    assert far.verdict == "different" and "column 'x'" in far.detail and "1 rows" in far.detail
    renamed = _frame().assign(plan=["a", "B", "C"])
    assert _compare(_frame(), renamed, project).detail == "column 'plan' differs in 2 rows"
    assert "columns differ" in _compare(_frame(), _frame().drop(columns="n"), project).detail
    assert "index" in _compare(_frame(), _frame().reset_index(), project).detail
    reordered = _frame()[["n", "x", "plan"]]
    assert "column order differs" in _compare(_frame(), reordered, project).detail
    retyped = _compare(_frame(), _frame().astype({"n": "float64"}), project)
    assert retyped.detail == "column 'n' is int64 vs double"


def test_compare_series_names(project: Project) -> None:
    result = _compare(pd.Series([1.0], name="a"), pd.Series([1.0], name="b"), project)
    assert result.verdict == "different" and "names differ" in result.detail


def test_compare_arrays(project: Project) -> None:
    base = np.linspace(0.0, 1.0, 50)
    assert _compare(base, base.copy(), project).verdict == "identical"
    close = _compare(base, base + 1e-12, project)
    assert close.verdict == "close" and close.max_abs_diff is not None
    assert close.max_abs_diff < 1e-11
    far = _compare(base, base + 1e-3, project)
    assert far.verdict == "different" and "beyond tolerance" in far.detail
    assert _compare(base, base + 1e-3, project, atol=1e-2).verdict == "close"
    assert "shapes differ" in _compare(base, base[:10], project).detail
    assert "dtypes differ" in _compare(base, base.astype(np.float32), project).detail
    nan = np.array([1.0, np.nan])
    assert _compare(nan, nan + np.array([1e-12, 0.0]), project).verdict == "close"


def test_compare_json(project: Project) -> None:
    metrics = {"acc": 0.9, "counts": [1, 2], "name": "m"}
    assert _compare(metrics, dict(metrics), project).verdict == "identical"
    close = _compare(metrics, {**metrics, "acc": 0.9 + 1e-12}, project)
    assert close.verdict == "close"
    far = _compare(metrics, {**metrics, "counts": [1, 3]}, project)
    assert far.verdict == "different" and "['counts'][1]" in far.detail
    # The same JSON bytes, restored as a tuple or as a list, are different values.
    assert _compare((1, 2), [1, 2], project).verdict == "different"


def test_compare_pickled_objects(project: Project) -> None:
    assert _compare(Model([1.0, 2.0]), Model([1.0, 2.0]), project).verdict == "identical"
    close = _compare(Model([1.0, 2.0]), Model([1.0, 2.0 + 1e-12]), project)
    assert close.verdict == "close" and close.max_abs_diff is not None
    far = _compare(Model([1.0, 2.0]), Model([1.0, 3.0]), project)
    assert far.verdict == "different" and "coef_" in far.detail
    other = _compare(Model([1.0]), Model([1.0], alpha=0.7), project)
    assert other.verdict == "different" and "alpha" in other.detail
    assert _compare(Model([1.0]), {1: "x"}, project).verdict == "different"


def test_compare_datasets_and_kinds(project: Project) -> None:
    one = data.add(_frame(), "one", project=project)
    same = data.add(_frame(), "same", project=project)
    moved = data.add(_frame(shift=1.0), "moved", project=project)
    assert _compare(one, same, project).verdict == "identical"
    assert _compare(one, moved, project).verdict == "different"
    kinds = _compare(np.zeros(2), [0.0, 0.0], project)
    assert (kinds.verdict, kinds.detail) == ("different", "kinds differ: array vs json")
