"""ParquetLog: the layout and schema of its files, when it writes them, backpressure, closing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from predictions_helpers import HOUR, T0, part_files, record, wait_until, written_ids

from shipyard.config import Settings
from shipyard.errors import InvalidInput
from shipyard.predictions.kafka import KafkaLog
from shipyard.predictions.log import open_log
from shipyard.predictions.parquet import PartitionedFolder, schema
from shipyard.predictions.sink import PredictionLogError
from shipyard.predictions.writer import ParquetLog

HERE = Path(__file__).parent


def test_records_land_partitioned_by_model_and_hour_with_every_field(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    log = ParquetLog(folder, flush_rows=1000, flush_seconds=60, worker="w1")
    sent = [
        record(0, filters=["refer_uncertain"], hooks={"clip": "ab" * 32}, arm="canary"),
        record(1, status=200),
        record(2, at=T0 + HOUR + 5),
        record(3, model="fraud/eu", version=7, protocol="v2"),
    ]
    for item in sent:
        log.append(item)
    log.close()

    relative = sorted(str(p.relative_to(folder).parent) for p in part_files(folder))
    assert relative == [
        "model=churn/hour=2024-05-01T13",
        "model=churn/hour=2024-05-01T14",
        "model=fraud%2Feu/hour=2024-05-01T13",
    ]
    assert all(p.name.startswith("part-w1-") for p in part_files(folder))
    for path in part_files(folder):
        assert pq.read_schema(path).remove_metadata() == schema()

    rows = {row["request_id"]: row for row in PartitionedFolder(folder).read().to_pylist()}
    assert set(rows) == {"r0", "r1", "r2", "r3"}
    first = rows["r0"]
    assert first["time"] == datetime.fromtimestamp(T0, UTC)
    assert (first["model"], first["version"], first["arm"], first["protocol"]) == (
        "churn", 1, "canary", "predict",
    )  # fmt: skip
    assert first["inputs"] == '{"age": 0}' and first["outputs"] == '{"predictions": [0]}'
    assert first["filters"] == ["refer_uncertain"]
    assert json.loads(first["hooks"]) == {"clip": "ab" * 32}
    assert (first["status"], first["hour"]) == (200, "2024-05-01T13")
    assert rows["r3"]["model"] == "fraud/eu" and rows["r3"]["version"] == 7
    assert rows["r2"]["hour"] == "2024-05-01T14"
    assert log.stats.written == 4 and log.stats.files == 3 and log.stats.queue_depth == 0


def test_append_only_queues_and_the_thread_writes_every_flush_rows(tmp_path: Path) -> None:
    log = ParquetLog(tmp_path, flush_rows=10, flush_seconds=3600)
    for i in range(10):
        log.append(record(i))
    wait_until(lambda: len(written_ids(tmp_path)) == 10)
    for i in range(10, 15):
        log.append(record(i))
    time.sleep(0.3)
    assert len(written_ids(tmp_path)) == 10  # the next 5 wait for 10 more, or an hour
    assert log.queue_depth == 5
    log.close()
    assert sorted(written_ids(tmp_path)) == sorted(f"r{i}" for i in range(15))


def test_a_lone_record_is_written_after_flush_seconds(tmp_path: Path) -> None:
    log = ParquetLog(tmp_path, flush_rows=1000, flush_seconds=0.2)
    started = time.monotonic()
    log.append(record(0))
    wait_until(lambda: written_ids(tmp_path) == ["r0"], timeout=5)
    assert time.monotonic() - started >= 0.2
    log.close()


def test_flush_writes_what_was_appended_before_it(tmp_path: Path) -> None:
    with ParquetLog(tmp_path, flush_rows=1000, flush_seconds=3600) as log:
        for i in range(7):
            log.append(record(i))
        log.flush()
        assert len(written_ids(tmp_path)) == 7
        log.flush()  # nothing queued: returns at once


def test_close_writes_everything_and_is_idempotent(tmp_path: Path) -> None:
    log = ParquetLog(tmp_path, flush_rows=100_000, flush_seconds=3600)
    for i in range(5000):
        log.append(record(i))
    log.close()
    log.close()
    assert sorted(written_ids(tmp_path)) == sorted(f"r{i}" for i in range(5000))
    with pytest.raises(PredictionLogError, match="closed"):
        log.append(record(1))


def test_a_worker_that_exits_without_close_still_writes_everything(tmp_path: Path) -> None:
    """The atexit hook closes the log: a normal exit loses nothing."""
    folder, counter = tmp_path / "log", tmp_path / "counter"
    done = subprocess.run(
        [sys.executable, str(HERE / "appender.py"), str(folder), str(counter),
         "100000", "3600", "200000", "0", "3000"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(map(int, written_ids(folder))) == list(range(3000))


def test_a_record_of_the_wrong_type_is_skipped_and_counted_not_the_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with ParquetLog(tmp_path, flush_rows=1000, flush_seconds=3600) as log:
        log.append(record(0))
        log.append(record(1, version="one"))
        log.append(record(2))
        log.flush()
        assert sorted(written_ids(tmp_path)) == ["r0", "r2"]
        assert log.stats.invalid == 1 and log.stats.written == 2
    assert "'r1' cannot be written" in caplog.text


def test_readers_ignore_temporary_and_foreign_files(tmp_path: Path) -> None:
    with ParquetLog(tmp_path, flush_rows=1000, flush_seconds=3600) as log:
        log.append(record(0))
    partition = tmp_path / "model=churn" / "hour=2024-05-01T13"
    (partition / ".part-dead-000001.parquet.tmp").write_bytes(b"PAR1 half a file")
    (tmp_path / "README.txt").write_text("notes")
    assert PartitionedFolder(tmp_path).read().column("request_id").to_pylist() == ["r0"]


def test_storage_failures_are_retried_append_blocks_then_counts_drops(tmp_path: Path) -> None:
    """While the disk refuses writes nothing accepted is lost: append waits for room (at most
    block_seconds, then drops and counts), and everything accepted is written once it recovers."""
    blocker = tmp_path / "model=churn"
    blocker.write_text("a file where the partition folder must go")
    log = ParquetLog(tmp_path, flush_rows=2, flush_seconds=0.05, max_pending=4, block_seconds=0.2)
    for i in range(4):
        log.append(record(i))
    wait_until(lambda: log.stats.errors >= 1)
    started = time.monotonic()
    log.append(record(4))  # no room: waits block_seconds, then drops
    assert time.monotonic() - started >= 0.2
    stats = log.stats
    assert (stats.dropped, stats.blocked, stats.queue_depth) == (1, 1, 4)
    assert stats.last_error is not None and "model=churn" in stats.last_error

    blocker.unlink()  # the disk recovers
    log.close()
    assert sorted(written_ids(tmp_path)) == ["r0", "r1", "r2", "r3"]
    assert log.stats.written == 4


def test_close_says_how_many_records_it_could_not_write(tmp_path: Path) -> None:
    (tmp_path / "model=churn").write_text("in the way")
    log = ParquetLog(tmp_path, flush_rows=10, flush_seconds=0.05)
    for i in range(3):
        log.append(record(i))
    with pytest.raises(PredictionLogError, match=r"3 records could not be written within 0\.3 s"):
        log.close(timeout=0.3)


def test_bad_settings_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="flush_rows must be an integer >= 1; got 0"):
        ParquetLog(tmp_path, flush_rows=0)
    with pytest.raises(InvalidInput, match="flush_seconds must be a number > 0"):
        ParquetLog(tmp_path, flush_seconds=0)
    with pytest.raises(InvalidInput, match="max_pending must be an integer >= 10"):
        ParquetLog(tmp_path, flush_rows=10, max_pending=5)


def test_open_log_follows_prediction_log_url(tmp_path: Path) -> None:
    default = open_log(Settings(home=tmp_path / ".shipyard", prediction_log_flush_rows=3))
    assert isinstance(default, ParquetLog)
    assert default.flush_rows == 3
    assert default.folder.root == str((tmp_path / ".shipyard" / "predictions").resolve())
    default.close()

    kafka = open_log(Settings(home=tmp_path, prediction_log_url="kafka://127.0.0.1:1/preds"))
    assert isinstance(kafka, KafkaLog) and kafka.topic == "preds"
    kafka.close(timeout=0.1)

    for url, problem in [
        ("kafka://127.0.0.1:9092", "no valid topic"),
        ("kafka:///topic", "brokers as HOST:PORT"),
        ("kafka://host/topic", "brokers as HOST:PORT"),
        ("nosuch://bucket/x", "unknown scheme 'nosuch'"),
    ]:
        with pytest.raises(InvalidInput, match=problem) as caught:
            open_log(Settings(home=tmp_path, prediction_log_url=url))
        assert "prediction_log_url (SHIPYARD_PREDICTION_LOG_URL)" in caught.value.message
        assert "kafka://HOST:PORT/TOPIC" in caught.value.message


def test_time_is_kept_to_the_microsecond(tmp_path: Path) -> None:
    with ParquetLog(tmp_path) as log:
        log.append(record(0, at=T0 + 0.123456))
    (value,) = pq.read_table(part_files(tmp_path)[0]).column("time").to_pylist()
    assert value == datetime(2024, 5, 1, 13, 0, 0, 123456, tzinfo=UTC)
    assert pq.read_schema(part_files(tmp_path)[0]).field("time").type == pa.timestamp(
        "us", tz="UTC"
    )


def test_the_package_exports_resolve() -> None:
    import shipyard.predictions as predictions

    for name in predictions.__all__:
        assert getattr(predictions, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = predictions.nope
