"""Continuous training end to end: triggers fire, the pipeline runs, the gates judge, and the
rollout starts (or the version waits for approval, or nothing is released)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from training_helpers import OpenProject, policies, training, weather_frame

import shipyard.data as data
from shipyard.project import Project
from shipyard.release import rollouts
from shipyard.store.models import AlertRecord, DriftResultRecord, TriggerFiringRecord
from shipyard.training import (
    Firing,
    approve,
    get_firing,
    history,
    run,
    run_once,
    trigger_states,
)

NIGHTLY = {"name": "nightly", "kind": "schedule", "cron": "0 3 * * *"}
NEW_DATA = {"name": "new-data", "kind": "dataset"}


def _fired_before(project: Project, at: datetime) -> None:
    """A past firing of the nightly trigger, as if the loop had run at `at`."""
    with project.metadata.write() as session:
        session.add(
            TriggerFiringRecord(
                model="weather", trigger="nightly", kind="schedule", reason="earlier",
                status="unchanged", version=1, detail={}, fired_at=at, finished_at=at,
                fired_by="test",
            )
        )  # fmt: skip


def test_a_due_schedule_retrains_gates_and_starts_the_canary(weather_project: OpenProject) -> None:
    project = weather_project(training=training(NIGHTLY), policies=policies())
    _fired_before(project, datetime(2030, 1, 1, 3, 30, tzinfo=UTC))
    data.add(weather_frame(400, 7), "weather", project=project)

    morning = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
    (state,) = trigger_states(project=project, now=morning)
    assert not state.verdict.due
    assert state.verdict.next_at == datetime(2030, 1, 2, 3, 0, tzinfo=UTC)
    assert "next at 2030-01-02 03:00:00 UTC" in state.verdict.reason
    assert run_once(project=project, now=morning) == []

    next_night = datetime(2030, 1, 2, 3, 1, tzinfo=UTC)
    seen: list[str] = []
    (firing,) = run_once(project=project, now=next_night, on_event=lambda f: seen.append(f.status))

    assert seen == ["running", "rolling_out"]
    assert firing.status == "rolling_out", firing.detail
    assert (firing.trigger, firing.kind, firing.version) == ("nightly", "schedule", 2)
    assert "2030-01-02 03:00:00 UTC passed since this trigger last fired" in firing.reason
    assert firing.detail["dataset_ref"] == "weather@2"
    assert firing.detail["gates"]["passed"] is True
    assert firing.run_id is not None and firing.fired_at == next_night
    assert firing.finished_at is not None and firing.finished_at >= firing.fired_at
    assert set(firing.detail["timings"]) == {"pipeline_s", "gates_s", "rollout_s", "total_s"}
    assert firing.rollout is not None
    rollout = rollouts.get(firing.rollout, project=project)
    assert (rollout.model, rollout.candidate, rollout.champion) == ("weather", 2, 1)
    assert rollout.status == "running" and rollout.weights == {"v1": 90.0, "v2": 10.0}
    assert rollouts.history(rollout.name, project=project)[0].actor == "ct:nightly"
    assert "its rollout weather-v2 started" in firing.describe()
    assert history(project=project)[0].id == firing.id


def test_each_new_dataset_version_fires_once_and_waits_for_approval(
    weather_project: OpenProject,
) -> None:
    project = weather_project(training=training(NEW_DATA, auto_rollout=False), policies=policies())
    (state,) = trigger_states(project=project)
    assert not state.verdict.due
    assert "no version of 'weather' newer than weather@1, which champion v1 trained on" in (
        state.verdict.reason
    )
    assert run_once(project=project) == []

    data.add(weather_frame(400, 8), "weather", project=project)
    (firing,) = run_once(project=project)
    assert firing.status == "awaiting_approval", firing.detail
    assert firing.version == 2 and firing.rollout is None
    assert firing.reason == "weather@2 is newer than weather@1, which champion v1 trained on"
    assert f"shipyard ct approve {firing.id}" in firing.describe()
    assert rollouts.list_rollouts(project=project) == []
    assert run_once(project=project) == []  # weather@2 was trained on: not again

    approved = approve(firing.id, project=project)
    assert approved.status == "rolling_out" and approved.rollout == "weather-v2"
    assert approved.detail["approved_by"] == project.user
    assert rollouts.get("weather-v2", project=project).candidates == [2]

    # A new version while the rollout is live: recorded as skipped once, not on every pass.
    data.add(weather_frame(400, 9), "weather", project=project)
    (skipped,) = run_once(project=project)
    assert skipped.status == "skipped" and skipped.trigger == "new-data"
    assert "rollout 'weather-v2' of weather is live" in skipped.describe()
    assert run_once(project=project) == []
    assert [f.status for f in history("weather", project=project)] == [
        "skipped",
        "rolling_out",
    ]


def test_an_alerting_drift_result_retrains_but_failed_gates_release_nothing(
    weather_project: OpenProject,
) -> None:
    drift = {"name": "drifted", "kind": "drift"}
    project = weather_project(training=training(drift), policies=policies(min_accuracy=0.999))
    assert not trigger_states(project=project)[0].verdict.due  # no drift result yet
    _drift_result(project, alerting=False)
    assert "is not alerting" in trigger_states(project=project)[0].verdict.reason
    _drift_result(project, alerting=True)
    data.add(weather_frame(400, 10, shift=8.0), "weather", project=project)

    (firing,) = run_once(project=project)

    assert firing.status == "gates_failed", firing.detail
    assert firing.kind == "drift" and "is alerting: 40% of the columns drifted" in firing.reason
    assert firing.detail["gates"]["failed"] == ["evaluation"]
    assert "failed the gates evaluation of policy 'champion'" in firing.describe()
    assert rollouts.list_rollouts(project=project) == []
    assert run_once(project=project) == []  # that drift result was acted on


def _drift_result(project: Project, *, alerting: bool) -> None:
    with project.metadata.write() as session:
        session.add(
            DriftResultRecord(
                model="weather", version=1, reference="weather@1", reference_rows=400,
                current_rows=500, drifted=alerting, drifted_share=0.4 if alerting else 0.0,
                alerting=alerting, result={}, created_by="test",
            )
        )  # fmt: skip


def test_a_running_firing_holds_the_model_until_it_is_stale(weather_project: OpenProject) -> None:
    paged = {"name": "paged", "kind": "slo"}
    project = weather_project(
        training=training(paged, auto_rollout=False, stale_after="6h"), policies=policies()
    )
    started = datetime.now(UTC) - timedelta(minutes=10)
    with project.metadata.write() as session:
        running = TriggerFiringRecord(
            model="weather", trigger="manual", kind="schedule", reason="earlier",
            status="running", detail={}, fired_at=started, fired_by="test",
        )  # fmt: skip
        session.add(running)
        session.flush()
        running_id = running.id
        session.add(
            AlertRecord(
                key="slo:weather", open_key="slo:weather", kind="slo", model="weather",
                severity="page", summary="availability budget burning", evidence={},
                opened_at=started, notified={},
            )
        )  # fmt: skip

    (skipped,) = run_once(project=project)
    assert skipped.status == "skipped"
    assert (
        f"firing {running_id} (manual) of weather is still running since"
        in (skipped.detail["blocker"])
    )

    later = started + timedelta(hours=6, minutes=1)
    (firing,) = run_once(project=project, now=later)
    # Same data, same code: the pipeline gives back the champion's files, so v1 again.
    assert (firing.status, firing.trigger, firing.version) == ("unchanged", "paged", 1)
    assert "trained weather@1" in firing.describe()
    assert firing.describe().endswith("the champion already; nothing to release")
    abandoned = get_firing(running_id, project=project)
    assert abandoned.status == "failed"
    assert abandoned.detail["error"].startswith("abandoned: still running after stale_after")


def test_the_loop_runs_passes_until_it_is_stopped(weather_project: OpenProject) -> None:
    project = weather_project(training=training(NEW_DATA, auto_rollout=False), policies=policies())
    data.add(weather_frame(400, 12), "weather", project=project)
    stop = threading.Event()
    ended: list[Firing] = []

    def tell(firing: Firing) -> None:
        if firing.status != "running":
            ended.append(firing)
            stop.set()

    passes = run(poll=0.01, project=project, stop=stop, on_event=tell)

    assert passes == 1
    assert [(f.status, f.version) for f in ended] == [("awaiting_approval", 2)]
