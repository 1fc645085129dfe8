"""What-if replay of a rollout over crafted prediction logs: the controller's decisions step by
step, the data it judged, nothing written; and `shipyard rollout replay`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

import shipyard.project
from shipyard.cli import app
from shipyard.cli.console import out
from shipyard.errors import InvalidInput, NotFound
from shipyard.predictions.log import log_folder
from shipyard.predictions.writer import ParquetLog
from shipyard.project import Project
from shipyard.registry.aliases import set_alias
from shipyard.registry.versions import register
from shipyard.release import whatif
from shipyard.release.spec import RolloutSpec, parse
from shipyard.release.whatif import WhatIf, parse_window, replay
from shipyard.serving.record import PredictionRecord
from shipyard.store.models import (
    ModelAliasRecord,
    ModelVersionRecord,
    ReleaseRevisionRecord,
    RolloutDecisionRecord,
    RolloutRecord,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))
from cli_helpers import error_line, run_shipyard

START = datetime(2024, 5, 1, 13, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
MINUTE = 60.0

CANARY = """\
[rollout]
name = "churn-canary"
model = "churn"
candidate = 2
interval = "5m"
steps = [{ weight = 10, hold = "10m" }, { weight = 50, hold = "10m" }, { weight = 100 }]
analysis = [{ metric = "error_rate", max = 0.05 }]
"""


def canary(**extra: Any) -> RolloutSpec:
    """Three steps held 10 minutes each but the last, judged every 5 minutes."""
    declared: dict[str, Any] = {
        "model": "churn",
        "candidate": 2,
        "interval": "5m",
        "steps": [
            {"weight": 10, "hold": "10m"},
            {"weight": 50, "hold": "10m"},
            {"weight": 100},
        ],
        "analysis": [{"metric": "error_rate", "max": 0.05}],  # 60 requests needed
    }
    declared.update(extra)
    return parse(declared)


def record(i: int, version: int, arm: str, at: float, *, status: int = 200) -> PredictionRecord:
    outputs = {"error": "RuntimeError: boom"} if status >= 500 else {"predictions": [i % 2]}
    return PredictionRecord(
        request_id=f"q{i}",
        time=at,
        model="churn",
        version=version,
        protocol="predict",
        inputs=json.dumps([{"age": 20 + i % 50}]),
        outputs=json.dumps(outputs),
        latency_ms=5.0,
        arm=arm,
        status=status,
    )


def traffic(
    *,
    candidate_arm: str | None = "candidate",
    fails: Callable[[float], bool] = lambda minute: False,
) -> list[PredictionRecord]:
    """An hour from START, a request every 2 s: even ones answered by v1 (arm champion), odd
    ones by v2 under `candidate_arm` (none when None), failing (500) from `fails(minute)`.
    15 requests a minute for each version."""
    records = []
    for i in range(1800):
        at = START.timestamp() + 1 + 2 * i
        if i % 2 == 0:
            records.append(record(i, 1, "champion", at))
        elif candidate_arm is not None:
            minute = (at - START.timestamp()) / MINUTE
            records.append(record(i, 2, candidate_arm, at, status=500 if fails(minute) else 200))
    return records


def logged(folder: Path, records: list[PredictionRecord]) -> Path:
    with ParquetLog(folder) as log:
        for item in records:
            log.append(item)
    return folder


def run(folder: Path, spec: RolloutSpec, **extra: Any) -> WhatIf:
    extra.setdefault("champion", 1)
    extra.setdefault("candidate", 2)
    return replay(spec, start=START, end=END, folder=folder, **extra)


def actions(result: WhatIf) -> list[tuple[str, int, str, str]]:
    return [(f"{d.at:%H:%M}", d.step, d.verdict, d.action) for d in result.decisions]


# -- the decisions ----------------------------------------------------------------------------


def test_a_healthy_candidate_is_promoted_after_its_steps(tmp_path: Path) -> None:
    result = run(logged(tmp_path / "log", traffic()), canary())
    assert actions(result) == [
        ("13:05", 1, "pass", "hold"),  # passing, held 5 of 10 minutes
        ("13:10", 1, "pass", "advance"),
        ("13:15", 2, "pass", "hold"),
        ("13:20", 2, "pass", "advance"),
        ("13:25", 3, "pass", "promote"),
    ]
    assert result.outcome == "promoted" and result.step == 3
    assert result.ended_at == START + timedelta(minutes=25)
    assert result.decisions[0].reason == "passing; step not done: held 300 s of 600 s"
    assert result.summary.startswith("promoted at 2024-05-01 13:25:00 UTC: every step passed")
    # each step is judged on its own window; the 100% step on the previous step's too
    windows = [(d.window_start - START, d.at - START) for d in result.decisions]
    assert [(int(a.total_seconds() // 60), int(b.total_seconds() // 60)) for a, b in windows] == [
        (0, 5), (0, 10), (10, 15), (10, 20), (10, 25),
    ]  # fmt: skip
    assert result.decisions[1].samples["candidate"] == 150  # 15 a minute for 10 minutes
    assert result.data["candidate_judged"] == 900 and result.data["champion_judged"] == 900
    assert result.data["records"] == {"v1": {"champion": 900}, "v2": {"candidate": 900}}
    assert "the log was not split by this rollout" in result.notes[0]
    evidence = result.to_dict()
    assert json.loads(json.dumps(evidence, allow_nan=False)) == evidence
    assert evidence["decisions"][4]["analysis"]["samples"]["candidate"] == 225
    assert evidence["outcome"] == "promoted" and evidence["spec_hash"] == canary().hash


def test_min_requests_and_approval_are_the_controllers(tmp_path: Path) -> None:
    folder = logged(tmp_path / "log", traffic())
    declared = canary(steps=[{"weight": 10, "min_requests": 200}, {"weight": 100}], approval=True)
    result = run(folder, declared)
    assert actions(result) == [
        ("13:05", 1, "pass", "hold"),
        ("13:10", 1, "pass", "hold"),
        ("13:15", 1, "pass", "advance"),  # 225 candidate requests >= 200
        ("13:20", 2, "pass", "await_approval"),
    ]
    assert result.decisions[0].reason == "passing; step not done: 75 of 200 candidate requests"
    assert result.outcome == "awaiting_approval"
    assert "it would wait for an approval" in result.summary


def test_an_erroring_candidate_is_rolled_back_at_the_step_where_it_failed(
    tmp_path: Path,
) -> None:
    folder = logged(tmp_path / "log", traffic(fails=lambda minute: minute >= 12))
    result = run(folder, canary())
    assert actions(result) == [
        ("13:05", 1, "pass", "hold"),
        ("13:10", 1, "pass", "advance"),
        ("13:15", 2, "fail", "rollback"),
    ]
    assert result.outcome == "rolled_back" and result.step == 2
    reason = result.decisions[-1].reason
    assert reason.startswith("analysis failed (1 of 1 allowed): fail on 75 candidate")
    assert "error_rate: 0.6 (45 of 75) > max 0.05" in reason
    assert result.summary.startswith("rolled back at step 2/3 (50%) at 2024-05-01 13:15:00 UTC")
    assert result.data["failed"] == {"v1": 0, "v2": 720}
    # with failure_limit = 2 the first failure holds, the second rolls back
    patient = run(folder, canary(failure_limit=2))
    assert actions(patient)[2:] == [("13:15", 2, "fail", "hold"), ("13:20", 2, "fail", "rollback")]
    assert patient.decisions[2].reason.startswith("analysis failed (1 of 2 allowed)")
    assert patient.decisions[3].reason.startswith("analysis failed (2 of 2 allowed)")


def test_without_candidate_records_every_step_is_inconclusive(tmp_path: Path) -> None:
    folder = logged(tmp_path / "log", traffic(candidate_arm=None))
    running = run(folder, canary())
    assert len(running.decisions) == 12  # every 5 minutes for an hour
    assert {(d.step, d.verdict, d.action) for d in running.decisions} == {
        (1, "inconclusive", "hold")
    }
    assert running.outcome == "running" and running.ended_at is None
    assert running.summary.startswith("still running at the window's end, at step 1/3 (10%)")
    assert any(
        "the log holds no records of v2 (churn) in the window: every evaluation is "
        "inconclusive" in note
        for note in running.notes
    ), running.notes
    assert running.data["records"] == {"v1": {"champion": 900}, "v2": {}}

    deadline = run(folder, canary(deadline="30m", on_inconclusive="extend"))
    assert actions(deadline)[-2:] == [
        ("13:25", 1, "inconclusive", "extend"),
        ("13:30", 1, "inconclusive", "abort"),
    ]
    assert deadline.outcome == "aborted" and deadline.ended_at == START + timedelta(minutes=30)
    assert deadline.decisions[-1].reason.startswith(
        "still inconclusive after the deadline of 1800 s"
    )
    assert deadline.summary.startswith("aborted at the deadline at step 1/3 (10%)")


def test_the_replay_says_which_records_a_strategy_counts(tmp_path: Path) -> None:
    # v2 only got mirrored copies (a shadow): a canary's analysis counts none of them
    folder = logged(tmp_path / "log", traffic(candidate_arm="shadow"))
    as_canary = run(folder, canary())
    assert {d.verdict for d in as_canary.decisions} == {"inconclusive"}
    assert as_canary.data["candidate_judged"] == 0
    assert as_canary.data["records"]["v2"] == {"shadow": 900}
    assert any("all mirrored copies (arm shadow)" in note for note in as_canary.notes)
    as_shadow = run(folder, canary(strategy="shadow", steps=[{"weight": 100, "hold": "10m"}]))
    assert as_shadow.outcome == "promoted" and as_shadow.data["candidate_judged"] == 900
    assert actions(as_shadow) == [("13:05", 1, "pass", "hold"), ("13:10", 1, "pass", "promote")]


def test_the_interval_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = logged(tmp_path / "log", traffic())
    assert whatif.MAX_EVALUATIONS == 500
    monkeypatch.setattr(whatif, "MAX_EVALUATIONS", 20)  # each evaluation reads the log
    result = run(folder, canary(interval=0, steps=[{"weight": 10, "hold": "1h"}]))
    # an hour in steps of 1 s would be 3600 evaluations: widened to 180 s (20 of them)
    assert result.interval_s == 180.0 and len(result.decisions) == 20
    assert any("widened from 1 s to 180 s" in note for note in result.notes)
    assert any("interval 0 s is replayed as 1 s" in note for note in result.notes)
    with pytest.raises(InvalidInput, match="shorter than the rollout's interval"):
        replay(canary(interval="2h"), start=START, end=END, champion=1, candidate=2, folder=folder)
    with pytest.raises(InvalidInput, match="ends in the future"):
        replay(canary(), start=START, end=datetime.now(UTC) + timedelta(hours=1), folder=folder)
    with pytest.raises(InvalidInput, match="aware datetime"):
        replay(canary(), start=datetime(2024, 5, 1), end=END, folder=folder)


def test_window_text() -> None:
    now = datetime(2024, 5, 1, 15, 0, tzinfo=UTC)
    assert parse_window("-6h..now", now=now) == (now - timedelta(hours=6), now)
    assert parse_window("-90m..-30m", now=now) == (
        now - timedelta(minutes=90),
        now - timedelta(minutes=30),
    )
    assert parse_window("2024-05-01T13:00..2024-05-01T16:00+02:00", now=now) == (
        START,
        datetime(2024, 5, 1, 14, 0, tzinfo=UTC),
    )
    assert parse_window("2024-05-01..2024-05-01T13:00:00Z", now=now)[0] == datetime(
        2024, 5, 1, tzinfo=UTC
    )
    for bad, message in (
        ("-6h", "a window is START..END"),
        ("..now", "a window is START..END"),
        ("yesterday..now", "'yesterday' is not a time"),
        ("-6x..now", "'-6x' is not a time before now"),
        ("now..-1h", "is empty"),
    ):
        with pytest.raises(InvalidInput, match=message):
            parse_window(bad, now=now)


# -- against a registry -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project folder with churn@1 (champion) and churn@2, and the crafted hour of traffic
    in its prediction log."""
    from sklearn.linear_model import LogisticRegression

    path = tmp_path_factory.mktemp("whatif")
    project = Project.init(path / ".shipyard")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(18, 80, 200).astype(float)})
    frame["churned"] = (frame["age"] + rng.normal(0, 10, 200) > 50).astype(int)
    for strength in (1.0, 0.1):
        model = LogisticRegression(C=strength).fit(frame[["age"]], frame["churned"])
        register(model, "churn", training_data=frame, target="churned", project=project)
    set_alias("churn", "champion", 1, reason="first", project=project)
    logged(Path(log_folder(project.settings)), traffic(fails=lambda minute: minute >= 12))
    project.close()
    yield path


def store(project: Project) -> tuple[Any, ...]:
    """What a replay must not change: rollouts, decisions, the release revision, the
    aliases and the versions' tags."""
    with project.metadata.read() as session:
        counts = tuple(
            session.scalar(select(func.count()).select_from(table))
            for table in (RolloutRecord, RolloutDecisionRecord, ReleaseRevisionRecord)
        )
        aliases = sorted(
            (row.alias, row.version_id) for row in session.scalars(select(ModelAliasRecord))
        )
        tags = sorted(
            (row.version, json.dumps(row.tags, sort_keys=True))
            for row in session.scalars(select(ModelVersionRecord))
        )
    return counts, aliases, tags


def test_versions_come_from_the_registry_and_nothing_is_written(registry: Path) -> None:
    project = Project.open(registry / ".shipyard")
    try:
        before = store(project)
        result = replay(canary(), start=START, end=END, project=project)
        assert (result.champion, result.candidate) == (1, 2)
        assert result.outcome == "rolled_back" and result.step == 2
        by_alias = replay(
            canary(candidate="champion"), start=START, end=END, candidate=2, project=project
        )
        assert by_alias.outcome == "rolled_back"
        with pytest.raises(InvalidInput, match="are both churn@1"):
            replay(canary(candidate="champion"), start=START, end=END, project=project)
        with pytest.raises(NotFound, match="no version 7"):
            replay(canary(candidate=7), start=START, end=END, project=project)
        assert store(project) == before
        assert before[0] == (0, 0, before[0][2])  # no rollout, no decision, ever
    finally:
        project.close()


@pytest.fixture
def cli(registry: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(registry)
    monkeypatch.setattr(out, "width", 250)  # no wrapped table cells
    (registry / "canary.toml").write_text(CANARY)
    yield registry
    opened = shipyard.project._current
    for key in [key for key in opened if key[0].startswith(str(registry))]:
        opened.pop(key).close()


def test_rollout_replay_prints_each_step_and_the_outcome(cli: Path) -> None:
    window = "2024-05-01T13:00..2024-05-01T14:00"
    result = CliRunner().invoke(app, ["rollout", "replay", "canary.toml", "--window", window])
    assert result.exit_code == 0, (result.output, result.exception)
    shown = result.stdout
    for expected in (
        "what-if replay of churn-canary: canary of churn, v2 against champion v1",
        "window   2024-05-01 13:00:00 .. 2024-05-01 14:00:00 UTC, judged every 5m (3 evaluations)",
        "note     the log was not split by this rollout",
        "13:05:00",
        "passing; step not done: held 300 s of 600 s",
        "advance",
        "analysis failed (1 of 1 allowed)",
        "outcome  rolled back: rolled back at step 2/3 (50%) at 2024-05-01 13:15:00 UTC",
    ):
        assert expected in shown, shown
    as_json = CliRunner().invoke(
        app, ["rollout", "replay", "canary.toml", "-w", window, "--json", "--candidate", "2"]
    )
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    assert report["outcome"] == "rolled_back" and report["step"] == 2
    assert [d["action"] for d in report["decisions"]] == ["hold", "advance", "rollback"]
    assert report["window"] == {"start": START.isoformat(), "end": END.isoformat()}


def test_rollout_replay_collapses_repeated_evaluations(cli: Path) -> None:
    result = CliRunner().invoke(
        app, ["rollout", "replay", "canary.toml", "-w", "2024-05-01T11:00..2024-05-01T12:00"]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "13:" not in result.stdout  # nothing logged before 13:00
    assert "11:05:00 .. 12:00:00 (x12)" in result.stdout
    assert "the log holds no records of v2 (churn) in the window" in result.stdout
    assert "outcome  still running: still running at the window's end" in result.stdout


def test_rollout_replay_refuses_a_bad_window_in_one_line(cli: Path) -> None:
    result = run_shipyard("rollout", "replay", "canary.toml", "--window", "yesterday..now", cwd=cli)
    assert result.returncode == 2
    assert "'yesterday' is not a time" in error_line(result)
