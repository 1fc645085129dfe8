"""Delayed outcomes joined to the prediction log: all or nothing, by request id, from files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from predictions_helpers import record

from shipyard.errors import InvalidInput, NotFound
from shipyard.predictions import feedback
from shipyard.predictions.writer import ParquetLog
from shipyard.project import Project
from shipyard.store.models import FeedbackRecord


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """A project whose log holds r0..r4 (churn; r4 only as a shadow copy) and f0 (fraud)."""
    project = Project.init(tmp_path / ".shipyard")
    with ParquetLog(project.settings.resolved_prediction_log_url) as log:
        for i in range(4):
            log.append(record(i, arm="champion"))
        log.append(record(4, arm="shadow", version=2))
        log.append(record(0, model="fraud", request_id="f0"))
    yield project
    project.close()


def stored(project: Project) -> list[tuple[str, str, object, float | None, str]]:
    with project.metadata.read() as session:
        rows = session.query(FeedbackRecord).order_by(FeedbackRecord.id).all()
        return [(r.request_id, r.model, r.label, r.reward, r.source) for r in rows]


def test_outcomes_are_stored_under_the_model_that_answered(project: Project) -> None:
    count = feedback.add(
        [
            {"request_id": "r0", "label": 1},
            {"request_id": "r1", "reward": 2.5},
            {"request_id": "r2", "label": "churned", "reward": -1},
            {"request_id": "f0", "label": True},
            {"request_id": "r4", "label": 0},  # logged only as a shadow copy: still its model
        ],
        project=project,
        source="crm",
    )
    assert count == 5
    assert stored(project) == [
        ("r0", "churn", 1, None, "crm"),
        ("r1", "churn", None, 2.5, "crm"),
        ("r2", "churn", "churned", -1.0, "crm"),
        ("f0", "fraud", True, None, "crm"),
        ("r4", "churn", 0, None, "crm"),
    ]


def test_the_latest_label_and_the_latest_reward_are_merged_per_request(project: Project) -> None:
    feedback.add([{"request_id": "r0", "label": 0}], project=project, source="first")
    feedback.add([{"request_id": "r0", "reward": 1.0}], project=project, source="second")
    feedback.add([{"request_id": "r1", "label": 1}], project=project, source="first")
    feedback.add([{"request_id": "r1", "label": 0}], project=project, source="correction")
    known = feedback.labels_for(["r0", "r1", "r2", "nope"], project=project)
    assert set(known) == {"r0", "r1"}
    assert (known["r0"].label, known["r0"].reward, known["r0"].source) == (0, 1.0, "second")
    assert (known["r1"].label, known["r1"].source) == (0, "correction")
    assert known["r1"].model == "churn" and known["r1"].at.tzinfo is not None
    assert json.loads(json.dumps(known["r0"].to_dict()))["label"] == 0


def test_an_unknown_request_id_refuses_the_whole_batch(project: Project) -> None:
    items = [{"request_id": "r0", "label": 1}] + [
        {"request_id": f"ghost-{i:02d}", "label": 1} for i in range(12)
    ]
    with pytest.raises(NotFound) as caught:
        feedback.add(items, project=project, source="crm")
    message = caught.value.message
    assert "12 request id(s) are not in the prediction log" in message
    assert "'ghost-00'" in message and "'ghost-09'" in message and "'ghost-10'" not in message
    assert "and 2 more" in message and "may not be there yet" in message
    assert "nothing was stored" in message
    assert stored(project) == []


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"label": 1}, "item 1: `request_id` is missing"),
        ({"request_id": "r0"}, "item 1: give a `label` and/or a `reward`; got neither"),
        ({"request_id": "r0", "reward": float("nan")}, "item 1: `reward` must be a finite"),
        ({"request_id": "r0", "reward": "high"}, "item 1: `reward` must be a finite number"),
        ({"request_id": "r0", "reward": True}, "item 1: `reward` must be a finite number"),
        ({"request_id": "r0", "label": float("inf")}, "item 1: `label` must be a JSON value"),
        ({"request_id": 7, "label": 1}, "item 1: `request_id` must be a string"),
        ({"request_id": "r0", "lable": 1}, "item 1: unknown field(s) lable"),
        ("r0", "item 1: expected an object"),
    ],
)
def test_bad_items_are_named_and_nothing_is_written(
    project: Project, item: object, problem: str
) -> None:
    with pytest.raises(InvalidInput, match="nothing was stored") as caught:
        feedback.add([{"request_id": "r1", "label": 1}, item], project=project, source="x")  # type: ignore[list-item]
    assert problem in caught.value.message
    assert stored(project) == []


def test_every_problem_of_a_batch_is_reported_at_once(project: Project) -> None:
    with pytest.raises(InvalidInput) as caught:
        feedback.add([{"label": 1}, {"request_id": "r0"}], project=project, source="x")
    assert "item 0: `request_id` is missing" in caught.value.message
    assert "item 1: give a `label`" in caught.value.message
    with pytest.raises(InvalidInput, match="no feedback items"):
        feedback.add([], project=project, source="x")
    with pytest.raises(InvalidInput, match="wrap a single item in a list"):
        feedback.add({"request_id": "r0", "label": 1}, project=project, source="x")  # type: ignore[arg-type]


def test_csv_json_and_jsonl_files(project: Project, tmp_path: Path) -> None:
    csv_file = tmp_path / "outcomes.csv"
    csv_file.write_text('request_id,label,reward\nr0,1,\nr1,yes,0.5\nr2,"""1""",\n')
    assert feedback.add_file(csv_file, project=project) == 3
    json_file = tmp_path / "outcomes.json"
    json_file.write_text(json.dumps([{"request_id": "r3", "label": [1, 0]}]))
    assert feedback.add_file(json_file, project=project, source="batch") == 1
    jsonl_file = tmp_path / "outcomes.jsonl"
    jsonl_file.write_text('{"request_id": "f0", "reward": 3}\n\n{"request_id": "r4", "label": 0}\n')
    assert feedback.add_file(jsonl_file, project=project) == 2
    assert stored(project) == [
        ("r0", "churn", 1, None, "file:outcomes.csv"),  # a JSON cell keeps its type
        ("r1", "churn", "yes", 0.5, "file:outcomes.csv"),
        ("r2", "churn", "1", None, "file:outcomes.csv"),  # a quoted JSON string stays text
        ("r3", "churn", [1, 0], None, "batch"),
        ("f0", "fraud", None, 3.0, "file:outcomes.jsonl"),
        ("r4", "churn", 0, None, "file:outcomes.jsonl"),
    ]


def test_bad_files_say_where(project: Project, tmp_path: Path) -> None:
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("request_id,label,reward\nr0,1,\nr1,,lots\n")
    with pytest.raises(InvalidInput, match=r"bad.csv line 3: `reward` must be a finite number"):
        feedback.add_file(bad_csv, project=project)
    no_id = tmp_path / "no-id.csv"
    no_id.write_text("id,label\nr0,1\n")
    with pytest.raises(InvalidInput, match="must name a request_id column"):
        feedback.add_file(no_id, project=project)
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text('{"request_id": "r0", "label": 1}\n{oops\n')
    with pytest.raises(InvalidInput, match=r"bad\.jsonl line 2 is not valid JSON"):
        feedback.add_file(bad_line, project=project)
    not_list = tmp_path / "scalar.json"
    not_list.write_text("3")
    with pytest.raises(InvalidInput, match="expected a JSON list of objects; got int"):
        feedback.add_file(not_list, project=project)
    with pytest.raises(InvalidInput, match=r"\.csv, \.json .* or \.jsonl"):
        feedback.add_file(tmp_path / "outcomes.xlsx", project=project)
    with pytest.raises(InvalidInput, match="cannot read the feedback file"):
        feedback.add_file(tmp_path / "missing.csv", project=project)
    assert stored(project) == []


def test_load_returns_a_models_history_in_a_time_range(project: Project) -> None:
    feedback.add([{"request_id": "r0", "label": 1}], project=project, source="a")
    both = [{"request_id": "r0", "label": 0}, {"request_id": "f0", "label": 1}]
    feedback.add(both, project=project, source="b")
    now = datetime.now(UTC)
    minute = timedelta(minutes=1)
    history = feedback.load("churn", now - minute, now + minute, project=project)
    assert [(f.request_id, f.label, f.source) for f in history] == [
        ("r0", 1, "a"),
        ("r0", 0, "b"),
    ]
    assert feedback.load("churn", now + timedelta(minutes=1), project=project) == []
    assert [f.model for f in feedback.load("fraud", project=project)] == ["fraud"]
    with pytest.raises(InvalidInput, match="aware UTC datetime"):
        feedback.load("churn", datetime(2024, 1, 1), project=project)
