"""Versions, dedupe by content, references and lineage, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import func, select

import shipyard.data as data
from shipyard.data.profile import TableProfile
from shipyard.errors import InvalidInput, NotFound
from shipyard.project import Project
from shipyard.store.models import DatasetRecord, DatasetVersionRecord


def _row_counts(project: Project) -> tuple[int, int]:
    with project.metadata.read() as session:
        datasets = session.scalar(select(func.count()).select_from(DatasetRecord))
        versions = session.scalar(select(func.count()).select_from(DatasetVersionRecord))
    return int(datasets or 0), int(versions or 0)


def _table(start: int, rows: int = 5) -> pa.Table:
    return pa.table({"k": list(range(start, start + rows)), "v": [f"x{i}" for i in range(rows)]})


def test_same_content_is_the_same_version(project: Project, tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("a,b\n1,x\n2,y\n")
    first = data.add(path, "ds", project=project)
    again = data.add(path, "ds", description="ignored", project=project)
    assert first.created and not again.created
    assert again == first
    assert again.ref == "ds@1"
    assert (again.content_hash, again.artifact) == (first.content_hash, first.artifact)
    assert _row_counts(project) == (1, 1)

    # The same bytes under another file name are still the same content.
    copy = tmp_path / "copy.csv"
    copy.write_bytes(path.read_bytes())
    assert data.add(copy, "ds", project=project).ref == "ds@1"
    assert _row_counts(project) == (1, 1)


def test_new_content_gets_the_next_number(project: Project) -> None:
    refs = [data.add(_table(start), "counted", project=project).ref for start in (0, 10, 20)]
    assert refs == ["counted@1", "counted@2", "counted@3"]
    # Going back to earlier content returns the earlier version, not a fourth.
    old = data.add(_table(10), "counted", project=project)
    assert (old.ref, old.created) == ("counted@2", False)
    assert [v.version for v in data.versions("counted", project=project)] == [1, 2, 3]
    assert _row_counts(project) == (1, 3)


def test_same_content_in_another_dataset_is_its_own_version(project: Project) -> None:
    one = data.add(_table(0), "one", project=project)
    two = data.add(_table(0), "two", project=project)
    assert two.created
    assert (one.ref, two.ref) == ("one@1", "two@1")
    assert one.content_hash == two.content_hash
    assert one.artifact == two.artifact  # one blob serves both
    assert _row_counts(project) == (2, 2)


def test_get_by_reference(project: Project) -> None:
    for start in (0, 10, 20):
        data.add(_table(start), "refs", project=project)
    assert data.get("refs", project=project).ref == "refs@3"
    assert data.get("refs@latest", project=project).ref == "refs@3"
    second = data.get("refs@2", project=project)
    assert second.ref == "refs@2"
    assert second.to_arrow().equals(_table(10))
    assert str(second) == "refs@2"


@pytest.mark.parametrize(
    ("ref", "error", "message"),
    [
        ("refs@0", InvalidInput, r"version '0' in 'refs@0' is invalid"),
        ("refs@two", InvalidInput, r"version 'two' in 'refs@two' is invalid"),
        ("refs@-1", InvalidInput, r"version '-1'"),
        ("refs@1@2", InvalidInput, r"version '1@2'"),
        ("../refs", InvalidInput, r"dataset name '\.\./refs' is invalid"),
        ("refs@9", NotFound, r"dataset 'refs' has no version 9; its versions are 1 to 2"),
        ("ref", NotFound, r"no dataset named 'ref'; did you mean refs\?"),
        ("zzz@1", NotFound, r"no dataset named 'zzz'"),
    ],
)
def test_bad_references(project: Project, ref: str, error: type[Exception], message: str) -> None:
    data.add(_table(0), "refs", project=project)
    data.add(_table(10), "refs", project=project)
    with pytest.raises(error, match=message):
        data.get(ref, project=project)


def test_versions_and_list_datasets(project: Project) -> None:
    assert data.list_datasets(project=project) == []
    data.add(_table(0), "beta", description="second dataset", project=project)
    for start in (0, 10):
        data.add(_table(start, rows=3), "alpha", description="first dataset", project=project)
    summaries = data.list_datasets(project=project)
    assert [(s.name, s.versions, s.latest.ref) for s in summaries] == [
        ("alpha", 2, "alpha@2"),
        ("beta", 1, "beta@1"),
    ]
    assert summaries[0].description == "first dataset"
    assert summaries[0].latest.num_rows == 3
    history = data.versions("alpha", project=project)
    assert [v.ref for v in history] == ["alpha@1", "alpha@2"]
    assert history[0].created_at <= history[1].created_at
    assert history[0].created_by == project.user
    with pytest.raises(NotFound, match="no dataset named 'gamma'"):
        data.versions("gamma", project=project)


def test_lineage_source_parent_and_split(project: Project, tmp_path: Path) -> None:
    path = tmp_path / "raw.csv"
    path.write_text("a\n1\n2\n3\n")
    raw = data.add(path, "raw", project=project)
    assert (raw.source, raw.parent, raw.split, raw.run_id) == (
        str(path.resolve()),
        None,
        None,
        None,
    )

    derived = data.add(
        _table(0),
        "clean",
        parent=raw,
        split={"strategy": "manual", "part": "all"},
        run_id="run-123",
        source_label="cleaned from raw@1",
        project=project,
    )
    again = data.get("clean@1", project=project)
    assert again.parent == "raw@1" == derived.parent
    assert again.split == {"strategy": "manual", "part": "all"}
    assert again.run_id == "run-123"
    assert again.source == "cleaned from raw@1"


def test_missing_parent_is_refused_and_nothing_is_written(project: Project) -> None:
    data.add(_table(0), "real", project=project)
    ghost = data.get("real", project=project)
    object.__setattr__(ghost, "version", 7)  # a reference to a version that does not exist
    with pytest.raises(NotFound, match=r"parent dataset version real@7 does not exist"):
        data.add(_table(50), "child", parent=ghost, project=project)
    assert _row_counts(project) == (1, 1)
    assert [s.name for s in data.list_datasets(project=project)] == ["real"]


def test_split_parts_record_their_parent(project: Project) -> None:
    parent = data.add(pa.table({"k": list(range(40))}), "whole", project=project)
    parts = data.split(parent, {"train": 0.75, "test": 0.25}, seed=3, project=project)
    assert {name: part.ref for name, part in parts.items()} == {
        "train": "whole-train@1",
        "test": "whole-test@1",
    }
    for name, part in parts.items():
        stored = data.get(part.ref, project=project)
        assert stored.parent == "whole@1"
        assert stored.source == "ratio split of whole@1"
        assert stored.split == {
            "strategy": "ratio",
            "seed": 3,
            "ratios": {"train": 0.75, "test": 0.25},
            "part": name,
            "parent": "whole@1",
        }
    again = data.split(parent, {"train": 0.75, "test": 0.25}, seed=3, project=project)
    assert [p.created for p in again.values()] == [False, False]
    assert {p.ref for p in again.values()} == {"whole-train@1", "whole-test@1"}
    assert _row_counts(project) == (3, 3)


def test_stored_profile_keeps_the_column_order(project: Project) -> None:
    """The profile read back lists columns in the table's order, on every backend, so it
    merges with a fresh profile of more data of the same shape."""
    table = pa.table({"x": [1.5, 2.5], "counts": [1, 2], "heavy": [0.5, 9.0], "color": ["a", "b"]})
    version = data.add(table, "ordered", project=project)
    stored = version.profile
    assert list(stored.columns) == version.schema.names == table.column_names
    more = TableProfile.of_batches(table.schema, table.to_batches())
    more.merge(stored)
    assert more.num_rows == 4
    assert more.columns["color"].to_dict()["frequencies"] == {"a": 2, "b": 2}


def test_a_corrupted_version_is_refused_and_adding_it_again_repairs_it(project: Project) -> None:
    from shipyard.errors import ArtifactCorrupted

    version = data.add(_table(0, rows=50), "repairable", project=project)
    blob = Path(project.artifacts.key(version.artifact))
    original = blob.read_bytes()
    blob.write_bytes(original[:-8] + b"\0" * 8)  # same size, other bytes
    with pytest.raises(ArtifactCorrupted, match="is corrupted"):
        version.to_arrow()
    again = data.add(_table(0, rows=50), "repairable", project=project)
    assert (again.ref, again.created) == (version.ref, False)
    assert version.to_arrow().equals(_table(0, rows=50))
