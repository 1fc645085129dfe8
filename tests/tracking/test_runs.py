"""Runs: params, metrics, tags, artifacts, seeds, endings and durability, on SQLite and PostgreSQL.

Tests that exercise the metadata store take the shared `project` fixture (SQLite and
PostgreSQL); tests of argument checking and in-process behaviour use `sqlite_project`.
Durability is checked in real subprocesses killed with SIGKILL, concurrency with "spawn"
processes; nothing is mocked and nothing measures time.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from processes import run_together
from shipyard.errors import DatabaseLocked, InvalidInput, NotFound
from shipyard.project import Project
from shipyard.store.models import (
    EnvironmentRecord,
    RunArtifactRecord,
    RunMetricRecord,
    RunParamRecord,
    RunRecord,
    RunTagRecord,
)
from shipyard.tracking import runs
from shipyard.tracking.runs import (
    FLUSH_POINTS,
    RunOrigin,
    active_run,
    get_run,
    list_runs,
    log_metric,
    log_param,
    metric_history,
    set_tag,
    start_run,
)
from shipyard.tracking.seeds import derive_seed

SPAWN = multiprocessing.get_context("spawn")
RUNS_PER_WORKER = 10
WAIT_S = 120  # a hung subprocess fails the test instead of hanging it


@pytest.fixture(autouse=True)
def _no_run_left_open() -> Iterator[None]:
    """Every test ends the runs it starts: a run left open would be the next test's active run."""
    yield
    left = list(runs._open_runs)
    for run in left:
        run.end("killed")
    assert not left, f"runs left open: {left}"
    assert active_run() is None


@pytest.fixture
def child_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for fresh interpreters: bytecode cached in the session's folder, so
    that only the first one compiles SQLAlchemy (seconds) instead of each one."""
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path_factory.getbasetemp() / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@pytest.fixture
def sqlite_project(tmp_path: Path) -> Iterator[Project]:
    project = Project.init(tmp_path / ".shipyard-sqlite")
    assert project.metadata.is_sqlite
    yield project
    project.close()


def _count(project: Project, model: Any, run_id: str | None = None) -> int:
    query = select(func.count()).select_from(model)
    if run_id is not None:
        query = query.where(model.run_id == run_id)
    with project.metadata.read() as session:
        return int(session.scalar(query) or 0)


def _stored_params(project: Project, run_id: str) -> dict[str, str]:
    with project.metadata.read() as session:
        rows = session.scalars(select(RunParamRecord).where(RunParamRecord.run_id == run_id))
        return {row.key: row.value for row in rows}


# -- params -----------------------------------------------------------------------------------

PARAMS: dict[str, Any] = {
    "int": 3,
    "big": 2**62,
    "float": 0.125,
    "str": "gini",
    "empty": "",
    "bool": True,
    "none": None,
    "list": [1, "two", 3.5, None],
    "dict": {"b": [1, 2], "a": {"nested": False}},
    "unicode": "héllo ✓",
}


def test_params_round_trip_with_their_types(project: Project) -> None:
    with start_run("params", params=PARAMS, project=project) as run:
        run.log_param("numpy_int", np.int64(7))
        run.log_param("numpy_float", np.float32(0.5))
        run.log_params({"numpy_bool": np.bool_(False), "path": Path("data/train.csv")})
    info = get_run(run.id, project=project)
    expected = {
        **PARAMS,
        "numpy_int": 7,
        "numpy_float": 0.5,
        "numpy_bool": False,
        "path": "data/train.csv",
    }
    assert info.params == expected
    for key, value in expected.items():
        assert type(info.params[key]) is type(value), key
    assert run.params == expected
    # Stored as JSON text: the same types come back to any reader.
    assert json.loads(_stored_params(project, run.id)["dict"]) == PARAMS["dict"]


def test_logging_the_same_param_again_is_fine(sqlite_project: Project) -> None:
    with start_run(params={"depth": 3}, project=sqlite_project) as run:
        run.log_param("depth", 3)
        run.log_param("depth", np.int64(3))
        run.log_params({"lr": 0.1})
        run.log_params({"lr": 0.1, "depth": 3})
    assert get_run(run.id, project=sqlite_project).params == {"depth": 3, "lr": 0.1}
    assert _count(sqlite_project, RunParamRecord, run.id) == 2


def test_changing_a_param_names_the_key_and_both_values(sqlite_project: Project) -> None:
    with start_run(params={"depth": 3}, project=sqlite_project) as run:
        with pytest.raises(InvalidInput, match=r"parameter 'depth' is already 3.*\(got 4\)"):
            run.log_param("depth", 4)
        # 3 and 3.0 or "3" are different values: a reproduction would get another type.
        with pytest.raises(InvalidInput, match=r"'depth'.*got \"3\""):
            run.log_param("depth", "3")
        # A refused call keeps none of its keys, not even the new ones before the bad one.
        with pytest.raises(InvalidInput, match="depth"):
            run.log_params({"fresh": 1, "depth": 5})
        run.log_param("fresh", 2)  # still free: the refused call did not take it
    info = get_run(run.id, project=sqlite_project)
    assert info.params == {"depth": 3, "fresh": 2}
    assert info.status == "finished"


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({1, 2}, "set"),
        (object(), "object"),
        (b"raw", "bytes"),
        (np.array([1, 2, 3]), "ndarray"),
        ({"ok": 1, "bad": {3j}}, "dict"),
    ],
)
def test_a_param_that_is_not_json_is_refused_with_its_type(
    sqlite_project: Project, value: Any, type_name: str
) -> None:
    with start_run(project=sqlite_project) as run:
        with pytest.raises(InvalidInput, match=rf"parameter 'p' must be a JSON value.*{type_name}"):
            run.log_param("p", value)
        with pytest.raises(InvalidInput, match=type_name):
            run.log_params({"fine": 1, "p": value})
    assert get_run(run.id, project=sqlite_project).params == {}
    assert _count(sqlite_project, RunParamRecord) == 0


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "non-empty string"),
        ("   ", "non-empty string"),
        (None, "non-empty string"),
        (3, "non-empty string"),
        ("k" * 257, "257 characters; at most 256"),
    ],
)
def test_bad_keys_are_refused_everywhere(sqlite_project: Project, key: Any, message: str) -> None:
    with start_run(project=sqlite_project) as run:
        with pytest.raises(InvalidInput, match=message):
            run.log_param(key, 1)
        with pytest.raises(InvalidInput, match=message):
            run.log_metric(key, 1.0)
        with pytest.raises(InvalidInput, match=message):
            run.set_tag(key, "x")
        with pytest.raises(InvalidInput, match=message):
            run.log_artifact(key, {"a": 1})
        run.log_param("k" * 256, "longest allowed")
    with pytest.raises(InvalidInput, match=message):
        start_run(params={key: 1}, project=sqlite_project)
    with pytest.raises(InvalidInput, match=message):
        start_run(tags={key: 1}, project=sqlite_project)
    assert _count(sqlite_project, RunRecord) == 1
    assert _count(sqlite_project, RunParamRecord) == 1
    assert _count(sqlite_project, RunTagRecord) == 0
    assert _count(sqlite_project, RunMetricRecord) == 0
    assert _count(sqlite_project, RunArtifactRecord) == 0


def test_refused_start_writes_nothing(sqlite_project: Project) -> None:
    with pytest.raises(InvalidInput, match="set"):
        start_run("bad", params={"ok": 1, "bad": {1}}, project=sqlite_project)
    with pytest.raises(InvalidInput, match="run name must be a string; got int"):
        start_run(3, project=sqlite_project)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="300 characters; at most 256"):
        start_run("n" * 300, project=sqlite_project)
    assert _count(sqlite_project, RunRecord) == 0
    assert _count(sqlite_project, RunParamRecord) == 0
    assert active_run() is None


# -- metrics ----------------------------------------------------------------------------------


def _history(project: Project, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(p.step, p.value) for p in metric_history(run_id, key, project=project)]


def test_metric_series_steps_nan_and_last_value(project: Project) -> None:
    with start_run("metrics", project=project) as run:
        for loss in (0.9, 0.7, 0.5):
            run.log_metric("loss", loss)  # steps 0, 1, 2
        run.log_metric("acc", 0.5, step=10)
        run.log_metric("acc", 0.6, step=20)
        run.log_metric("acc", 0.4, step=15)  # logged last, but not the highest step
        run.log_metric("mixed", 1.0, step=5)
        run.log_metric("mixed", 2.0)  # continues after the highest step: 6
        run.log_metric("mixed", 3.0, step=2)
        run.log_metric("mixed", 4.0)  # still after the highest: 7
        run.log_metric("gap", math.nan)
        run.log_metric("gap", 1.5)
        run.log_metric("ends_nan", 1.0)
        run.log_metric("ends_nan", float("nan"))
        run.log_metric("numpy", np.float32(0.25), step=np.int64(3))
        run.log_metric("int", 7)
        run.log_metric("inf", math.inf)
        run.log_metrics({"a": 1.0, "b": 2.0}, step=4)
        run.log_metrics({"a": 1.5, "b": 2.5})
    assert _history(project, run.id, "loss") == [(0, 0.9), (1, 0.7), (2, 0.5)]
    assert _history(project, run.id, "acc") == [(10, 0.5), (15, 0.4), (20, 0.6)]
    assert _history(project, run.id, "mixed") == [(2, 3.0), (5, 1.0), (6, 2.0), (7, 4.0)]
    gap = _history(project, run.id, "gap")
    assert [step for step, _ in gap] == [0, 1]
    assert math.isnan(gap[0][1]) and gap[1][1] == 1.5
    assert _history(project, run.id, "a") == [(4, 1.0), (5, 1.5)]
    assert _history(project, run.id, "b") == [(4, 2.0), (5, 2.5)]
    points = metric_history(run.id, "loss", project=project)
    assert all(p.timestamp_ms > 1_600_000_000_000 for p in points)

    metrics = get_run(run.id, project=project).metrics
    assert math.isnan(metrics.pop("ends_nan"))
    assert metrics == {
        "a": 1.5,
        "acc": 0.6,
        "b": 2.5,
        "gap": 1.5,
        "inf": math.inf,
        "int": 7.0,
        "loss": 0.5,
        "mixed": 4.0,
        "numpy": 0.25,
    }


def test_the_same_step_twice_keeps_both_points_in_logging_order(sqlite_project: Project) -> None:
    with start_run(project=sqlite_project) as run:
        run.log_metric("x", 1.0, step=0)
        run.log_metric("x", 2.0, step=0)
    assert _history(sqlite_project, run.id, "x") == [(0, 1.0), (0, 2.0)]
    assert get_run(run.id, project=sqlite_project).metrics == {"x": 2.0}


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("0.5", "str '0.5'"),
        (True, "bool True"),
        (np.bool_(True), "bool"),
        (None, "NoneType None"),
        ([1.0], "list"),
        (np.array([1.0, 2.0]), "ndarray"),
    ],
)
def test_a_metric_that_is_not_a_number_is_refused(
    sqlite_project: Project, value: Any, shown: str
) -> None:
    refused = rf"metric 'm' must be a number; got {shown}"
    with start_run(project=sqlite_project) as run, pytest.raises(InvalidInput, match=refused):
        run.log_metric("m", value)
    assert _count(sqlite_project, RunMetricRecord) == 0


@pytest.mark.parametrize("step", [2.0, "3", True, np.bool_(False), np.float64(1.0)])
def test_a_step_that_is_not_an_integer_is_refused(sqlite_project: Project, step: Any) -> None:
    refused = r"metric 'm': step must be an integer"
    with start_run(project=sqlite_project) as run, pytest.raises(InvalidInput, match=refused):
        run.log_metric("m", 1.0, step=step)
    assert _count(sqlite_project, RunMetricRecord) == 0


def test_metric_history_of_an_unknown_key_or_run(sqlite_project: Project) -> None:
    with start_run(project=sqlite_project) as run:
        run.log_metric("loss", 1.0)
    with pytest.raises(NotFound, match=f"run {run.id} has no metric 'acc'"):
        metric_history(run.id, "acc", project=sqlite_project)
    with pytest.raises(NotFound, match="no run 'ffffffff'"):
        metric_history("ffffffff", "loss", project=sqlite_project)


def test_ten_thousand_points_are_all_readable(project: Project) -> None:
    total = 10_000
    with start_run("many", project=project) as run:
        for step in range(total):
            run.log_metric("loss", 1.0 / (step + 1))
        # Flushed in batches of FLUSH_POINTS while logging, before the run ends.
        assert _count(project, RunMetricRecord, run.id) >= total - FLUSH_POINTS + 1
    assert _count(project, RunMetricRecord, run.id) == total
    points = metric_history(run.id, "loss", project=project)
    assert [p.step for p in points] == list(range(total))
    assert points[-1].value == 1.0 / total
    assert get_run(run.id, project=project).metrics == {"loss": 1.0 / total}


def test_a_flush_that_fails_loses_nothing(tmp_path: Path) -> None:
    """A write that fails (here: the database stays locked) keeps the points for the next one."""
    home = tmp_path / ".locked"
    Project.init(home).close()
    project = Project.open(home, database_timeout=0.2)
    run = start_run("locked", project=project)
    for step in range(5):
        run.log_metric("x", float(step))
    blocker = sqlite3.connect(home / "shipyard.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseLocked):
            run.flush()
        run.log_metric("x", 5.0)
        with pytest.raises(DatabaseLocked):
            run.end()
        assert run.status == "running"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    run.log_metric("x", 6.0)
    run.end()
    assert _history(project, run.id, "x") == [(step, float(step)) for step in range(7)]
    assert get_run(run.id, project=project).status == "finished"
    project.close()


# -- tags -------------------------------------------------------------------------------------


def test_tags_change_and_the_last_value_wins(project: Project) -> None:
    with start_run(tags={"team": "vision", "stage": 1}, project=project) as run:
        run.set_tag("stage", "2")
        run.flush()
        run.set_tag("stage", 3)
        run.set_tags({"note": "ok", "team": "nlp"})
        set_tag("module_level", True)
    info = get_run(run.id, project=project)
    assert info.tags == {"module_level": "True", "note": "ok", "stage": "3", "team": "nlp"}
    assert _count(project, RunTagRecord, run.id) == 4


# -- artifacts --------------------------------------------------------------------------------


def test_artifacts_and_inputs_are_recorded(project: Project, tmp_path: Path) -> None:
    import pandas as pd

    import shipyard.data as data

    frame = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    version = data.add(frame, "train", project=project)
    file = tmp_path / "report.txt"
    file.write_bytes(b"all good\n")
    with start_run("artifacts", project=project) as run:
        run.log_input("train", version)
        run.log_input("frame", frame, step="load")
        stored = run.log_artifact("summary", {"auc": 0.9, "classes": [0, 1]})
        run.log_artifact("report", file)
    assert stored.kind == "json"
    info = get_run(run.id, project=project)
    assert {(a.direction, a.name) for a in info.artifacts} == {
        ("input", "train"),
        ("input", "frame"),
        ("output", "summary"),
        ("output", "report"),
    }
    train = info.artifact("train", "input")
    assert (train.kind, train.digest, train.size) == (
        "dataset",
        version.artifact,
        version.size_bytes,
    )
    assert train.meta["ref"] == "train@1"
    table = info.artifact("frame", "input")
    assert (table.kind, table.step, table.meta["rows"]) == ("table", "load", 3)
    assert project.artifacts.exists(table.digest)
    assert project.artifacts.size(table.digest) == table.size
    summary = info.artifact("summary")
    assert (summary.kind, summary.digest, summary.size) == ("json", stored.digest, stored.size)
    assert json.loads(project.artifacts.read_bytes(summary.digest)) == {
        "auc": 0.9,
        "classes": [0, 1],
    }
    report = info.artifact("report")
    assert report.kind == "bytes"
    assert project.artifacts.read_bytes(report.digest) == b"all good\n"
    assert report.size == len(b"all good\n")
    with pytest.raises(NotFound, match="no output artifact 'train'"):
        info.artifact("train")
    # Listing runs leaves artifacts out; get_run brings them.
    assert list_runs(project=project)[0].artifacts == []


def test_logging_an_artifact_name_again_replaces_it(project: Project) -> None:
    with start_run(project=project) as run:
        run.log_artifact("model", {"version": 1})
        run.log_artifact("model", {"version": 2})  # in the same batch as the first
        run.log_input("model", b"an input of the same name is another edge")
        run.flush()
        last = run.log_artifact("model", {"version": 3})  # replaces a written one
    info = get_run(run.id, project=project)
    assert sorted((a.direction, a.name) for a in info.artifacts) == [
        ("input", "model"),
        ("output", "model"),
    ]
    assert info.artifact("model").digest == last.digest
    assert json.loads(project.artifacts.read_bytes(last.digest)) == {"version": 3}
    assert _count(project, RunArtifactRecord, run.id) == 2


def test_a_missing_file_artifact_is_refused(sqlite_project: Project, tmp_path: Path) -> None:
    with start_run(project=sqlite_project) as run:
        with pytest.raises(InvalidInput, match="is not a file"):
            run.log_artifact("gone", tmp_path / "missing.bin")
        with pytest.raises(InvalidInput, match="is not a file"):
            run.log_artifact("folder", tmp_path)
    assert get_run(run.id, project=sqlite_project).artifacts == []


# -- endings ----------------------------------------------------------------------------------


class TrainingDiverged(Exception):
    pass


def _diverge() -> None:
    raise TrainingDiverged("loss became inf at epoch 3")


def test_an_exception_fails_the_run_and_propagates(project: Project) -> None:
    with pytest.raises(TrainingDiverged), start_run("boom", project=project) as run:
        run.log_metric("loss", 1.0)
        _diverge()
    info = get_run(run.id, project=project)
    assert info.status == "failed"
    assert info.ended_at is not None and info.duration_s is not None and info.duration_s >= 0
    assert info.error is not None
    assert "Traceback (most recent call last)" in info.error
    assert "in _diverge" in info.error
    assert "TrainingDiverged: loss became inf at epoch 3" in info.error
    assert info.metrics == {"loss": 1.0}  # what was logged before the failure is kept
    assert active_run() is None


def test_keyboard_interrupt_kills_the_run(sqlite_project: Project) -> None:
    with pytest.raises(KeyboardInterrupt), start_run(project=sqlite_project) as run:
        run.log_metric("loss", 1.0)
        raise KeyboardInterrupt
    info = get_run(run.id, project=sqlite_project)
    assert (info.status, info.metrics) == ("killed", {"loss": 1.0})
    assert info.error is not None and "KeyboardInterrupt" in info.error


def test_logging_after_the_end_is_refused(sqlite_project: Project) -> None:
    with start_run(project=sqlite_project) as run:
        run.log_metric("loss", 1.0)
    run.end("failed")  # a second end does nothing
    assert run.status == "finished"
    for log in (
        lambda: run.log_metric("loss", 2.0),
        lambda: run.log_param("p", 1),
        lambda: run.set_tag("t", "v"),
        lambda: run.log_artifact("a", {"x": 1}),
    ):
        with pytest.raises(InvalidInput, match=f"run {run.id} has ended \\(finished\\)"):
            log()
    info = get_run(run.id, project=sqlite_project)
    assert (info.status, info.metrics, info.params, info.tags) == (
        "finished",
        {"loss": 1.0},
        {},
        {},
    )
    left_open = start_run(project=sqlite_project)
    with pytest.raises(InvalidInput, match="a run ends as one of finished, failed, killed"):
        left_open.end("running")
    left_open.end("killed")
    assert get_run(left_open.id, project=sqlite_project).status == "killed"


def test_module_level_logging_uses_the_active_run(sqlite_project: Project) -> None:
    assert active_run() is None
    with pytest.raises(InvalidInput, match="no active run"):
        log_metric("loss", 1.0)
    with start_run(project=sqlite_project) as run:
        assert active_run() is run
        log_metric("loss", 0.5)
        runs.log_metrics({"acc": 0.9}, step=3)
        log_param("depth", 4)
        runs.log_params({"lr": 0.01})
    assert active_run() is None
    info = get_run(run.id, project=sqlite_project)
    assert (info.metrics, info.params) == ({"acc": 0.9, "loss": 0.5}, {"depth": 4, "lr": 0.01})


# -- seeds ------------------------------------------------------------------------------------


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), random.random()


def test_a_seed_makes_random_and_numpy_repeat(sqlite_project: Project) -> None:
    with start_run(seed=7, project=sqlite_project) as first:
        drawn = _draws()
    random.random(), np.random.rand()  # move both generators on
    with start_run(seed=7, project=sqlite_project) as second:
        again = _draws()
    assert drawn == again
    assert get_run(first.id, project=sqlite_project).seed == 7
    assert get_run(second.id, project=sqlite_project).seed == 7
    with start_run(seed=8, project=sqlite_project):
        assert _draws() != drawn


def test_no_seed_records_a_fresh_one_that_replays(sqlite_project: Project) -> None:
    with start_run(project=sqlite_project) as one:
        drawn = _draws()
    with start_run(project=sqlite_project) as two:
        pass
    seeds = [get_run(r.id, project=sqlite_project).seed for r in (one, two)]
    assert seeds[0] != seeds[1]  # 32 random bits each
    assert all(0 <= seed < 2**32 for seed in seeds)
    assert seeds == [one.seed, two.seed]
    with start_run(seed=seeds[0], project=sqlite_project):
        assert _draws() == drawn


def test_large_seeds_are_kept_whole(project: Project) -> None:
    with start_run(seed=2**63 - 1, project=project) as run:
        drawn = _draws()
    assert get_run(run.id, project=project).seed == 2**63 - 1
    with start_run(seed=2**63 - 1, project=project):
        assert _draws() == drawn


@pytest.mark.parametrize("seed", [-1, True, False, 1.5, "7", 2**63])
def test_bad_seeds_are_refused(sqlite_project: Project, seed: Any) -> None:
    with pytest.raises(InvalidInput, match=r"seed must be an integer from 0 to 2\*\*63 - 1"):
        start_run(seed=seed, project=sqlite_project)
    assert _count(sqlite_project, RunRecord) == 0


def test_derived_seeds_are_stable_and_differ_per_step() -> None:
    assert derive_seed(7, "train") == derive_seed(7, "train")
    assert len({derive_seed(7, "train"), derive_seed(7, "eval"), derive_seed(8, "train")}) == 3
    assert 0 <= derive_seed(7, "train") < 2**32


# -- reading ----------------------------------------------------------------------------------


def test_get_run_by_unique_prefix(project: Project) -> None:
    with start_run("one", project=project) as run:
        pass
    for prefix in (run.id, run.id[:4], run.id[:12], run.id[:8].upper()):
        assert get_run(prefix, project=project).id == run.id
    info = get_run(run.id, project=project)
    assert (info.name, info.kind, info.status, info.user) == (
        "one",
        "run",
        "finished",
        project.user,
    )
    assert info.started_at.tzinfo is not None
    assert info.ended_at is not None and info.ended_at >= info.started_at


def test_an_ambiguous_prefix_lists_the_candidates(project: Project) -> None:
    with start_run("template", project=project) as run:
        pass
    # Run ids are random; two recorded runs that share a prefix, as a long history would have.
    with project.metadata.write() as session:
        template = session.get(RunRecord, run.id)
        assert template is not None
        for run_id in ("abcd" + "0" * 28, "abcd" + "1" * 28):
            session.add(
                RunRecord(
                    id=run_id,
                    name=run_id[4:8],
                    status="finished",
                    user=template.user,
                    started_at=template.started_at,
                    seed=1,
                    environment_id=template.environment_id,
                )
            )
    with pytest.raises(
        InvalidInput,
        match=r"run id 'abcd' is ambiguous \(abcd0{28}, abcd1{28}, ...\): give more",
    ):
        get_run("abcd", project=project)
    assert get_run("abcd1", project=project).name == "1111"
    assert get_run("ABCD0", project=project).name == "0000"


@pytest.mark.parametrize(
    ("run_id", "error", "message"),
    [
        ("0000aaaa", NotFound, "no run '0000aaaa'; `shipyard runs list` shows the runs"),
        ("abc", InvalidInput, "a run id is 4 to 32 letters and digits; got 'abc'"),
        ("", InvalidInput, "a run id is 4 to 32"),
        ("abcd-1234", InvalidInput, "got 'abcd-1234'"),
        ("abc%", InvalidInput, "got 'abc%'"),
        ("abcd_", InvalidInput, "got 'abcd_'"),
        ("ab²cd", InvalidInput, "got 'ab²cd'"),
        ("a" * 33, InvalidInput, "4 to 32"),
        (1234, InvalidInput, "got 1234"),
    ],
)
def test_bad_or_unknown_run_ids(
    sqlite_project: Project, run_id: Any, error: type[Exception], message: str
) -> None:
    with start_run(project=sqlite_project):
        pass
    with pytest.raises(error, match=message.replace("(", r"\(").replace("*", r"\*")):
        get_run(run_id, project=sqlite_project)


def test_list_runs_newest_first_with_filters(project: Project) -> None:
    with start_run("a", project=project):
        pass
    with pytest.raises(ValueError), start_run("b", project=project):
        raise ValueError("bad")
    origin = RunOrigin(kind="pipeline", pipeline="train", source="flows.py")
    with start_run("c", project=project, origin=origin) as piped:
        piped.log_metric("auc", 0.8)
    running = start_run("d", project=project)
    try:
        assert [r.name for r in list_runs(project=project)] == ["d", "c", "b", "a"]
        assert [r.name for r in list_runs(project=project, limit=2)] == ["d", "c"]
        assert [r.name for r in list_runs(project=project, status="failed")] == ["b"]
        assert [r.name for r in list_runs(project=project, status="running")] == ["d"]
        assert [r.name for r in list_runs(project=project, status="finished")] == ["c", "a"]
        assert list_runs(project=project, status="killed") == []
        (found,) = list_runs(project=project, pipeline="train")
        assert (found.name, found.kind, found.pipeline, found.source) == (
            "c",
            "pipeline",
            "train",
            "flows.py",
        )
        assert found.metrics == {"auc": 0.8}
        assert list_runs(project=project, pipeline="other") == []
        assert list_runs(project=project, pipeline="train", status="failed") == []
    finally:
        running.end()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "done"}, "unknown run status 'done'; expected one of running, finished"),
        ({"limit": 0}, "limit must be an integer of at least 1; got 0"),
        ({"limit": -5}, "got -5"),
        ({"limit": "10"}, "got '10'"),
        ({"limit": True}, "got True"),
    ],
)
def test_list_runs_refuses_bad_filters(
    sqlite_project: Project, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        list_runs(project=sqlite_project, **kwargs)


# -- durability, in subprocesses killed with SIGKILL ------------------------------------------

SCRIPT_HEAD = """\
import os, signal, sys
from shipyard.project import Project
from shipyard.tracking.runs import FLUSH_POINTS, start_run

project = Project.open()
"""


def _run_script(project: Project, body: str, env: dict[str, str]) -> tuple[str, int]:
    """Run SCRIPT_HEAD + body in a fresh interpreter on `project`; (the run id, exit code).

    The script prints the run id on its first line of output.
    """
    env = {
        **env,
        "SHIPYARD_HOME": str(project.home),
        "SHIPYARD_DATABASE_URL": project.settings.resolved_database_url,
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT_HEAD + textwrap.dedent(body)],
        env=env,
        cwd=project.home.parent,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    lines = done.stdout.split()
    assert lines, f"the script printed no run id (exit {done.returncode}): {done.stderr}"
    return lines[0], done.returncode


def test_a_run_ended_before_sigkill_keeps_everything(
    project: Project, child_env: dict[str, str]
) -> None:
    run_id, code = _run_script(
        project,
        """
        run = start_run("killed-after-end", params={"lr": 0.1})
        print(run.id, flush=True)
        for step in range(250):
            run.log_metric("loss", 1.0 / (step + 1))
        run.set_tag("phase", "done")
        run.end()
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        child_env,
    )
    assert code == -signal.SIGKILL
    info = get_run(run_id, project=project)
    assert (info.status, info.params, info.tags) == ("finished", {"lr": 0.1}, {"phase": "done"})
    assert _count(project, RunMetricRecord, run_id) == 250
    assert info.metrics == {"loss": 1.0 / 250}


def test_a_run_killed_mid_way_keeps_what_was_flushed(
    sqlite_project: Project, child_env: dict[str, str]
) -> None:
    """The documented bound: a killed process loses at most the points logged since the last
    flush, which happens every FLUSH_POINTS points (or FLUSH_SECONDS): with FLUSH_POINTS + 500
    points logged, at least the first FLUSH_POINTS are stored, as a gap-free prefix."""
    logged = FLUSH_POINTS + 500
    run_id, code = _run_script(
        sqlite_project,
        f"""
        run = start_run("killed-mid-run")
        print(run.id, flush=True)
        for step in range({logged}):
            run.log_metric("loss", float(step))
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        child_env,
    )
    assert code == -signal.SIGKILL
    info = get_run(run_id, project=sqlite_project)
    assert (info.status, info.ended_at, info.error) == ("running", None, None)
    stored = _count(sqlite_project, RunMetricRecord, run_id)
    assert FLUSH_POINTS <= stored <= logged
    steps = [p.step for p in metric_history(run_id, "loss", project=sqlite_project)]
    assert steps == list(range(stored))


def test_a_script_that_never_ends_its_run_finishes_at_exit(
    sqlite_project: Project, child_env: dict[str, str]
) -> None:
    run_id, code = _run_script(
        sqlite_project,
        """
        run = start_run("left-open")
        print(run.id, flush=True)
        for step in range(30):
            run.log_metric("loss", float(step))
        run.log_param("epochs", 30)
        """,
        child_env,
    )
    assert code == 0
    info = get_run(run_id, project=sqlite_project)
    assert (info.status, info.params) == ("finished", {"epochs": 30})
    assert info.ended_at is not None
    assert _count(sqlite_project, RunMetricRecord, run_id) == 30


# -- concurrency ------------------------------------------------------------------------------


def start_runs_worker(url: str, home: str, worker: int, barrier: Any, results: Any) -> None:
    """Start RUNS_PER_WORKER runs, each with a param and a few metric points."""
    try:
        project = Project.open(Path(home), database_url=url)
        try:
            barrier.wait(WAIT_S)
            ids = []
            for index in range(RUNS_PER_WORKER):
                with start_run(f"w{worker}-{index}", params={"i": index}, project=project) as run:
                    run.log_metrics({"loss": 1.0 / (index + 1), "worker": float(worker)})
                ids.append(run.id)
        finally:
            project.close()
        results.put((worker, "ok", ids))
    except BaseException:
        barrier.abort()  # the other fails fast instead of waiting for this one
        results.put((worker, "error", traceback.format_exc()))


def test_two_processes_start_runs_at_once(
    project: Project, database_url: str, child_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", child_env["PYTHONPYCACHEPREFIX"])
    workers = 2
    reports = run_together(start_runs_worker, database_url, project.home, workers)
    ids = [run_id for detail in reports.values() for run_id in detail]
    assert len(set(ids)) == workers * RUNS_PER_WORKER
    listed = list_runs(project=project, limit=100)
    assert {r.id for r in listed} == set(ids)
    assert {r.status for r in listed} == {"finished"}
    assert all(r.params == {"i": int(r.name.split("-")[1])} for r in listed)
    assert _count(project, RunMetricRecord) == 2 * workers * RUNS_PER_WORKER
    # Both processes run in the same environment: it is stored once.
    assert _count(project, EnvironmentRecord) == 1
    assert {r.environment_id for r in listed} == {get_run(ids[0], project=project).environment_id}
