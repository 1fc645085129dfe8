"""Trigger verdicts without training: SLO and quality alerts, severities, the cooldown, and
settings that are wrong (a clear error, nothing recorded)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from training_helpers import CANARY, OpenProject, policies, training, write_pipeline

from shipyard.errors import ConfigError
from shipyard.project import Project
from shipyard.store.models import AlertRecord, TriggerFiringRecord
from shipyard.training import history, parse_plans, run_once, trigger_states


def _open_alert(project: Project, kind: str, severity: str, *, resolved: bool = False) -> int:
    now = datetime.now(UTC)
    with project.metadata.write() as session:
        alert = AlertRecord(
            key=f"{kind}:weather:{severity}", open_key=None if resolved else f"{kind}:{severity}",
            kind=kind, model="weather", severity=severity, summary=f"{kind} budget burning",
            evidence={}, opened_at=now, resolved_at=now if resolved else None, notified={},
        )  # fmt: skip
        session.add(alert)
        session.flush()
        return alert.id


def test_open_slo_and_quality_alerts_make_their_triggers_due(weather_project: OpenProject) -> None:
    project = weather_project(
        training=training(
            {"name": "paged", "kind": "slo", "severity": "page"},
            {"name": "labels", "kind": "quality"},
        ),
        policies=policies(),
    )
    paged, labels = trigger_states(project=project)
    assert not paged.verdict.due and not labels.verdict.due
    assert paged.verdict.reason == "no open slo alert of severity page for weather"

    _open_alert(project, "slo", "ticket")  # another severity
    _open_alert(project, "quality", "page", resolved=True)  # resolved: not open
    assert not any(state.verdict.due for state in trigger_states(project=project))

    alert = _open_alert(project, "slo", "page")
    quality = _open_alert(project, "quality", "ticket")
    paged, labels = trigger_states(project=project)
    assert paged.fires and paged.verdict.evidence == {"alert": alert}
    assert paged.verdict.reason.startswith(f"open slo alert {alert} (page, since ")
    assert paged.verdict.reason.endswith("slo budget burning")
    assert labels.fires and labels.verdict.evidence == {"alert": quality}


def test_the_cooldown_holds_a_due_trigger_back_without_recording(
    weather_project: OpenProject,
) -> None:
    project = weather_project(
        training=training({"name": "paged", "kind": "slo"}, cooldown="1h"), policies=policies()
    )
    earlier = datetime.now(UTC) - timedelta(minutes=10)
    with project.metadata.write() as session:
        session.add(
            TriggerFiringRecord(
                model="weather", trigger="manual", kind="schedule", reason="earlier",
                status="gates_failed", version=2, detail={}, fired_at=earlier,
                finished_at=earlier, fired_by="test",
            )
        )  # fmt: skip
    _open_alert(project, "slo", "page")

    (state,) = trigger_states(project=project)
    assert state.verdict.due and not state.fires
    assert state.blocked is not None and state.blocked.startswith("cooling down until ")
    assert run_once(project=project) == []
    assert len(history(project=project)) == 1

    (later,) = trigger_states(project=project, now=earlier + timedelta(hours=1, seconds=1))
    assert later.fires


def _table(**changes: Any) -> dict[str, Any]:
    """The weather table with `changes` (a None value removes the key)."""
    table = training({"name": "nightly", "kind": "schedule", "cron": "0 3 * * *"})["weather"]
    table.update(changes)
    return {k: v for k, v in table.items() if v is not None}


BAD_SETTINGS = [
    (
        _table(triggers=[{"name": "nightly", "kind": "schedule", "cron": "0 25 * * *"}]),
        "[training.weather] trigger 'nightly' (schedule): malformed cron expression "
        "'0 25 * * *': expected five fields",
    ),
    (
        _table(triggers=[{"name": "hourly", "kind": "schedule", "cron": "every hour"}]),
        "trigger 'hourly' (schedule): malformed cron expression 'every hour'",
    ),
    (
        _table(triggers=[{"name": "x", "kind": "weather"}]),
        "[training.weather] trigger 'x': `kind` must be one of schedule, dataset, drift, slo, "
        "quality; got 'weather'",
    ),
    (
        _table(triggers=[{"name": "d", "kind": "drift", "threshold": 0.2}]),
        "trigger 'd' (drift): unknown key(s) threshold; known: kind, name",
    ),
    (_table(triggers=[]), "[training.weather]: declare at least one trigger"),
    (
        _table(policy="strict"),
        "`policy` 'strict' is not a configured promotion policy (policies: champion)",
    ),
    (_table(pipeline="train.txt"), "`pipeline` must be path/to/file.py[:name]"),
    (_table(pipeline="missing.py:train"), "pipeline file 'missing.py' not found"),
    (_table(cooldown="soon"), "[training.weather] cooldown: expected a duration such as '30s'"),
    (_table(rollout={**CANARY, "model": "weather"}), "rollout: model is filled in"),
    (_table(rollout={"strategy": "canary"}), "`steps` is required for a canary"),
    (_table(rollout=None), "`rollout` (the rollout of each new version"),
    (_table(data_param=None), "set `dataset` and `data_param` together"),
    (_table(params={"data": "weather@1"}), "`params` sets 'data', which continuous training"),
    (_table(auto_rollout="yes"), "`auto_rollout` must be true or false; got 'yes'"),
    (_table(retrain=True), "unknown key(s) retrain; known: auto_rollout, cooldown"),
]


@pytest.mark.parametrize(("table", "message"), BAD_SETTINGS)
def test_bad_settings_are_named_clearly(
    tmp_path: Path, table: dict[str, Any], message: str
) -> None:
    write_pipeline(tmp_path)
    with pytest.raises(ConfigError) as caught:
        parse_plans({"weather": table}, policies=policies(), root=tmp_path)
    assert message in str(caught.value)


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    write_pipeline(tmp_path)
    table = _table(cooldown=-1, triggers=[{"name": "n", "kind": "schedule", "cron": "* *"}])
    with pytest.raises(ConfigError) as caught:
        parse_plans({"weather": table}, policies=policies(), root=tmp_path)
    assert "cooldown: a duration must be >= 0; got -1" in str(caught.value)
    assert "malformed cron expression '* *'" in str(caught.value)


def test_a_bad_setting_stops_the_pass_before_anything_is_recorded(
    weather_project: OpenProject,
) -> None:
    good = training({"name": "paged", "kind": "slo"})["weather"]
    bad = {**good, "triggers": [{"name": "nightly", "kind": "schedule", "cron": "0 3 * *"}]}
    project = weather_project(training={"weather": good, "other": bad}, policies=policies())
    _open_alert(project, "slo", "page")  # weather is due, but other's table is wrong
    with pytest.raises(ConfigError, match=r"\[training.other\] trigger 'nightly'"):
        run_once(project=project)
    assert history(project=project) == []


def test_a_model_without_training_settings_is_named(weather_project: OpenProject) -> None:
    project = weather_project(training=training({"name": "d", "kind": "drift"}))
    with pytest.raises(ConfigError, match=r"model 'rain' has no continuous training configured"):
        run_once(project=project, model="rain")
