"""Rollout state without a server: refusals before any traffic moves, transitions that do not
fit the state, approval, and the decision records."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import shipyard.data as data
from shipyard.errors import InvalidInput
from shipyard.predictions.log import log_folder
from shipyard.predictions.writer import ParquetLog
from shipyard.project import Project
from shipyard.registry.aliases import GatesNotPassed, set_alias
from shipyard.registry.versions import get, register
from shipyard.release import rollouts
from shipyard.release.controller import Controller
from shipyard.release.rollouts import RolloutConflict
from shipyard.release.spec import parse
from shipyard.serving.record import PredictionRecord


def _frame(columns: list[str], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(200, len(columns))), columns=columns)
    frame["y"] = (frame[columns[0]] > 0).astype(int)
    return frame


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    project = Project.init(tmp_path / ".shipyard")
    frame = _frame(["a", "b"])
    train = data.add(frame, "train", project=project)
    for c in (1.0, 0.5):
        model = LogisticRegression(C=c).fit(frame[["a", "b"]], frame["y"])
        register(model, "m", training_data=train, target="y", project=project)
    wider = _frame(["a", "b", "c"], seed=1)
    wide_train = data.add(wider, "wide", project=project)
    model = LogisticRegression().fit(wider[["a", "b", "c"]], wider["y"])
    register(model, "m", training_data=wide_train, target="y", project=project)  # v3
    set_alias("m", "champion", 1, reason="first", project=project)
    yield project
    project.close()


def canary(candidate: int, **extra: object) -> object:
    declared = {
        "model": "m",
        "candidate": candidate,
        "steps": [{"weight": 50}],
        "interval": 0,
        "min_samples": 20,
        "analysis": [{"metric": "error_rate", "max": 0.2}],
    }
    declared.update(extra)
    return parse(declared)


def test_an_incompatible_candidate_is_refused_before_any_traffic_moves(project: Project) -> None:
    with pytest.raises(InvalidInput, match="needs the input 'c', which the champion does not"):
        rollouts.start(canary(3), project=project)
    assert rollouts.list_rollouts(project=project) == []


def test_a_candidate_without_passed_gates_is_refused(project: Project) -> None:
    settings = project.settings.settings_file
    settings.write_text(
        settings.read_text()
        + '\n[policies.champion]\n[[policies.champion.gates]]\nkind = "approval"\n'
    )
    guarded = Project.open(project.home)
    try:
        with pytest.raises(GatesNotPassed, match="may not be rolled out"):
            rollouts.start(canary(2), project=guarded)
        assert rollouts.list_rollouts(project=guarded) == []
    finally:
        guarded.close()


def test_transitions_that_do_not_fit_the_state_are_refused(project: Project) -> None:
    rollout = rollouts.start(canary(2), project=project)
    rollouts.pause(rollout.id, project=project)
    with pytest.raises(RolloutConflict, match="is paused"):
        rollouts.pause(rollout.id, project=project)
    rollouts.resume(rollout.id, project=project)
    with pytest.raises(RolloutConflict, match="is running"):
        rollouts.resume(rollout.id, project=project)
    with pytest.raises(InvalidInput, match="only blue/green switches"):
        rollouts.switch(rollout.id, project=project)
    with pytest.raises(InvalidInput, match="v3 is not a candidate"):
        rollouts.promote(rollout.id, version=3, project=project)
    rollouts.abort(rollout.id, reason="not today", project=project)
    with pytest.raises(RolloutConflict, match="is aborted"):
        rollouts.abort(rollout.id, project=project)
    actions = [d.action for d in rollouts.history(rollout.id, project=project)]
    assert actions == ["start", "pause", "resume", "abort"]
    assert get("m@champion", project=project).version == 1


def _healthy_log(project: Project, rollout: rollouts.Rollout) -> None:
    """Both versions answering well since the rollout started, as the server logs them."""
    start = rollout.step_started_at.timestamp()
    with ParquetLog(log_folder(project.settings)) as log:
        for i in range(80):
            version, arm = (2, "candidate") if i % 2 else (1, "champion")
            log.append(
                PredictionRecord(
                    request_id=f"r{i}",
                    time=start + 0.01 * (i + 1),
                    model="m",
                    version=version,
                    protocol="predict",
                    inputs=json.dumps([{"a": 0.1, "b": 0.2}]),
                    outputs=json.dumps({"predictions": [1]}),
                    latency_ms=2.0,
                    arm=arm,
                )
            )


def test_approval_holds_the_promotion_until_a_person_approves(project: Project) -> None:
    rollout = rollouts.start(canary(2, approval=True), project=project)
    _healthy_log(project, rollout)
    time.sleep(0.05)
    later = rollout.step_started_at + timedelta(seconds=5)
    controller = Controller(project, clock=lambda: later)
    (outcome,) = controller.tick()
    assert outcome.action == "await_approval", outcome
    waiting = rollouts.get(rollout.id, project=project)
    assert waiting.status == "awaiting_approval"
    assert get("m@champion", project=project).version == 1
    assert controller.tick() == []  # nothing to judge while a person decides
    promoted = rollouts.approve(rollout.id, reason="looks good", project=project)
    assert promoted.status == "promoted" and get("m@champion", project=project).version == 2
    last = rollouts.history(rollout.id, project=project)[-1]
    assert (last.action, last.reason, last.after["status"]) == ("promote", "looks good", "promoted")


def test_every_decision_records_the_split_before_and_after(project: Project) -> None:
    rollout = rollouts.start(canary(2), project=project)
    _healthy_log(project, rollout)
    now = datetime.now(UTC) + timedelta(seconds=1)
    (outcome,) = Controller(project, clock=lambda: now).tick()
    assert outcome.action == "promote"
    start, promote = rollouts.history(rollout.id, project=project)
    assert start.after["weights"] == {"v1": 50.0, "v2": 50.0}
    assert promote.before["weights"] == {"v1": 50.0, "v2": 50.0}
    assert promote.after["weights"] == {"v2": 100.0}
    assert promote.window_end == now and promote.verdict == "pass"
    assert promote.evidence["samples"]["candidate"] == 40


def test_a_narrower_training_range_is_recorded_as_a_warning(tmp_path: Path) -> None:
    project = Project.init(tmp_path / ".shipyard")
    try:
        wide = _frame(["a", "b"])
        narrow = wide[wide["a"].abs() < 1.0]
        for frame, name in ((wide, "wide"), (narrow, "narrow")):
            train = data.add(frame, name, project=project)
            model = LogisticRegression().fit(frame[["a", "b"]], frame["y"])
            register(model, "m", training_data=train, target="y", project=project)
        set_alias("m", "champion", 1, reason="first", project=project)
        rollout = rollouts.start(canary(2), project=project)
        (start,) = rollouts.history(rollout.id, project=project)
        (warning,) = [w for w in start.evidence["compatibility_warnings"] if "on a in" in w]
        assert warning.startswith("v2 was trained on a in [")
    finally:
        project.close()


def test_a_hold_changes_no_route_and_leaves_the_revision_alone(project: Project) -> None:
    rollout = rollouts.start(canary(2), project=project)
    revision = rollouts.revision(project)
    later = rollout.step_started_at + timedelta(seconds=5)
    (outcome,) = Controller(project, clock=lambda: later).tick()  # no traffic: inconclusive
    assert outcome.action == "hold"
    assert rollouts.revision(project) == revision  # workers do not re-read for a hold
    rollouts.pause(rollout.id, project=project)
    assert rollouts.revision(project) == revision + 1
