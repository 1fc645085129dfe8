"""`shipyard predictions query/show/land` and `shipyard replay`, run as the console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from predictions_helpers import ROWS, answered, churn_frame, logged, record

import shipyard.data as data
from shipyard.predictions.kafka import KafkaLog
from shipyard.project import Project
from shipyard.registry.versions import register

SHIPYARD = Path(sys.executable).parent / "shipyard"


def shipyard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    environment.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
    return subprocess.run(
        [str(SHIPYARD), *args], cwd=cwd, env=environment, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    return line.removeprefix("error: ")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    from sklearn.linear_model import LogisticRegression

    created = Project.init(tmp_path / ".shipyard")
    frame = churn_frame()
    train = data.add(frame, "churn-train", project=created)
    features = ["age", "income", "tenure"]
    model = LogisticRegression(max_iter=1000).fit(frame[features], frame["churned"])
    register(model, "churn", training_data=train, target="churned", project=created)

    def flip(response: dict[str, Any]) -> None:
        response["predictions"][2] = 1 - response["predictions"][2]

    logged(
        created,
        answered(created, "good", {"records": ROWS}),
        answered(created, "bad", {"records": ROWS}, tamper=flip),
    )
    created.close()
    return created


def test_query_prints_a_table_json_or_csv(project: Project, tmp_path: Path) -> None:
    sql = "SELECT request_id, model, version FROM predictions ORDER BY request_id"
    table = shipyard("predictions", "query", sql, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "request_id" in table.stdout and "good" in table.stdout and "2 rows" in table.stdout
    as_json = shipyard(
        "predictions", "query", sql, "--format", "json", "--limit", "1", cwd=tmp_path
    )
    assert json.loads(as_json.stdout) == [{"request_id": "bad", "model": "churn", "version": 1}]
    as_csv = shipyard("predictions", "query", sql, "-f", "csv", cwd=tmp_path)
    assert as_csv.stdout.splitlines() == ["request_id,model,version", "bad,churn,1", "good,churn,1"]


def test_query_errors_are_one_line(project: Project, tmp_path: Path) -> None:
    bad = shipyard("predictions", "query", "SELECT nope FROM predictions", cwd=tmp_path)
    assert bad.returncode == 2
    message = error_line(bad)
    assert 'column "nope" not found' in message and "latency_ms double" in message
    copy = shipyard("predictions", "query", "COPY predictions TO 'x.csv'", cwd=tmp_path)
    assert copy.returncode == 2 and "got a COPY statement" in error_line(copy)
    assert not (tmp_path / "x.csv").exists()


def test_show_prints_one_request(project: Project, tmp_path: Path) -> None:
    shown = shipyard("predictions", "show", "good", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "churn@1" in shown.stdout and "arm default" in shown.stdout
    assert '"records"' in shown.stdout and '"predictions"' in shown.stdout
    as_json = json.loads(shipyard("predictions", "show", "good", "--json", cwd=tmp_path).stdout)
    assert as_json[0]["request_id"] == "good"
    missing = shipyard("predictions", "show", "nope", cwd=tmp_path)
    assert missing.returncode == 2 and "no prediction with request id 'nope'" in error_line(missing)


def test_replay_exits_0_when_identical_1_when_different_2_when_unknown(
    project: Project, tmp_path: Path
) -> None:
    same = shipyard("replay", "good", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    assert "on churn@1" in same.stdout and "identical" in same.stdout

    different = shipyard("replay", "bad", cwd=tmp_path)
    assert different.returncode == 1, different.stderr
    assert "different" in different.stdout and "predictions[2]: logged" in different.stdout
    report = json.loads(shipyard("replay", "bad", "--json", cwd=tmp_path).stdout)
    assert (report["verdict"], report["reproduced"], report["ref"]) == (
        "different",
        False,
        "churn@1",
    )

    unknown = shipyard("replay", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "no prediction with request id 'nope'" in error_line(unknown)


def test_land_consumes_a_topic_into_the_project_log(kafka_broker: Any, tmp_path: Path) -> None:
    Project.init(tmp_path / ".shipyard").close()
    topic = kafka_broker.topic()
    with KafkaLog(kafka_broker.bootstrap, topic) as log:
        for i in range(3):
            log.append(record(i))
    landed = shipyard("predictions", "land", "--from", f"kafka://{kafka_broker.bootstrap}/{topic}",
                      "--idle", "3", cwd=tmp_path)  # fmt: skip
    assert landed.returncode == 0, landed.stderr
    assert "landed 3 records" in landed.stdout
    counted = shipyard("predictions", "query", "SELECT count(*) AS n FROM predictions", "-f",
                       "json", cwd=tmp_path)  # fmt: skip
    assert json.loads(counted.stdout) == [{"n": 3}]
    bad = shipyard("predictions", "land", "--from", "kafka://nohost/t", cwd=tmp_path)
    assert bad.returncode == 2 and "needs the brokers as HOST:PORT" in error_line(bad)
