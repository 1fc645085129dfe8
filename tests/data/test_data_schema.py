"""Schema inference: logical types, nullability and levels, the same from CSV and from frames."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

import shipyard.data as data
from shipyard.data import LogicalType, Schema
from shipyard.project import Project

Write = Callable[[str, str], Path]


def test_nullable_integer_stays_integer(sqlite_project: Project, write: Write) -> None:
    path = write("n.csv", "id,n\n1,5\n2,\n3,7\n4,\n")
    version = data.add(path, "ints", project=sqlite_project)
    column = version.schema.column("n")
    assert (column.type, column.nullable, column.arrow_type) == (LogicalType.INTEGER, True, "int64")
    assert version.schema.column("id").nullable is False
    frame = version.to_pandas()
    assert str(frame["n"].dtype) == "Int64"
    assert frame["n"].tolist()[0] == 5
    assert frame["n"].isna().tolist() == [False, True, False, True]
    assert frame["n"][1] is pd.NA
    assert version.profile.columns["n"].null_count == 2


def test_every_logical_type_is_inferred_from_csv(sqlite_project: Project, write: Write) -> None:
    rows = ["i,f,b,t,d,c,s"]
    for k in range(120):
        rows.append(
            f"{k},{k / 4},{'true' if k % 3 else 'false'},2024-01-01 10:{k % 60:02d}:00,"
            f"2024-02-{k % 28 + 1:02d},{['red', 'green', 'blue'][k % 3]},user-{k:04d}"
        )
    version = data.add(write("all.csv", "\n".join(rows) + "\n"), "all", project=sqlite_project)
    types = {column.name: column.type for column in version.schema.columns}
    assert types == {
        "i": LogicalType.INTEGER,
        "f": LogicalType.FLOAT,
        "b": LogicalType.BOOLEAN,
        "t": LogicalType.DATETIME,
        "d": LogicalType.DATE,
        "c": LogicalType.CATEGORY,
        "s": LogicalType.STRING,
    }
    assert version.schema.column("c").levels == ("blue", "green", "red")
    assert version.schema.column("s").levels is None
    assert all(not column.nullable for column in version.schema.columns)


def test_category_or_string_depends_on_distinct_share(sqlite_project: Project) -> None:
    rows = 400
    frame = pd.DataFrame(
        {
            # many levels, but each repeated: still a category
            "city": [f"city-{k % 150}" for k in range(rows)],
            # a fresh value on every row: free text
            "comment": [f"note {k}" for k in range(rows)],
            # few distinct values, whatever the row count
            "size": [["S", "M", "L"][k % 3] for k in range(rows)],
        }
    )
    version = data.add(frame, "kinds", project=sqlite_project)
    assert version.schema.column("city").type is LogicalType.CATEGORY
    city_levels = version.schema.column("city").levels
    assert city_levels is not None
    assert len(city_levels) == 150
    assert version.schema.column("comment").type is LogicalType.STRING
    assert version.schema.column("size").levels == ("L", "M", "S")


def test_pandas_categorical_is_a_category(sqlite_project: Project) -> None:
    frame = pd.DataFrame(
        {"grade": pd.Categorical(["b", "a", "b", None], categories=["a", "b", "c"])}
    )
    version = data.add(frame, "grades", project=sqlite_project)
    grade = version.schema.column("grade")
    assert grade.type is LogicalType.CATEGORY
    assert grade.nullable
    # Levels are what the data holds, not the declared categories.
    assert grade.levels == ("a", "b")


def test_frame_and_csv_of_same_values_get_same_logical_types(
    sqlite_project: Project, write: Write
) -> None:
    frame = pd.DataFrame(
        {
            "n": np.arange(60, dtype=np.int32),
            "x": np.linspace(0, 1, 60),
            "level": ["p", "q"] * 30,
        }
    )
    from_frame = data.add(frame, "from-frame", project=sqlite_project)
    path = write("same.csv", frame.to_csv(index=False))
    from_csv = data.add(path, "from-csv", project=sqlite_project)
    assert [c.type for c in from_frame.schema.columns] == [c.type for c in from_csv.schema.columns]
    # Storage types may differ (int32 vs int64, large_string vs string); logical ones do not.
    assert from_frame.schema.column("n").arrow_type == "int32"
    assert from_csv.schema.column("n").arrow_type == "int64"


def test_schema_round_trips_through_its_dict(sqlite_project: Project) -> None:
    table = pa.table({"a": [1, None], "b": ["x", "y"]})
    version = data.add(table, "rt", project=sqlite_project)
    assert Schema.from_dict(version.schema.to_dict()) == version.schema
    assert version.schema.names == ["a", "b"]
