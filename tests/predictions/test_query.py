"""SQL over the prediction log: the `predictions` view, its columns, and what SQL may not do."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from predictions_helpers import HOUR, T0, record

from shipyard.errors import InvalidInput, NotFound
from shipyard.predictions.log import open_log
from shipyard.predictions.parquet import (
    PartitionedFolder,
    group_by_partition,
    table_schema,
    to_table,
)
from shipyard.predictions.query import Cursor, Filters, find, query, search
from shipyard.predictions.writer import ParquetLog
from shipyard.project import Project
from shipyard.serving.record import PredictionRecord
from shipyard.serving.request_ids import made_at, new_request_id


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
    page = search(Filters(model="churn"), limit=2, project=project)
    assert [row["request_id"] for row in page.rows] == ["r2", "r1"] and page.next is not None
    project.close()


# -- searching a large log: pruned, newest first, keyset pages --------------------------------

SEARCH_HOURS = 3  # churn in 3 consecutive hours from T0, fraud in the middle one


def _made(at: float) -> str:
    return new_request_id(int(at * 1000))


def _write(folder: Path, *records: PredictionRecord) -> None:
    """Records straight into the log's layout, one file per partition (no writer thread)."""
    out = PartitionedFolder(folder)
    for (model, hour), group in group_by_partition(records).items():
        out.write(model, hour, to_table(group), f"part-test-{uuid.uuid4().hex[:8]}.parquet")


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[PredictionRecord]]:
    folder = tmp_path_factory.mktemp("search") / "log"
    records = []
    for hour in range(SEARCH_HOURS):
        for i in range(5):
            at = T0 + hour * HOUR + 60 * i
            records.append(
                record(
                    i,
                    at=at,
                    request_id=_made(at),
                    version=1 + i % 2,
                    arm="a" if i % 2 else "b",
                    status=500 if i == 4 else 200,
                )
            )
    shadowed = T0 + HOUR + 30  # one request answered by two arms at the same moment
    both = _made(shadowed)
    for arm in ("live", "shadow"):
        records.append(record(0, at=shadowed, request_id=both, arm=arm))
    for i in range(3):
        records.append(record(i, model="fraud", at=T0 + HOUR + i, request_id=f"client-{i}"))
    late = T0 + 2 * HOUR + 600  # made at T0, logged 2 hours later: outside the near hours
    records.append(record(9, at=late, request_id=_made(T0 - 5 * HOUR)))
    _write(folder, *records)
    return folder, records


NEWEST_FIRST = "ORDER BY time DESC, request_id DESC, coalesce(arm, '') DESC"


def _ids(folder: Path, where: str = "TRUE") -> list[tuple[str, str]]:
    rows = query(
        f"SELECT request_id, arm FROM predictions WHERE {where} {NEWEST_FIRST}", folder=folder
    ).to_pylist()
    return [(r["request_id"], r["arm"]) for r in rows]


def test_keyset_pages_walk_the_whole_log_newest_first_once(
    big: tuple[Path, list[PredictionRecord]],
) -> None:
    folder, records = big
    seen: list[tuple[str, str]] = []
    after: Cursor | None = None
    pages = 0
    while True:
        page = search(after=after, limit=4, folder=folder)
        seen += [(row["request_id"], row["arm"]) for row in page.rows]
        pages += 1
        if page.next is None:
            break
        after = Cursor.decode(page.next.encode())  # as a link carries it
    assert seen == _ids(folder) and len(seen) == len(records)
    assert pages == -(-len(records) // 4)
    shifted = search(limit=3, offset=2, folder=folder)
    assert [(r["request_id"], r["arm"]) for r in shifted.rows] == _ids(folder)[2:5]


def test_filters_match_what_sql_over_the_whole_log_matches(
    big: tuple[Path, list[PredictionRecord]],
) -> None:
    folder, _ = big
    since = datetime.fromtimestamp(T0 + HOUR, UTC)
    until = datetime.fromtimestamp(T0 + 2 * HOUR, UTC)
    cases = [
        (Filters(model="fraud"), "model = 'fraud'"),
        (
            Filters(model="churn", version=2, arm="a"),
            "model = 'churn' AND version = 2 AND arm = 'a'",
        ),
        (Filters(status=500), "status = 500"),
        (
            Filters(since=since, until=until),
            f"time >= '{since.isoformat()}' AND time < '{until.isoformat()}'",
        ),
        (Filters(model="nobody"), "FALSE"),
        (Filters(request_id="x' OR 1=1 --"), "FALSE"),
    ]
    for filters, where in cases:
        page = search(filters, limit=100, folder=folder)
        assert [(r["request_id"], r["arm"]) for r in page.rows] == _ids(folder, where), where
        assert page.next is None
    listed = search(Filters(model="fraud"), limit=1, columns=("request_id", "time"), folder=folder)
    assert list(listed.rows[0]) == ["request_id", "time"] and listed.next is not None


def test_find_looks_near_a_server_made_id_then_everywhere(
    big: tuple[Path, list[PredictionRecord]],
) -> None:
    folder, records = big
    shadowed = [r for r in records if r.arm in ("live", "shadow")]
    found = find(shadowed[0].request_id, folder=folder)
    assert [row["arm"] for row in found] == ["live", "shadow"]
    late = records[-1]
    assert made_at(late.request_id) is not None  # a v7 id, logged far from its time
    assert [row["time"].timestamp() for row in find(late.request_id, folder=folder)] == [late.time]
    assert find("client-2", folder=folder)[0]["model"] == "fraud"
    with pytest.raises(NotFound, match="no prediction with request id"):
        find(_made(T0), folder=folder)


def test_a_search_reads_only_the_partitions_it_needs(
    big: tuple[Path, list[PredictionRecord]], tmp_path: Path
) -> None:
    """A file no reader can open, two days before the rest: only a search that must read
    every file touches it, so the others prove they never opened it."""
    folder = tmp_path / "log"
    shutil.copytree(big[0], folder)
    broken = folder / "model=churn" / "hour=2024-04-29T13"
    broken.mkdir()
    (broken / "part-broken-000001.parquet").write_bytes(b"not a parquet file")
    newest = big[1][-1]
    assert search(limit=5, folder=folder).rows[0]["request_id"] == newest.request_id
    assert len(search(Filters(model="fraud"), folder=folder).rows) == 3
    since = datetime.fromtimestamp(T0, UTC)
    assert len(search(Filters(since=since), limit=100, folder=folder).rows) == len(big[1])
    near = [r for r in big[1] if r.arm == "b"][-1]
    assert find(near.request_id, folder=folder)[0]["arm"] == "b"
    with pytest.raises(Exception, match=r"[Pp]arquet"):
        find("client-0", folder=folder)  # a client's id: every file is read


def test_bad_search_input_is_refused_naming_it(big: tuple[Path, list[PredictionRecord]]) -> None:
    folder, _ = big
    with pytest.raises(InvalidInput, match="limit must be an integer >= 1"):
        search(limit=0, folder=folder)
    with pytest.raises(InvalidInput, match="offset must be an integer >= 0"):
        search(offset=-1, folder=folder)
    with pytest.raises(InvalidInput, match="since must be a time with a zone"):
        search(Filters(since=datetime(2024, 5, 1)), folder=folder)
    with pytest.raises(InvalidInput, match="columns must be some of"):
        search(columns=("request_id", "1; DROP TABLE x"), folder=folder)
    for garbage in ("garbage", "W10", "WyJ4IiwgMSwgMl0"):
        with pytest.raises(InvalidInput, match="the page cursor 'after' is not one"):
            Cursor.decode(garbage)


def test_partitions_are_listed_by_folder_not_by_file(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    _write(
        folder,
        record(1, model="a b/c", at=T0),
        record(2, at=T0),
        record(3, at=T0 + HOUR),
        record(4, at=T0 + 2 * HOUR),
    )
    (folder / "model=churn" / "notes").mkdir()  # not an hour folder
    (folder / "model=churn" / "hour=2024-05-01T13" / ".part-x.parquet.tmp").write_bytes(b"")
    (folder / "elsewhere").mkdir()
    log = PartitionedFolder(folder)
    assert [(p.model, p.hour) for p in log.partitions()] == [
        ("a b/c", "2024-05-01T13"),
        ("churn", "2024-05-01T13"),
        ("churn", "2024-05-01T14"),
        ("churn", "2024-05-01T15"),
    ]
    chosen = log.partitions(model="churn", first_hour="2024-05-01T14", last_hour="2024-05-01T14")
    assert [p.hour for p in chosen] == ["2024-05-01T14"]
    assert [Path(f).parent.name for f in log.files(model="a b/c")] == ["hour=2024-05-01T13"]
    assert len(log.files()) == 4 and all(Path(f).name.startswith("part-") for f in log.files())
    assert PartitionedFolder(tmp_path / "missing").partitions() == []


def test_a_rewritten_file_is_read_with_its_new_schema(tmp_path: Path) -> None:
    """Schemas are cached by path, size and modification time: a changed file is read anew."""
    partition = tmp_path / "log" / "model=churn" / "hour=2024-05-01T13"
    partition.mkdir(parents=True)
    path = partition / "part-x-000001.parquet"
    pq.write_table(pa.table({"request_id": ["r1"], "version": pa.array([1], pa.int64())}), path)
    sql = "SELECT request_id, arm FROM predictions"
    assert query(sql, folder=tmp_path / "log").to_pylist() == [{"request_id": "r1", "arm": None}]
    pq.write_table(to_table([record(1, arm="canary")]), path)
    assert query(sql, folder=tmp_path / "log").to_pylist() == [
        {"request_id": "r1", "arm": "canary"}
    ]
