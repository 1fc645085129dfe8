"""Quality from delayed labels, and CBPE estimates checked against them, on real sklearn models.

One project for the module: a binary classifier with a known calibration (the labels are drawn
from the very logistic model it learns), a regressor, and their prediction logs written straight
to the Parquet log (no server): a labelled hour, an unlabelled hour like it, and an unlabelled
hour after a covariate shift that moves the rows close to the decision boundary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from shipyard import data
from shipyard.errors import InvalidInput
from shipyard.monitoring import quality as q
from shipyard.predictions import feedback
from shipyard.predictions.writer import ParquetLog
from shipyard.project import Project
from shipyard.registry.versions import register
from shipyard.serving.record import PredictionRecord
from shipyard.store.models import FeedbackRecord

T0 = datetime(2024, 5, 1, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)
N = 2000  # predictions per hour: the realised accuracy is known to about +-0.01
FEATURES = ["x1", "x2"]


def _truth(frame: pd.DataFrame, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """Labels drawn from a logistic model: a model that learns it is calibrated by design."""
    p = 1 / (1 + np.exp(-(1.5 * frame["x1"] + 1.0 * frame["x2"])))
    return (rng.random(len(frame)) < p).astype(int)


def _rows(rng: np.random.Generator, n: int, scale: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame({"x1": rng.normal(0, scale, n), "x2": rng.normal(0, scale, n)})


@dataclass
class World:
    project: Project
    realised: dict[str, float]  # accuracy of each logged hour, from labels not yet sent
    labels: dict[str, dict[str, int]]  # hour -> request id -> label (not yet sent)


def _record(request_id: str, at: datetime, model: str, rows: list[dict[str, float]],
            predictions: list[Any], **fields: Any) -> PredictionRecord:  # fmt: skip
    return PredictionRecord(
        request_id=request_id,
        time=at.timestamp(),
        model=model,
        version=fields.pop("version", 1),
        protocol="predict",
        inputs=json.dumps(rows if len(rows) > 1 else rows[0]),
        outputs=json.dumps({"predictions": predictions}),
        latency_ms=1.0,
        **fields,
    )


def _log_hour(
    log: ParquetLog, model: Any, name: str, hour: int, frame: pd.DataFrame, truth: Any
) -> tuple[dict[str, int], float]:
    """One request per row, spread over the hour; the labels and the realised accuracy."""
    predicted = model.predict(frame[FEATURES])
    labels: dict[str, int] = {}
    step = HOUR / len(frame)
    for i, (row, prediction, label) in enumerate(
        zip(frame[FEATURES].to_dict("records"), predicted.tolist(), truth, strict=True)
    ):
        request_id = f"{name}-h{hour}-{i}"
        log.append(_record(request_id, T0 + hour * HOUR + i * step, name, [row], [prediction]))
        labels[request_id] = int(label)
    return labels, float(np.mean(predicted == truth))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("quality")
    project = Project.init(folder / ".shipyard")
    rng = np.random.default_rng(7)
    train, holdout = _rows(rng, 4000), _rows(rng, 2000)
    train["y"], holdout["y"] = _truth(train, rng), _truth(holdout, rng)
    classifier = LogisticRegression().fit(train[FEATURES], train["y"])
    train_version = data.add(train, "clf-train", project=project)
    holdout_version = data.add(holdout, "clf-test", project=project)
    register(classifier, "clf", training_data=train_version, target="y",
             datasets=[holdout_version], project=project)  # fmt: skip
    regressor_data = _rows(rng, 500)
    regressor_data["y"] = 3 * regressor_data["x1"] - regressor_data["x2"]
    regressor = LinearRegression().fit(regressor_data[FEATURES], regressor_data["y"])
    register(regressor, "reg", training_data=regressor_data, target="y", project=project)

    labels: dict[str, dict[str, int]] = {}
    realised: dict[str, float] = {}
    with ParquetLog(project.settings.resolved_prediction_log_url) as log:
        for hour, scale in ((0, 1.0), (1, 1.0), (2, 0.25)):  # hour 2: near the boundary
            frame = _rows(rng, N, scale)
            key = f"h{hour}"
            labels[key], realised[key] = _log_hour(
                log, classifier, "clf", hour, frame, _truth(frame, rng)
            )
        # Not counted: a shadow copy, a failed answer, and a two-row request (a list label).
        at = T0 + timedelta(minutes=5)
        log.append(_record("clf-h0-0", at, "clf", [{"x1": 1, "x2": 1}], [0], arm="shadow",
                           version=2))  # fmt: skip
        log.append(_record("clf-failed", at, "clf", [{"x1": 1, "x2": 1}], [1], status=503))
        pair = [{"x1": 2.0, "x2": 2.0}, {"x1": -2.0, "x2": -2.0}]
        log.append(_record("clf-pair", at, "clf", pair, [1, 0]))
        for i, x in enumerate((0.5, 1.0, 2.0)):
            row = {"x1": x, "x2": 0.0}
            log.append(_record(f"reg-{i}", at, "reg", [row], [float(regressor.predict(
                pd.DataFrame([row]))[0])]))  # fmt: skip
    items = [{"request_id": rid, "label": label} for rid, label in labels["h0"].items()]
    items += [{"request_id": "clf-failed", "label": 1}, {"request_id": "clf-pair", "label": [1, 1]}]
    items += [{"request_id": f"reg-{i}", "label": 4.0} for i in range(3)]
    feedback.add(items, project=project, source="test")
    yield World(project, realised, labels)
    project.close()


def _send(world: World, hour: str) -> None:
    items = [{"request_id": rid, "label": label} for rid, label in world.labels[hour].items()]
    feedback.add(items, project=world.project, source="later")


# -- outcomes and quality ---------------------------------------------------------------------


def test_outcomes_join_labels_to_what_users_saw(world: World) -> None:
    table = q.outcomes("clf", since=T0, until=T0 + HOUR, project=world.project)
    assert table.column_names == list(q.OUTCOME_COLUMNS)
    assert table.num_rows == N + 2  # every labelled row of the hour, and the two-row request
    rows = {(r["request_id"], r["row"]): r for r in table.to_pylist()}
    assert "clf-failed" not in {rid for rid, _ in rows}  # a 503 is not a prediction
    assert {rows[("clf-pair", 0)]["correct"], rows[("clf-pair", 1)]["correct"]} == {True, False}
    first = rows[("clf-h0-0", 0)]
    assert first["arm"] == "default" and first["version"] == 1  # not the shadow copy
    assert first["correct"] == (first["prediction"] == first["label"])
    assert first["abs_error"] is None
    accuracy = np.mean([r["correct"] for r in rows.values() if r["request_id"] != "clf-pair"])
    assert accuracy == pytest.approx(world.realised["h0"])

    regression = q.outcomes("reg", project=world.project).to_pylist()
    assert len(regression) == 3 and all(r["correct"] is None for r in regression)
    assert sorted(round(r["abs_error"], 6) for r in regression) == pytest.approx(
        sorted(abs(3 * x - 4.0) for x in (0.5, 1.0, 2.0)), abs=1e-6
    )
    later = q.outcomes("clf", since=T0 + HOUR, project=world.project)
    assert later.num_rows == 0 and later.column_names == list(q.OUTCOME_COLUMNS)
    with pytest.raises(InvalidInput, match="aware UTC datetime"):
        q.outcomes("clf", since=datetime(2024, 5, 1), project=world.project)


def test_quality_per_bucket_shows_coverage_and_accuracy(world: World) -> None:
    points = q.quality("clf", by="30m", until=T0 + 2 * HOUR, project=world.project)
    assert [(p.start, p.version) for p in points] == [
        (T0 + k * timedelta(minutes=30), 1) for k in range(4)
    ]
    first, _, third, _ = points
    assert first.predictions == N // 2 + 2  # half of the hour's rows, plus the two-row request
    assert first.labelled == first.predictions and first.coverage == 1.0
    assert third.labelled == 0 and third.coverage == 0.0 and third.accuracy is None
    weighted = sum((p.accuracy or 0) * p.labelled for p in points[:2]) / (N + 2)
    assert weighted == pytest.approx((world.realised["h0"] * N + 1) / (N + 2))
    assert first.f1_macro is not None and 0.5 < first.f1_macro <= 1.0
    assert first.mae is None

    (regression,) = q.quality("reg", by="1d", project=world.project)
    assert regression.task == "regressor" and regression.labelled == 3
    errors = [abs(3 * x - 4.0) for x in (0.5, 1.0, 2.0)]
    assert regression.mae == pytest.approx(np.mean(errors), abs=1e-6)
    assert regression.rmse == pytest.approx(np.sqrt(np.mean(np.square(errors))), abs=1e-6)
    with pytest.raises(InvalidInput, match="such as 15m, 1h or 1d; got '1 hour'"):
        q.quality("clf", by="1 hour", project=world.project)


# -- CBPE ---------------------------------------------------------------------------------------


def test_cbpe_follows_accuracy_through_a_shift_and_is_checked_later(world: World) -> None:
    project = world.project
    same = q.estimate("clf", since=T0 + HOUR, until=T0 + 2 * HOUR, project=project)
    shifted = q.estimate("clf", since=T0 + 2 * HOUR, until=T0 + 3 * HOUR, project=project)
    assert same.calibration == shifted.calibration == "labelled-predictions"
    assert same.predictions == shifted.predictions == N and same.id is not None
    assert world.realised["h1"] - world.realised["h2"] > 0.15  # the shift costs accuracy...
    assert same.estimate == pytest.approx(world.realised["h1"], abs=0.03)
    assert shifted.estimate == pytest.approx(world.realised["h2"], abs=0.03)  # ...and it follows
    assert same.interval[0] < same.estimate < same.interval[1]
    assert 0.01 < same.interval[1] - same.interval[0] < 0.06

    pending = {c.estimate.id: c for c in q.check_estimates("clf", project=project)}
    assert pending[same.id].status == "pending" and pending[same.id].error is None

    _send(world, "h1")
    _send(world, "h2")
    checks = {c.estimate.id: c for c in q.check_estimates("clf", project=project)}
    for found, hour in ((same, "h1"), (shifted, "h2")):
        check = checks[found.id]
        assert check.status == "checked" and check.coverage == 1.0 and check.labelled == N
        assert check.realised == pytest.approx(world.realised[hour])
        assert check.error == pytest.approx(found.estimate - world.realised[hour])
        assert check.within_interval == (found.interval[0] <= check.realised <= found.interval[1])

    hourly = q.quality("clf", by="1h", since=T0 + HOUR, project=project)
    by_start = {p.start: p for p in hourly}
    assert by_start[T0 + 2 * HOUR].estimated_accuracy == pytest.approx(shifted.estimate)
    assert by_start[T0 + 2 * HOUR].estimate_error == pytest.approx(checks[shifted.id].error)


def test_cbpe_calibrates_on_held_out_lineage_without_earlier_labels(world: World) -> None:
    found = q.estimate("clf", since=T0, until=T0 + HOUR, project=world.project, save=False)
    assert found.calibration == "dataset" and found.id is None
    assert found.detail["calibration"]["dataset"] == "clf-test@1"
    assert found.estimate == pytest.approx(world.realised["h0"], abs=0.03)
    explicit = q.estimate("clf", since=T0, until=T0 + HOUR, reference="clf-train@1",
                          project=world.project, save=False)  # fmt: skip
    assert explicit.detail["calibration"]["dataset"] == "clf-train@1"


def test_cbpe_refuses_what_it_cannot_estimate(world: World) -> None:
    with pytest.raises(InvalidInput, match="no predictions of clf in"):
        q.estimate("clf", since=T0 - HOUR, until=T0, project=world.project)
    with pytest.raises(InvalidInput, match="reg@1 is a regressor"):
        q.estimate("reg", since=T0, until=T0 + HOUR, project=world.project)


# -- label validation ------------------------------------------------------------------------


def _stored_count(project: Project) -> int:
    with project.metadata.read() as session:
        return session.query(FeedbackRecord).count()


@pytest.mark.parametrize(
    ("items", "problems"),
    [
        (
            [{"request_id": "reg-0", "label": "high"}],
            ["request 'reg-0': label 'high' is not a number: reg@1 is a regressor, expected a "
             "number; got str 'high'"],
        ),
        (
            [{"request_id": "clf-h1-0", "label": 1}, {"request_id": "clf-h1-1", "label": "cat"},
             {"request_id": "clf-pair", "label": [1, 7]}],
            ["item 1: request 'clf-h1-1': label 'cat' is not one of the classes of clf@1: "
             "expected one of [0, 1]", "item 2: request 'clf-pair': label [1, 7]"],
        ),
        ([{"request_id": "reg-1", "reward": "a lot"}], ["`reward` must be a finite number"]),
    ],
)  # fmt: skip
def test_labels_of_the_wrong_type_are_refused_and_nothing_is_written(
    world: World, items: list[dict[str, Any]], problems: list[str]
) -> None:
    before = _stored_count(world.project)
    with pytest.raises(InvalidInput, match="nothing was stored") as caught:
        feedback.add(items, project=world.project, source="bad")
    for problem in problems:
        assert problem in caught.value.message
    assert _stored_count(world.project) == before
    # labels of the right kind go in: "1" and True name class 1, as the analysis reads them
    right = [
        {"request_id": "clf-failed", "label": "1"},
        {"request_id": "clf-failed", "label": True},
        {"request_id": "reg-0", "label": 4},
    ]
    assert feedback.add(right, project=world.project, source="good") == 3


def test_post_feedback_refuses_a_wrong_label_with_422(world: World) -> None:
    import asyncio

    import httpx

    from shipyard.deploy.local import release_endpoints
    from shipyard.serving.app import ServingApp

    app = ServingApp.of([], extensions=release_endpoints(world.project))
    app.load()
    before = _stored_count(world.project)

    async def post(body: Any) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post("/feedback", json=body)

    bad = [{"request_id": "reg-2", "label": "3 units"}, {"request_id": "reg-1", "label": 2.5}]
    refused = asyncio.run(post(bad))
    assert refused.status_code == 422, refused.text
    assert "request 'reg-2'" in refused.json()["error"] and "reg@1 is a regressor" in refused.text
    assert _stored_count(world.project) == before
    accepted = asyncio.run(post({"request_id": "reg-1", "label": 2.5}))
    assert accepted.status_code == 200 and accepted.json() == {"accepted": 1}


# -- the CLI ----------------------------------------------------------------------------------


def _shipyard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real console script, in the project's folder, wide and colourless."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    environment.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
    return subprocess.run(
        [str(Path(sys.executable).parent / "shipyard"), *args],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_cli_shows_estimates_and_checks_quality(world: World) -> None:
    folder = world.project.settings.home.parent
    start, end = (T0 + HOUR).isoformat(), (T0 + 2 * HOUR).isoformat()
    estimated = _shipyard("quality", "estimate", "clf", "--since", start, "--until", end,
                          "--json", cwd=folder)  # fmt: skip
    assert estimated.returncode == 0, estimated.stderr
    found = json.loads(estimated.stdout)
    assert found["predictions"] == N and found["calibration"] == "labelled-predictions"
    assert found["estimate"] == pytest.approx(world.realised["h1"], abs=0.03)

    checked = _shipyard("quality", "check", "clf", "--limit", "2", "--json", cwd=folder)
    assert checked.returncode == 0, checked.stderr
    mine = next(c for c in json.loads(checked.stdout) if c["estimate"]["id"] == found["id"])
    assert mine["status"] == "checked" and mine["labelled"] == N  # hour 1's labels were sent

    shown = _shipyard("quality", "show", "clf", "--since", start, "--until", end, cwd=folder)
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if "2024-05-01 11:00" in line]
    assert len(lines) == 1 and "100.0%" in lines[0]  # hour 1: every prediction labelled
    assert f"{100 * world.realised['h1']:.1f}%" in lines[0]
    assert "estimated" in shown.stdout

    refused = _shipyard("quality", "show", "clf", "--by", "hourly", cwd=folder)
    assert refused.returncode != 0
    assert "such as 15m, 1h or 1d; got 'hourly'" in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr


def test_estimates_over_unaligned_windows_are_weighted_into_buckets() -> None:
    """The monitoring pass estimates whatever arrived since its last pass, so estimate windows
    straddle buckets: each counts with its predictions times the share of its window inside."""
    t = datetime(2026, 1, 1, tzinfo=UTC)
    minutes = timedelta(minutes=1)
    estimates = [
        (1, t, t + 30 * minutes, 100, 0.8),
        (1, t + 30 * minutes, t + 90 * minutes, 300, 0.6),  # half of it in the first hour
        (2, t, t + 60 * minutes, 50, 0.1),  # another version: not counted for version 1
    ]
    first_hour = q._estimate_for(estimates, 1, t, t + 60 * minutes)
    assert first_hour == pytest.approx((100 * 0.8 + 150 * 0.6) / 250)
    assert q._estimate_for(estimates, 1, t + 60 * minutes, t + 120 * minutes) == 0.6
    assert q._estimate_for(estimates, 1, t + 120 * minutes, t + 180 * minutes) is None
