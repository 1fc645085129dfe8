"""`shipyard score` and `shipyard stream`, run as the console script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from scoring_helpers import SHIPYARD, cli_env, customers, produce, read_topic

import shipyard.data as data
from shipyard.project import Project


def shipyard(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SHIPYARD), *args], cwd=folder, env=cli_env(), capture_output=True, text=True,
        timeout=180, check=False,
    )  # fmt: skip


def test_cli_score_writes_a_version_and_refuses_bad_input_in_one_line(
    folder: Path, project: Project
) -> None:
    result = shipyard(
        folder, "score", "churn@champion", "customers@1", "--out", "scores.parquet",
        "--keep", "id", "--chunk-rows", "1000",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    line = result.stdout.splitlines()[0]
    assert "scored customers@1 with churn@1: 3,000 rows -> customers-scored@1" in line
    assert "withheld by filters: refer_old" in result.stdout
    table = pq.read_table(folder / "scores.parquet")
    assert table.column_names == ["id", "prediction", "filtered"] and table.num_rows == 3000
    assert table.equals(pq.read_table(data.get("customers-scored@1", project=project).path()))

    data.add(customers(50, 3).drop(columns=["spend"]), "no-spend", project=project)
    refused = shipyard(folder, "score", "churn@1", "no-spend", "--out", "refused.parquet")
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "error: dataset no-spend@1 lacks the column(s) 'spend' that model churn@1 needs; the "
        "model takes age, visits, spend, plan, and no-spend@1 has id, age, visits, plan, city, "
        "churned"
    ]
    assert not (folder / "refused.parquet").exists()
    assert [s.name for s in data.list_datasets(project=project)] == [
        "customers", "customers-scored", "no-spend",
    ]  # fmt: skip


def test_cli_stream_scores_records_into_the_topic_and_the_prediction_log(
    kafka_broker: Any, folder: Path
) -> None:
    broker = kafka_broker.bootstrap
    source, sink = kafka_broker.topic(), kafka_broker.topic()
    rows = customers(25, 4)[["id", "age", "visits", "spend", "plan"]].to_dict("records")
    produce(broker, source, [(row["id"], json.dumps(row).encode()) for row in rows])
    options = [f"-X{key}={value}" for key, value in kafka_broker.client_config().items()]
    result = shipyard(
        folder, "stream", "churn@champion", "--from", f"kafka://{broker}/{source}",
        "--to", f"kafka://{broker}/{sink}", "--id-field", "id", "--max-records", "25",
        "--json", *options,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout.splitlines()[-1])
    assert stats["stopped_by"] == "max_records" and stats["scored"] == 25
    found = read_topic(broker, sink)
    assert sorted(read.value["id"] for read in found) == sorted(row["id"] for row in rows)
    # The project's prediction log (the default Parquet folder) got one record per answer.
    files = sorted((folder / ".shipyard" / "predictions").rglob("*.parquet"))
    logged = pa.concat_tables([pq.read_table(path) for path in files]).to_pylist()
    assert sorted(r["request_id"] for r in logged) == sorted(r.value["source"] for r in found)
    assert {(r["protocol"], r["model"], r["version"]) for r in logged} == {("stream", "churn", 1)}

    bad = shipyard(folder, "stream", "churn@1", "--from", "kafka://nowhere", "--to", "x")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: the source (--from) 'kafka://nowhere' needs the brokers")
