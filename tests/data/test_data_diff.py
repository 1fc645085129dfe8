"""Diffs between versions: schema changes, statistics and distribution distances."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import shipyard.data as data
from shipyard.data.diff import ColumnChange
from shipyard.project import Project


def _frame(seed: int, shift: float = 0.0, rows: int = 2_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(10.0 + shift, 2.0, rows),
            "n": rng.integers(0, 100, rows),
            "plan": rng.choice(["basic", "pro", "team"], rows),
        }
    )


def _column(result: data.DatasetDiff, name: str) -> ColumnChange:
    return next(c for c in result.columns if c.name == name)


def test_identical_versions_have_distance_zero(sqlite_project: Project) -> None:
    frame = _frame(1)
    one = data.add(frame, "one", project=sqlite_project)
    same = data.add(frame.copy(), "same", project=sqlite_project)
    for old, new in ((one, one), (one, same)):
        result = data.diff(old, new)
        assert (result.old, result.new) == (old.ref, new.ref)
        assert result.rows == (2_000, 2_000)
        assert not result.schema_changed
        assert (result.added, result.removed) == ([], [])
        assert [c.name for c in result.columns] == ["x", "n", "plan"]
        for change in result.columns:
            assert change.distance == 0.0, change
            assert change.schema_changes == []
            assert all(before == after for before, after in change.statistics.values())


def test_shifted_data_has_positive_distance(sqlite_project: Project) -> None:
    before = data.add(_frame(1), "shift", project=sqlite_project)
    after = data.add(_frame(2, shift=3.0), "shift", project=sqlite_project)
    resampled = data.add(_frame(3), "shift", project=sqlite_project)
    moved = data.diff(before, after)
    noise = data.diff(before, resampled)
    x_moved, x_noise = _column(moved, "x"), _column(noise, "x")
    assert x_moved.distance is not None and x_noise.distance is not None
    assert x_moved.distance > 0.3
    assert x_moved.distance > 3 * x_noise.distance
    old_mean, new_mean = x_moved.statistics["mean"]
    assert new_mean - old_mean == pytest.approx(3.0, abs=0.2)
    assert not moved.schema_changed
    assert 0 <= (_column(moved, "plan").distance or 0) < 0.1  # levels drawn the same way


def test_schema_changes(sqlite_project: Project) -> None:
    old_frame = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "code": [10, 20, 30, 40],
            "plan": ["basic", "pro", "team", "pro"],
            "score": [0.5, 0.6, 0.7, 0.8],
            "gone": [1, 1, 2, 2],
        }
    )
    new_frame = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "code": ["A1", "B2", "C3", "D4", "E5"],
            "plan": ["basic", "pro", "enterprise", "pro", "basic"],
            "score": [0.5, None, 0.7, 0.8, 0.9],
            "fresh": [True, False, True, True, False],
        }
    )
    old = data.add(old_frame, "evolving", project=sqlite_project)
    new = data.add(new_frame, "evolving", project=sqlite_project)
    result = data.diff(old, new)
    assert result.rows == (4, 5)
    assert result.added == ["fresh"]
    assert result.removed == ["gone"]
    assert result.schema_changed
    assert [c.name for c in result.columns] == ["id", "code", "plan", "score"]
    assert _column(result, "id").schema_changes == []
    (code_change,) = _column(result, "code").schema_changes
    assert code_change.startswith("type integer (int64) -> category (")
    assert _column(result, "plan").schema_changes == [
        "new levels: enterprise",
        "levels gone: team",
    ]
    assert _column(result, "score").schema_changes == ["now nullable"]
    assert _column(result, "score").statistics["null_share"] == (0.0, 0.2)
    # Numbers against text: no shared distribution to measure.
    assert _column(result, "code").distance is None
    dumped = json.loads(json.dumps(result.to_dict()))
    assert dumped["added"] == ["fresh"]
    assert dumped["columns"][2]["schema_changes"] == result.columns[2].schema_changes
