"""Splits: exact ratio sizes, disjoint parts that add up to the parent, reproducible seeds,
time order, and failed splits that store nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import shipyard.data as data
from shipyard.data import DatasetVersion
from shipyard.errors import InvalidInput
from shipyard.project import Project

START = datetime(2024, 1, 1)


def _parent(project: Project, rows: int = 100, name: str = "events") -> DatasetVersion:
    rng = np.random.default_rng(0)
    minutes = rng.permutation(rows)  # times out of order in the file
    table = pa.table(
        {
            "id": pa.array(np.arange(rows), pa.int64()),
            "x": rng.normal(0, 1, rows),
            "group": rng.choice(["a", "b", "c"], rows),
            "at": pa.array(
                [START + timedelta(minutes=int(m)) for m in minutes], pa.timestamp("us")
            ),
        }
    )
    return data.add(table, name, project=project)


def _rows(version: DatasetVersion) -> list[tuple[Any, ...]]:
    table = version.to_arrow()
    return sorted(zip(*(table.column(n).to_pylist() for n in table.column_names), strict=True))


def _union_rows(parts: dict[str, DatasetVersion]) -> list[tuple[Any, ...]]:
    return sorted(chain.from_iterable(_rows(part) for part in parts.values()))


def _store_state(project: Project) -> tuple[list[tuple[str, int, str]], list[Path]]:
    versions = [
        (s.name, v.version, v.content_hash)
        for s in data.list_datasets(project=project)
        for v in data.versions(s.name, project=project)
    ]
    files = sorted(p for p in Path(project.artifacts.root).rglob("*") if p.is_file())
    return versions, files


@pytest.mark.parametrize(
    ("rows", "ratios", "sizes"),
    [
        (100, {"train": 0.7, "validation": 0.15, "test": 0.15}, [70, 15, 15]),
        (100, {"train": 0.71, "test": 0.29}, [71, 29]),
        (10, {"left": 0.5, "right": 0.5}, [5, 5]),
        (200, {"a": 0.6, "b": 0.3, "c": 0.1}, [120, 60, 20]),
    ],
    ids=["70-15-15", "71-29", "50-50", "60-30-10"],
)
def test_ratio_parts_have_exact_sizes(
    sqlite_project: Project, rows: int, ratios: dict[str, float], sizes: list[int]
) -> None:
    parent = _parent(sqlite_project, rows)
    parts = data.split(parent, ratios, seed=1)
    assert list(parts) == list(ratios)
    assert [part.num_rows for part in parts.values()] == sizes


@pytest.mark.parametrize(
    ("rows", "ratios"),
    [
        (7, {"train": 0.7, "test": 0.3}),
        (33, None),  # the default train/validation/test = 0.7/0.15/0.15
        (101, {"a": 0.2, "b": 0.2, "c": 0.2, "d": 0.2, "e": 0.2}),
    ],
)
def test_uneven_sizes_stay_within_a_row_of_their_share(
    sqlite_project: Project, rows: int, ratios: dict[str, float] | None
) -> None:
    parent = _parent(sqlite_project, rows)
    parts = data.split(parent, ratios, seed=2)
    shares = ratios or {"train": 0.7, "validation": 0.15, "test": 0.15}
    assert list(parts) == list(shares)
    sizes = {name: part.num_rows for name, part in parts.items()}
    assert sum(sizes.values()) == rows
    for name, share in shares.items():
        assert abs(sizes[name] - share * rows) < 1, sizes


def test_parts_are_disjoint_and_add_up_to_the_parent(sqlite_project: Project) -> None:
    parent = _parent(sqlite_project, 300)
    parts = data.split(parent, seed=5)
    assert list(parts) == ["train", "validation", "test"]
    assert [p.ref for p in parts.values()] == [
        "events-train@1",
        "events-validation@1",
        "events-test@1",
    ]
    ids = [set(p.to_arrow().column("id").to_pylist()) for p in parts.values()]
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert not ids[i] & ids[j]
    assert _union_rows(parts) == _rows(parent)
    # Each part keeps the parent's schema.
    for part in parts.values():
        assert part.to_arrow().schema.equals(parent.to_arrow().schema)


def test_same_seed_same_versions_other_seed_other_parts(sqlite_project: Project) -> None:
    parent = _parent(sqlite_project)
    ratios = {"train": 0.8, "test": 0.2}
    first = data.split(parent, ratios, seed=7)
    again = data.split(parent, ratios, seed=7)
    assert all(p.created for p in first.values())
    assert not any(p.created for p in again.values())
    assert [p.ref for p in again.values()] == [p.ref for p in first.values()]
    assert [p.content_hash for p in again.values()] == [p.content_hash for p in first.values()]
    assert _rows(again["test"]) == _rows(first["test"])

    other = data.split(parent, ratios, seed=8)
    assert [p.ref for p in other.values()] == ["events-train@2", "events-test@2"]
    assert all(p.created for p in other.values())
    assert _rows(other["test"]) != _rows(first["test"])
    assert [p.num_rows for p in other.values()] == [80, 20]
    assert other["test"].split is not None and other["test"].split["seed"] == 8


def test_prefix_names_the_parts(sqlite_project: Project) -> None:
    parts = data.split(_parent(sqlite_project), {"fit": 0.5, "hold": 0.5}, prefix="exp1")
    assert [p.ref for p in parts.values()] == ["exp1-fit@1", "exp1-hold@1"]


def test_time_split_puts_train_before_test(sqlite_project: Project) -> None:
    parent = _parent(sqlite_project, 200)
    parts = data.split(parent, {"train": 0.75, "test": 0.25}, by_time="at")
    train = parts["train"].to_arrow().column("at").to_pylist()
    test = parts["test"].to_arrow().column("at").to_pylist()
    assert max(train) < min(test)
    assert (len(train), len(test)) == (150, 50)
    split = parts["test"].split
    assert split is not None
    assert (split["strategy"], split["column"], split["part"]) == ("time", "at", "test")
    assert _union_rows(parts) == _rows(parent)


def test_time_split_at_given_cutoffs(sqlite_project: Project) -> None:
    parent = _parent(sqlite_project, 100)
    cutoffs = ["2024-01-01T00:30:00", "2024-01-01T01:00:00"]
    parts = data.split(parent, by_time="at", cutoffs=cutoffs)
    assert list(parts) == ["train", "validation", "test"]
    assert [p.num_rows for p in parts.values()] == [30, 30, 40]
    first_cut, second_cut = START + timedelta(minutes=30), START + timedelta(minutes=60)
    assert all(t < first_cut for t in parts["train"].to_arrow().column("at").to_pylist())
    validation = parts["validation"].to_arrow().column("at").to_pylist()
    assert all(first_cut <= t < second_cut for t in validation)
    assert all(t >= second_cut for t in parts["test"].to_arrow().column("at").to_pylist())


def test_time_split_on_a_number_column(sqlite_project: Project) -> None:
    parent = _parent(sqlite_project, 50)
    parts = data.split(parent, {"early": 0.6, "late": 0.4}, by_time="id")
    assert max(parts["early"].to_arrow().column("id").to_pylist()) == 29
    assert min(parts["late"].to_arrow().column("id").to_pylist()) == 30


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"ratios": {"a": 0.99, "b": 0.005, "c": 0.005}},
            r"part\(s\) b, c of events@1 would be empty",
        ),
        ({"by_time": "at", "cutoffs": ["2030-01-01"]}, r"part\(s\) validation of events@1"),
        ({"ratios": {"a": 1.0}}, "at least two parts"),
        ({"ratios": {"a": 0.5, "b": 0.6}}, "must add up to 1"),
        ({"ratios": {"a": 1.5, "b": -0.5}}, "must be positive"),
        ({"by_time": "group"}, "column 'group' is category"),
        ({"by_time": "nope"}, "time column 'nope' is not in events@1"),
        ({"cutoffs": ["2024-01-01"]}, "cutoffs need a time column"),
        ({"by_time": "at", "cutoffs": ["2024-02-01", "2024-01-01"]}, "increasing order"),
        ({"by_time": "at", "cutoffs": ["soon"]}, r"cutoffs \['soon'\] do not parse"),
        ({"prefix": "../up"}, "dataset name '../up' is invalid"),
    ],
    ids=[
        "empty ratio part",
        "empty time part",
        "one part",
        "sum above 1",
        "negative",
        "category time column",
        "unknown time column",
        "cutoffs without column",
        "decreasing cutoffs",
        "unparsable cutoff",
        "bad prefix",
    ],
)
def test_bad_splits_store_nothing(
    sqlite_project: Project, kwargs: dict[str, Any], message: str
) -> None:
    parent = _parent(sqlite_project, 40)
    before = _store_state(sqlite_project)
    with pytest.raises(InvalidInput, match=message):
        data.split(parent, **kwargs)
    assert _store_state(sqlite_project) == before
    assert [s.name for s in data.list_datasets(project=sqlite_project)] == ["events"]


def test_a_split_that_cannot_be_recorded_stores_no_part(tmp_path: Path) -> None:
    """All parts are recorded in one transaction: a locked database leaves none of them."""
    import sqlite3

    from shipyard.errors import DatabaseLocked

    project = Project.init(tmp_path / ".shipyard-locked", database_timeout=0.5)
    parent = _parent(project, 60)
    before = _store_state(project)
    holder = sqlite3.connect(project.metadata.url.database or "", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseLocked, match="locked by another process"):
            data.split(parent, {"train": 0.5, "test": 0.5}, seed=3)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _store_state(project) == before
    parts = data.split(parent, {"train": 0.5, "test": 0.5}, seed=3)
    assert [p.num_rows for p in parts.values()] == [30, 30]
