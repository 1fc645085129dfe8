"""A drift run over a real prediction log: the window, persistence, alerts, storage, the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from drift_helpers import FEATURES, HOUR, T0, frame, records, register_model, write_log
from sqlalchemy import func, select

from shipyard.errors import ConfigError, InvalidInput
from shipyard.monitoring import drift
from shipyard.monitoring.alerting import open_alerts
from shipyard.project import Project
from shipyard.store.models import DriftResultRecord


def _at(offset_hours: float) -> datetime:
    return datetime.fromtimestamp(T0 + offset_hours * HOUR, UTC)


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A model trained on 1500 rows, and three hours of traffic: clean, drifted, drifted.

    Every hour also holds shadow copies and failed requests of wildly different inputs,
    which must not count."""
    folder = tmp_path_factory.mktemp("drift")
    project = Project.init(folder / ".shipyard", database_url=f"sqlite:///{folder / 'm.db'}")
    register_model(project)
    drifted = frame(1200, seed=2, age_shift=25, plans=[0.1, 0.1, 0.8])
    noise = frame(300, seed=9, age_shift=60)
    items = records(frame(1200, seed=1), T0, prefix="clean")
    for hour in (1, 2):
        items += records(drifted, T0 + hour * HOUR, prefix=f"drift{hour}-")
    for hour in (0, 1, 2):
        items += records(noise, T0 + hour * HOUR + 1, prefix=f"shadow{hour}-", arm="shadow")
        items += records(noise, T0 + hour * HOUR + 2, prefix=f"failed{hour}-", status=503)
    write_log(project, items)
    yield project
    project.close()


def test_windows_of_the_log_persist_alert_and_clear(logged: Project) -> None:
    project = logged
    clean = drift.check("churn", since=_at(0), until=_at(1), project=project, now=_at(3))
    assert clean.current_rows == 1200 and not clean.drifted and not clean.alerting
    assert {c["name"] for c in clean.columns} == {*FEATURES, "prediction"}
    assert all(not c["drifted"] for c in clean.columns)
    assert clean.reference == "churn-train@1" and clean.reference_rows == 1500
    age = clean.column("age")
    assert age["method"] == "wasserstein" and age["role"] == "input" and age["kind"] == "numeric"
    assert clean.column("prediction")["role"] == "prediction"

    first = drift.check("churn", since=_at(1), until=_at(2), project=project, now=_at(3))
    assert first.drifted and not first.alerting and first.dataset["streak"] == 1
    assert first.column("age")["drifted"] and first.column("plan")["drifted"]
    assert not first.column("income")["drifted"]
    assert not open_alerts("churn", project=project)

    second = drift.check("churn", since=_at(2), until=_at(3), project=project, now=_at(3))
    assert second.alerting and second.dataset["streak"] == 2  # persistence 2 reached
    assert second.column("age")["alerting"] and not second.column("income")["alerting"]
    (alert,) = open_alerts("churn", project=project)
    assert alert.key == "drift:churn"

    again = drift.check("churn", since=_at(0), until=_at(1), project=project, now=_at(3))
    assert not again.alerting and not open_alerts("churn", project=project)

    assert [r.id for r in drift.history("churn", project=project)] == [
        again.id,
        second.id,
        first.id,
        clean.id,
    ]
    stored = drift.get(second.id, project=project).to_dict()  # type: ignore[arg-type]
    assert stored == json.loads(json.dumps(second.to_dict()))
    assert set(stored) >= {
        "id",
        "model",
        "version",
        "reference",
        "window_start",
        "window_end",
        "reference_rows",
        "current_rows",
        "drifted",
        "drifted_share",
        "alerting",
        "created_at",
        "dataset",
        "settings",
        "columns",
    }
    histogram = stored["columns"][0]["histogram"]
    assert sum(histogram["reference"]) == 1500 and sum(histogram["current"]) == 1200
    assert drift.latest("churn", project=project).id == again.id  # type: ignore[union-attr]


def test_the_last_n_predictions(logged: Project) -> None:
    result = drift.check("churn", last=500, project=logged, save=False, now=_at(3))
    assert result.current_rows == 500 and result.drifted and result.id is None
    assert result.window_end is not None and result.window_end >= _at(2)


def _results(project: Project) -> int:
    with project.metadata.read() as session:
        return int(session.scalar(select(func.count()).select_from(DriftResultRecord)) or 0)


def test_bad_input_is_refused_and_nothing_is_stored(logged: Project) -> None:
    before = _results(logged)
    with pytest.raises(InvalidInput, match="the window has no predictions of churn@1"):
        drift.check("churn", since=_at(10), until=_at(11), project=logged)
    with pytest.raises(InvalidInput, match=r"since: expected a time .* got 'yesterday-ish'"):
        drift.check("churn", since="yesterday-ish", project=logged)
    with pytest.raises(InvalidInput, match="either a time range"):
        drift.check("churn", since="1h", last=5, project=logged)
    logged.settings.drift["churn"] = {"columns": {"age": {"method": "chi"}}}
    try:
        with pytest.raises(ConfigError, match=r"\[drift.churn\].columns.age.method: unknown"):
            drift.check("churn", last=10, project=logged)
    finally:
        del logged.settings.drift["churn"]
    assert _results(logged) == before


def test_a_feature_missing_from_the_reference_is_named(tmp_path: Path, project: Project) -> None:
    register_model(project, rows=300)
    write_log(project, records(frame(50, seed=3), T0, extra={"zip": "10115"}))
    with pytest.raises(
        InvalidInput,
        match=r"feature\(s\) 'zip' of the window are not in the "
        r"reference; its columns are age, income, plan, churned",
    ):
        drift.check("churn", since=_at(0), until=_at(1), project=project)
    with project.metadata.read() as session:
        assert session.scalar(select(func.count()).select_from(DriftResultRecord)) == 0


def test_the_reference_is_the_training_data_not_a_held_out_slice(logged: Project) -> None:
    """A version that records its training data and a smaller held-out slice with the same
    columns drifts against the training data (the whole picture), not the slice."""
    import shipyard.data as data
    from shipyard.registry.versions import register

    project = logged
    train = data.get("churn-train@1", project=project)
    holdout = data.add(frame(50, seed=7), "churn-holdout", project=project)
    fitted = _small_classifier(train.to_pandas())
    version = register(
        fitted,
        "slices",
        training_data=train,
        datasets=[holdout],
        target="churned",
        project=project,
    )
    assert sorted(version.datasets) == sorted([train.ref, holdout.ref])
    write_log(project, records(frame(200, seed=1), T0, model="slices", prefix="slices"))
    found = drift.check("slices", since=_at(0), until=_at(1), project=project, save=False)
    assert found.reference == train.ref and found.reference_rows == train.num_rows


def _small_classifier(train: object) -> object:
    """A small classifier on the drift helpers' features (the same recipe as register_model)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame_ = train  # a pandas DataFrame
    encode = ColumnTransformer(
        [("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder="passthrough"
    )
    model = Pipeline([("encode", encode), ("fit", LogisticRegression(max_iter=1000))])
    return model.fit(frame_[FEATURES], frame_["churned"])  # type: ignore[index]
