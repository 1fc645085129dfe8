"""`data.add` from every kind of source, the data read back, and bad input refused cleanly."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import shipyard.data as data
from shipyard.errors import InvalidInput
from shipyard.project import Project

CSV = "id,price,city,when\n1,9.5,Oslo,2024-01-01\n2,12.25,Lima,2024-01-02\n3,,Oslo,2024-01-03\n"

Write = Callable[[str, str], Path]


def _stored_files(project: Project) -> list[Path]:
    root = Path(project.artifacts.root)
    return sorted(path for path in root.rglob("*") if path.is_file())


def _assert_nothing_stored(project: Project) -> None:
    assert data.list_datasets(project=project) == []
    assert _stored_files(project) == []


def test_csv_is_stored_as_read(sqlite_project: Project, write: Write) -> None:
    path = write("prices.csv", CSV)
    version = data.add(path, "prices", description="first", project=sqlite_project)
    assert version.created
    assert (version.ref, version.num_rows, version.num_columns) == ("prices@1", 3, 4)
    assert version.source_format == "csv"
    assert version.source == str(path.resolve())
    assert version.description == "first"
    assert version.to_arrow().equals(pacsv.read_csv(path))
    # The stored blob is exactly what `path()` hands out, and it is a Parquet file.
    assert pq.read_table(version.path()).equals(version.to_arrow())


def test_tsv_and_gzip_csv_give_the_same_table_as_csv(sqlite_project: Project, tmp_path: Path):
    plain = tmp_path / "a.csv"
    plain.write_text(CSV)
    tsv = tmp_path / "a.tsv"
    tsv.write_text(CSV.replace(",", "\t"))
    packed = tmp_path / "a.csv.gz"
    packed.write_bytes(gzip.compress(CSV.encode()))
    expected = pacsv.read_csv(plain)

    versions = [data.add(p, "same", project=sqlite_project) for p in (plain, tsv, packed)]
    assert [v.source_format for v in versions] == ["csv", "tsv", "csv"]
    for version in versions:
        assert version.to_arrow().equals(expected)
    # Each file's bytes differ, so each is a version of its own.
    assert [v.version for v in versions] == [1, 2, 3]
    assert len({v.content_hash for v in versions}) == 3


def test_parquet_is_stored_byte_for_byte(sqlite_project: Project, tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int32()),
            "score": [0.5, None, 1.5],
            "tag": ["a", "b", None],
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    version = data.add(path, "pq", project=sqlite_project)
    assert version.source_format == "parquet"
    assert version.path().read_bytes() == path.read_bytes()
    assert version.to_arrow().equals(table)
    assert version.schema.column("id").arrow_type == "int32"


def test_pandas_frame_round_trips(sqlite_project: Project) -> None:
    frame = pd.DataFrame(
        {
            "n": pd.array([1, None, 3], dtype="Int64"),
            "x": [0.25, 1.5, -2.0],
            "flag": pd.array([True, False, None], dtype="boolean"),
            "s": ["a", "b", "c"],
            "at": pd.to_datetime(["2024-01-01", "2024-06-30", "2025-01-01"]),
        }
    )
    version = data.add(frame, "frame", project=sqlite_project)
    assert (version.source_format, version.source) == ("table", "in-memory table")
    back = version.to_pandas()
    assert list(back.columns) == list(frame.columns)
    assert back["n"].dtype == "Int64"
    assert back["flag"].dtype == "boolean"
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert back["n"].isna().tolist() == [False, True, False]
    assert back["flag"].isna().tolist() == [False, False, True]


def test_arrow_table_round_trips(sqlite_project: Project) -> None:
    table = pa.table({"k": pa.array([3, 1, 2], pa.int64()), "v": ["x", "y", "z"]})
    version = data.add(table, "arrow", project=sqlite_project)
    assert version.to_arrow().equals(table)
    assert version.to_arrow(["v"]).column_names == ["v"]
    batches = list(version.iter_batches())
    assert pa.Table.from_batches(batches).equals(table)


def test_frame_and_equal_arrow_table_are_one_version(sqlite_project: Project) -> None:
    frame = pd.DataFrame({"a": np.arange(5, dtype=np.int64), "b": np.linspace(0, 1, 5)})
    first = data.add(frame, "t", project=sqlite_project)
    second = data.add(
        pa.Table.from_pandas(frame, preserve_index=False), "t", project=sqlite_project
    )
    assert first.created and not second.created
    assert second.ref == "t@1"


def test_declared_format_and_pinned_column_types(sqlite_project: Project, write: Write) -> None:
    path = write("codes.txt", "zip,amount\n01234,5\n98765,7\n")
    with pytest.raises(InvalidInput, match=r"cannot tell the format of codes\.txt"):
        data.add(path, "codes", project=sqlite_project)
    version = data.add(
        path,
        "codes",
        format="csv",
        column_types={"zip": "string", "amount": "float"},
        project=sqlite_project,
    )
    assert version.to_arrow().column("zip").to_pylist() == ["01234", "98765"]
    assert version.schema.column("amount").type is data.LogicalType.FLOAT
    assert version.schema.column("amount").arrow_type == "double"


def _mixed_frame() -> pd.DataFrame:
    return pd.DataFrame({"a": pd.Series([1, "x"], dtype="object")})


BAD_SOURCES: list[tuple[str, Any, dict[str, Any], str]] = [
    ("empty file", ("empty.csv", ""), {}, "empty.csv is empty"),
    ("header only", ("head.csv", "a,b\n"), {}, "has a header but no rows"),
    ("ragged row", ("rag.csv", "a,b\n1,2\n3,4,5\n"), {}, "malformed CSV file .*rag.csv"),
    ("repeated column", ("dup.csv", "a,a\n1,2\n"), {}, "repeats the column name.* a"),
    ("unknown suffix", ("x.json", "a\n1\n"), {}, "cannot tell the format of x.json"),
    ("unknown format", ("x.csv", "a\n1\n"), {"format": "xlsx"}, "format 'xlsx' is not supported"),
    ("bad type", ("x.csv", "a\n1\n"), {"column_types": {"a": "int"}}, "type 'int' for column 'a'"),
    ("not parquet", ("x.parquet", "a,b\n1,2\n"), {}, "not a readable Parquet file"),
]


@pytest.mark.parametrize(
    ("file", "options", "message"),
    [case[1:] for case in BAD_SOURCES],
    ids=[case[0] for case in BAD_SOURCES],
)
def test_bad_files_are_refused_and_nothing_is_stored(
    sqlite_project: Project,
    write: Write,
    file: tuple[str, str],
    options: dict[str, Any],
    message: str,
) -> None:
    path = write(*file)
    with pytest.raises(InvalidInput, match=message):
        data.add(path, "bad", project=sqlite_project, **options)
    _assert_nothing_stored(sqlite_project)


def test_missing_file_and_folder_are_refused(sqlite_project: Project, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        data.add(tmp_path / "nope.csv", "bad", project=sqlite_project)
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(InvalidInput, match="is not a file"):
        data.add(tmp_path / "folder.csv", "bad", project=sqlite_project)
    _assert_nothing_stored(sqlite_project)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: {"a": [1]}, "cannot add a dict"),
        (_mixed_frame, "DataFrame cannot be stored"),
        (lambda: pd.DataFrame({"a": pd.Series([], dtype="int64")}), "no rows"),
        (lambda: pa.table({}), "no columns"),
    ],
    ids=["dict", "mixed-type column", "no rows", "no columns"],
)
def test_bad_in_memory_sources_are_refused(
    sqlite_project: Project, make: Callable[[], Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        data.add(make(), "bad", project=sqlite_project)
    _assert_nothing_stored(sqlite_project)


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "a..b", "x" * 129, "a b"])
def test_bad_dataset_names_are_refused(sqlite_project: Project, write: Write, name: str) -> None:
    path = write("ok.csv", "a\n1\n")
    with pytest.raises(InvalidInput, match=r"dataset name .* is invalid"):
        data.add(path, name, project=sqlite_project)
    _assert_nothing_stored(sqlite_project)
