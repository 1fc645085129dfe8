"""SQL over the prediction log: the `predictions` view, its columns, and what SQL may not do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from predictions_helpers import HOUR, T0, record

from shipyard.errors import InvalidInput, NotFound
from shipyard.predictions.log import open_log
from shipyard.predictions.parquet import table_schema
from shipyard.predictions.query import find, query
from shipyard.predictions.writer import ParquetLog
from shipyard.project import Project


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    log_folder = tmp_path / "log"
    with ParquetLog(log_folder) as log:
        for i in range(10):
            log.append(record(i, at=T0 + (HOUR if i >= 6 else 0) + i, filters=["f"] * (i % 2)))
        log.append(record(10, model="fraud", version=3, latency_ms=9.0))
    return log_folder


def test_the_view_has_every_column_even_with_no_file_yet(tmp_path: Path) -> None:
    empty = query("SELECT * FROM predictions", folder=tmp_path / "nothing-here")
    assert empty.num_rows == 0
    assert empty.column_names == table_schema().names
    described = query("DESCRIBE predictions", folder=tmp_path / "nothing-here").to_pylist()
    types = {row["column_name"]: row["column_type"] for row in described}
    assert types["time"] == "TIMESTAMP WITH TIME ZONE"
    assert types["filters"] == "VARCHAR[]"
    assert types["version"] == "BIGINT" and types["status"] == "INTEGER"


def test_queries_aggregate_and_filter_on_the_partition_columns(folder: Path) -> None:
    rows = query(
        "SELECT model, hour, count(*) AS n, max(version) AS v FROM predictions "
        "GROUP BY ALL ORDER BY ALL",
        folder=folder,
    ).to_pylist()
    assert rows == [
        {"model": "churn", "hour": "2024-05-01T13", "n": 6, "v": 1},
        {"model": "churn", "hour": "2024-05-01T14", "n": 4, "v": 1},
        {"model": "fraud", "hour": "2024-05-01T13", "n": 1, "v": 3},
    ]
    late = query(
        "SELECT request_id FROM predictions WHERE hour >= '2024-05-01T14' ORDER BY time",
        folder=folder,
    )
    assert late.column("request_id").to_pylist() == ["r6", "r7", "r8", "r9"]
    fired = query(
        "SELECT count(*) AS n FROM predictions WHERE list_contains(filters, 'f')", folder=folder
    )
    assert fired.to_pylist() == [{"n": 5}]
    assert query("SELECT * FROM predictions", folder=folder, limit=3).num_rows == 3
    with pytest.raises(InvalidInput, match="limit must be an integer >= 0"):
        query("SELECT 1", folder=folder, limit=-1)


def test_files_of_an_older_schema_read_with_the_missing_columns_empty(folder: Path) -> None:
    older = pa.table(
        {"request_id": ["old"], "model": ["churn"], "version": pa.array([1], pa.int64())}
    )
    partition = folder / "model=churn" / "hour=2024-04-30T00"
    partition.mkdir(parents=True)
    pq.write_table(older, partition / "part-old-000001.parquet")
    (row,) = query(
        "SELECT request_id, hour, status, filters FROM predictions WHERE request_id = 'old'",
        folder=folder,
    ).to_pylist()
    assert row == {"request_id": "old", "hour": "2024-04-30T00", "status": None, "filters": None}


def test_bad_sql_says_what_duckdb_said_and_lists_the_columns(folder: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        query("SELEC * FROM predictions", folder=folder)
    assert "not valid SQL" in caught.value.message and "syntax error" in caught.value.message
    assert "latency_ms double" in caught.value.message
    with pytest.raises(InvalidInput) as caught:
        query("SELECT colour FROM predictions", folder=folder)
    assert 'Referenced column "colour" not found' in caught.value.message
    assert "request_id string" in caught.value.message
    with pytest.raises(InvalidInput, match="the query is empty"):
        query("  ", folder=folder)


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("COPY (SELECT * FROM predictions) TO 'stolen.csv'", "got a COPY statement"),
        ("CREATE TABLE t AS SELECT 1", "got a CREATE statement"),
        ("ATTACH 'other.db'", "got a ATTACH statement"),
        ("INSTALL httpfs", "got a LOAD statement"),
        ("SET enable_external_access = true", "got a SET statement"),
        ("SELECT 1; SELECT 2", "has 2 statements"),
        ("SELECT * FROM read_csv('/etc/passwd')", "Permission Error"),
        ("SELECT * FROM read_text('/etc/hostname')", "Permission Error"),
        ("SELECT * FROM 'elsewhere.parquet'", "Permission Error"),
    ],
)
def test_sql_can_neither_write_files_nor_read_others(
    folder: Path, tmp_path: Path, sql: str, problem: str
) -> None:
    with pytest.raises(InvalidInput, match=problem):
        query(sql, folder=folder)
    assert not (tmp_path / "stolen.csv").exists() and not (tmp_path / "other.db").exists()


def test_python_variables_are_not_tables(folder: Path) -> None:
    secret = pa.table({"x": [1]})  # noqa: F841 - DuckDB would find it by name without the guard
    with pytest.raises(InvalidInput, match="secret"):
        query("SELECT * FROM secret", folder=folder)


def test_find_returns_a_request_or_says_it_is_not_logged(folder: Path) -> None:
    (found,) = find("r10", folder=folder)
    assert (found["model"], found["version"], found["latency_ms"]) == ("fraud", 3, 9.0)
    with pytest.raises(NotFound, match="no prediction with request id 'nope' in the log at"):
        find("nope", folder=folder)


def test_the_project_log_is_the_default_folder(tmp_path: Path) -> None:
    project = Project.init(tmp_path / ".shipyard")
    with ParquetLog(project.settings.resolved_prediction_log_url) as log:
        log.append(record(1))
    assert query("SELECT request_id FROM predictions", project=project).to_pylist() == [
        {"request_id": "r1"}
    ]
    project.close()


@pytest.mark.s3
def test_a_log_on_s3_is_written_and_queried(tmp_path: Path, s3_server: Any) -> None:
    bucket = s3_server.create_bucket()
    project = Project.init(
        tmp_path / ".shipyard",
        prediction_log_url=f"s3://{bucket}/predictions",
        s3_endpoint_url=s3_server.endpoint,
        artifact_options=s3_server.storage_options(endpoint=False),
    )
    log = open_log(project.settings)
    for i in range(5):
        log.append(record(i, model="churn" if i < 3 else "fraud"))
    log.close()
    keys = sorted(
        item["Key"] for item in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]
    )
    assert [key.rsplit("/", 1)[0] for key in keys] == [
        "predictions/model=churn/hour=2024-05-01T13",
        "predictions/model=fraud/hour=2024-05-01T13",
    ]
    counts = query(
        "SELECT model, count(*) AS n FROM predictions GROUP BY 1 ORDER BY 1", project=project
    )
    assert counts.to_pylist() == [{"model": "churn", "n": 3}, {"model": "fraud", "n": 2}]
    assert find("r4", project=project)[0]["model"] == "fraud"
    project.close()
