"""The monitoring pass: drift, SLOs and quality estimates for every monitored model, in one call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from drift_helpers import HOUR, T0, frame, records, register_model, write_log
from slo_helpers import run_shipyard

from shipyard.errors import ShipyardError
from shipyard.monitoring import drift, quality, slo, watch
from shipyard.monitoring.alerting import open_alerts
from shipyard.project import Project


def _at(offset_hours: float) -> datetime:
    return datetime.fromtimestamp(T0 + offset_hours * HOUR, UTC)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A churn model with one clean hour of traffic, then a drifted hour with 5% failures."""
    folder = tmp_path_factory.mktemp("watch")
    project = Project.init(folder / ".shipyard", database_url=f"sqlite:///{folder / 'm.db'}")
    register_model(project)
    items = records(frame(600, seed=1), T0, prefix="clean")
    drifted = frame(600, seed=2, age_shift=25, plans=[0.1, 0.1, 0.8])
    items += records(drifted, T0 + HOUR, prefix="drifted")
    items += records(frame(40, seed=3), T0 + HOUR + 5, prefix="failed", status=500)
    write_log(project, items)
    project.settings.drift = {"churn": {"window": "1h", "persistence": 1}}
    project.settings.slos = {
        "churn": [
            {"name": "available", "sli": "availability", "objective": 0.99, "window": "1d"},
            {"name": "right", "sli": "quality", "objective": 0.5, "window": "1d"},
        ]
    }
    yield project
    project.close()


def test_one_pass_checks_drift_evaluates_slos_and_estimates_quality(watched: Project) -> None:
    project = watched
    found = watch.watch(project=project, now=_at(2))
    by_part = {(o.part, o.summary.split(" ")[0]): o for o in found}
    parts = [o.part for o in found]
    assert parts == ["drift", "slo", "slo", "quality"], found

    drifted = found[0]
    assert drifted.status == "alert", drifted
    assert "age" in drifted.detail["drifted"]
    stored = drift.latest("churn", project=project)
    assert stored is not None and stored.id == drifted.detail["result"] and stored.alerting
    assert [a.key for a in open_alerts("churn", kind="drift", project=project)] == ["drift:churn"]

    availability = by_part[("slo", "available")]
    # 40 failures of 1,240 answers is 3.2% against a 1% budget: the budget is overspent.
    assert availability.detail["value"] == pytest.approx(1200 / 1240)
    assert availability.detail["budget_remaining"] < 0
    assert slo.history("churn", "available", project=project)

    estimate = found[3]
    assert estimate.part == "quality" and estimate.status == "ok", estimate
    assert estimate.detail["predictions"] == 600  # the first window: the last hour, answered
    assert quality.estimates("churn", project=project)


def test_a_time_window_is_checked_once_per_window(watched: Project) -> None:
    project = watched
    before = drift.latest("churn", project=project)
    again = watch.watch("churn", project=project, now=_at(2.5))
    assert again[0].part == "drift" and again[0].status == "skipped"
    assert "next window due" in again[0].summary
    assert drift.latest("churn", project=project) == before


def test_an_unmonitored_model_is_refused(watched: Project) -> None:
    with pytest.raises(ShipyardError, match=r"nothing is monitored for model 'other'.*churn"):
        watch.watch("other", project=watched)


def test_one_models_failure_does_not_stop_the_others(watched: Project) -> None:
    project = watched
    project.settings.drift = {**project.settings.drift, "ghost": {"window": "1h"}}
    try:
        found = watch.watch(project=project, now=_at(5))
    finally:
        project.settings.drift = {"churn": {"window": "1h", "persistence": 1}}
    ghost = [o for o in found if o.model == "ghost"]
    assert [o.status for o in ghost] == ["skipped"] and "ghost" in ghost[0].summary
    assert any(o.model == "churn" and o.part == "slo" for o in found)


def test_the_cli_runs_one_pass(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("watch-cli")
    project = Project.init(folder / ".shipyard")
    register_model(project, rows=400)
    now = datetime.now(UTC).timestamp()
    live = frame(300, seed=4, age_shift=30, plans=[0.1, 0.1, 0.8])
    write_log(project, records(live, now - 60, prefix="live"))
    project.close()
    (folder / ".shipyard" / "shipyard.toml").write_text(
        '[drift.churn]\nlast = 300\npersistence = 1\n\n[[slos.churn]]\nname = "up"\n'
        'sli = "availability"\nobjective = 0.999\nwindow = "1h"\n'
    )
    result = run_shipyard("monitor", "run", "--once", "--json", cwd=folder)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(o["part"], o["status"]) for o in lines] == [("drift", "alert"), ("slo", "ok")]
    assert lines[1]["detail"]["value"] == 1.0
