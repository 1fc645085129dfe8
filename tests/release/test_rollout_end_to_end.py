"""Rollouts end to end: a real `shipyard serve` (2 workers), bounded load on 127.0.0.1, the
real prediction log, and the controller deciding alone.

One server and one project for the module (starting a server costs seconds); each test
resets the champion to v1 and runs its own rollout to its end.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "serving"))
from candidates import Candidate
from serving_helpers import Server, churn_frame, churn_model, start_server

import shipyard.data as data
from receivers import Receiver
from shipyard.errors import InvalidInput, NotFound
from shipyard.project import Project
from shipyard.registry.aliases import set_alias
from shipyard.registry.versions import get, register
from shipyard.release import flagstore, rollouts
from shipyard.release.controller import Controller
from shipyard.release.rollouts import RolloutConflict
from shipyard.release.spec import parse

BEHAVIOURS = ("ok", "error", "slow", "flip", "flip_team")  # v2 .. v6
POLL_WAIT_S = 0.8  # the router polls every 0.25 s; the log flushes every 0.2 s


@pytest.fixture(scope="module")
def release_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    folder = tmp_path_factory.mktemp("release")
    project = Project.init(folder / ".shipyard")
    settings = project.settings.settings_file
    settings.write_text(settings.read_text() + "\nprediction_log_flush_seconds = 0.2\n")
    project.close()
    project = Project.open(folder / ".shipyard")
    frame = churn_frame(seed=0)
    train = data.add(frame, "churn-train", project=project)
    model = churn_model(frame)
    register(model, "churn", training_data=train, target="churned", project=project)
    for behaviour in BEHAVIOURS:
        register(
            Candidate(model, behaviour),
            "churn",
            training_data=train,
            target="churned",
            project=project,
        )
    set_alias("churn", "champion", 1, reason="first", project=project)
    yield project
    project.close()


@pytest.fixture(scope="module")
def server(release_project: Project) -> Iterator[Server]:
    here = str(Path(__file__).parent)
    started = start_server(
        release_project.home.parent,
        "churn@champion",
        "--workers",
        "2",
        env={"PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])},
    )
    yield started
    if started.process.poll() is None:
        os.killpg(started.process.pid, signal.SIGKILL)
        started.process.wait()


@pytest.fixture
def project(release_project: Project, server: Server) -> Project:
    """The shared project with v1 as champion and no live rollout."""
    for rollout in rollouts.list_rollouts(active_only=True, project=release_project):
        rollouts.abort(rollout.id, reason="test reset", project=release_project)
    if get("churn@champion", project=release_project).version != 1:
        set_alias("churn", "champion", 1, reason="test reset", force=True, project=release_project)
    for flag in flagstore.list_flags(project=release_project):
        flagstore.delete(flag.flag.name, project=release_project)
    time.sleep(POLL_WAIT_S)
    return release_project


@pytest.fixture
def alert_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def version_of(behaviour: str) -> int:
    return 2 + BEHAVIOURS.index(behaviour)


def canary(candidate: int, *checks: dict[str, object], **extra: object) -> object:
    declared: dict[str, object] = {
        "model": "churn",
        "candidate": candidate,
        "strategy": "canary",
        "routing_key": "header:x-user-id",
        "interval": 0,
        "min_samples": 30,
        "steps": [{"weight": 30}, {"weight": 60}, {"weight": 100}],
        "analysis": list(checks) or [{"metric": "error_rate", "max": 0.05}],
    }
    declared.update(extra)
    return parse(declared)


def traffic(server: Server, requests: int, *, seed: int = 0) -> dict[str, int]:
    """`requests` single-row predictions with random users; the answering versions counted."""
    rows = churn_frame(rows=requests, seed=seed + 7)
    rng = random.Random(seed)
    versions: dict[str, int] = {}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for row in rows.drop(columns="churned").to_dict(orient="records"):
            row["plan"] = str(row["plan"])
            answer = client.post(
                "/predict", json=[row], headers={"x-user-id": f"user-{rng.randrange(10**6)}"}
            )
            key = str(answer.json().get("version")) if answer.status_code == 200 else "error"
            versions[key] = versions.get(key, 0) + 1
    return versions


def drive(server: Server, project: Project, *, rounds: int = 6, requests: int = 150) -> list[str]:
    """Traffic, then a controller pass, until the rollout ends; the actions taken."""
    controller = Controller(project)
    actions: list[str] = []
    for index in range(rounds):
        traffic(server, requests, seed=index)
        time.sleep(POLL_WAIT_S)  # the log is flushed
        for outcome in controller.tick():
            actions.append(outcome.action)
        time.sleep(POLL_WAIT_S)  # every worker follows the new split
        if not rollouts.list_rollouts(active_only=True, project=project):
            break
    return actions


def test_a_good_candidate_is_promoted_through_every_step(server: Server, project: Project) -> None:
    rollout = rollouts.start(
        canary(
            version_of("ok"),
            {"metric": "error_rate", "max": 0.05},
            {"metric": "agreement", "min": 0.9},
        ),
        project=project,
    )
    assert rollout.weights == {"v1": 70.0, "v2": 30.0}
    actions = drive(server, project)
    assert actions == ["advance", "advance", "promote"], (
        actions,
        [(d.action, d.reason) for d in rollouts.history(rollout.id, project=project)],
    )
    assert get("churn@champion", project=project).version == 2
    history = rollouts.history(rollout.id, project=project)
    assert [d.action for d in history] == ["start", "advance", "advance", "promote"]
    promoted = history[-1]
    assert promoted.verdict == "pass" and promoted.after["status"] == "promoted"
    assert promoted.evidence["checks"] and promoted.spec_hash == rollout.spec_hash
    time.sleep(POLL_WAIT_S)
    assert set(traffic(server, 20)) == {"2"}  # the new champion answers everyone


@pytest.mark.parametrize(
    ("behaviour", "check"),
    [
        ("error", {"metric": "error_rate", "max": 0.05}),
        ("slow", {"metric": "latency_p50_ms", "max_ratio": 3.0}),
        ("flip", {"metric": "flipped_labels", "max": 0.1}),
    ],
)
def test_a_bad_candidate_is_rolled_back_by_the_controller_alone(
    server: Server,
    project: Project,
    alert_receiver: Receiver,
    behaviour: str,
    check: dict[str, object],
) -> None:
    rollout = rollouts.start(canary(version_of(behaviour), check), project=project)
    project.settings.alert_webhook_url = alert_receiver.url
    try:
        actions = drive(server, project, rounds=4)
    finally:
        project.settings.alert_webhook_url = None
    assert actions[-1] == "rollback", actions
    (alert,) = alert_receiver.received  # one alert for one incident, sent to the webhook
    assert alert["alert"] == "rollout_rolled_back" and alert["rollout_id"] == rollout.id
    assert check["metric"] in alert["reason"] and alert["evidence"]["verdict"] == "fail"
    ended = rollouts.get(rollout.id, project=project)
    assert ended.status == "rolled_back" and check["metric"] in ended.outcome
    assert get("churn@champion", project=project).version == 1
    assert "rejected" in get(f"churn@{version_of(behaviour)}", project=project).tags
    time.sleep(POLL_WAIT_S)
    answered = traffic(server, 30)
    assert answered == {"1": 30}  # no request fails once traffic moved back
    metrics = httpx.get(f"{server.url}/metrics").text
    (line,) = [x for x in metrics.splitlines() if x.startswith("shipyard_rollback_seconds{")]
    assert 'model="churn"' in line and 0 < float(line.split()[-1]) < 5.0


def test_a_regression_in_one_segment_fails_the_step(server: Server, project: Project) -> None:
    # A third of the users are on the team plan, so the aggregate flips about a third of the
    # answers: 0.6 leaves it far below the bound (0.5 was within chance of a 50-request window,
    # which the random rollout salt sometimes dealt), while the team segment flips them all.
    rollout = rollouts.start(
        canary(
            version_of("flip_team"), {"metric": "flipped_labels", "max": 0.6}, segments=["plan"]
        ),
        project=project,
    )
    actions = drive(server, project, rounds=4, requests=200)
    assert actions[-1] == "rollback", actions
    (decision,) = [
        d for d in rollouts.history(rollout.id, project=project) if d.action == "rollback"
    ]
    failed = [c for c in decision.evidence["checks"] if c["verdict"] == "fail"]
    assert failed and all(c["segment"] == "plan=team" for c in failed), failed


def test_a_starved_rollout_stays_inconclusive_then_aborts_at_its_deadline(
    project: Project,
) -> None:
    rollout = rollouts.start(canary(version_of("ok"), deadline="1h"), project=project)
    clock = [rollout.step_started_at]
    controller = Controller(project, clock=lambda: clock[0])
    from datetime import timedelta

    for minutes in (1, 10, 59):
        clock[0] = rollout.step_started_at + timedelta(minutes=minutes)
        (outcome,) = controller.tick()
        assert (outcome.verdict, outcome.action) == ("inconclusive", "hold")
    assert rollouts.get(rollout.id, project=project).weights == rollout.weights
    clock[0] = rollout.step_started_at + timedelta(minutes=61)
    (outcome,) = controller.tick()
    assert outcome.action == "abort"
    ended = rollouts.get(rollout.id, project=project)
    assert ended.status == "aborted" and get("churn@champion", project=project).version == 1
    assert "rejected" not in get(f"churn@{version_of('ok')}", project=project).tags


def test_a_restarted_controller_resumes_without_repeating_a_step(
    server: Server, project: Project
) -> None:
    rollout = rollouts.start(canary(version_of("ok")), project=project)
    traffic(server, 150)
    time.sleep(POLL_WAIT_S)
    first = Controller(project)
    judged = rollouts.get(rollout.id, project=project)
    assert [o.action for o in first.tick()] == ["advance"]
    # A second controller that judged the same step before the first one acted does nothing.
    stale = Controller(project)
    outcome = stale.judge(judged, datetime.now(UTC))
    assert rollouts.get(rollout.id, project=project).step == 1, outcome
    del first  # "killed": a new one picks up at step 1
    time.sleep(POLL_WAIT_S)
    actions = drive(server, project)
    assert actions == ["advance", "promote"], actions
    steps = [(d.step_before, d.step_after) for d in rollouts.history(rollout.id, project=project)]
    assert steps == [(0, 0), (0, 1), (1, 2), (2, 2)]


def test_assignment_is_sticky_across_weights_and_workers(server: Server, project: Project) -> None:
    rollout = rollouts.start(canary(version_of("ok")), project=project)
    time.sleep(POLL_WAIT_S)
    users = [f"user-{i}" for i in range(120)]
    row = {"age": 40, "income": 30000.0, "plan": "pro"}

    def arms() -> tuple[dict[str, int], set[str]]:
        seen: dict[str, int] = {}
        workers: set[str] = set()
        for user in users:
            for _ in range(2):  # a new connection each time: any worker may answer
                answer = httpx.post(
                    f"{server.url}/predict", json=[row], headers={"x-user-id": user}
                )
                workers.add(answer.headers["x-shipyard-worker"])
                version = answer.json()["version"]
                assert seen.setdefault(user, version) == version, user
        return seen, workers

    at_30, workers = arms()
    assert len(workers) == 2  # both workers answered, and agreed for every user
    on_candidate = {u for u, v in at_30.items() if v == version_of("ok")}
    assert 0 < len(on_candidate) < len(users)

    def step_up(session: object, row: object, model: str) -> tuple[str, str]:
        rollouts.advance(row, rollout.step_started_at)  # type: ignore[arg-type]
        return "advance", "test"

    rollouts.transition(rollout.id, step_up, project=project, actor="test")
    time.sleep(POLL_WAIT_S)
    at_60, _ = arms()
    moved = {u for u, v in at_60.items() if v == version_of("ok")}
    assert on_candidate < moved  # raising the weight only added users to the candidate


def test_blue_green_preview_switch_and_back(server: Server, project: Project) -> None:
    spec = parse({"model": "churn", "candidate": version_of("ok"), "strategy": "bluegreen"})
    rollout = rollouts.start(spec, project=project)
    time.sleep(POLL_WAIT_S)
    row = [{"age": 40, "income": 30000.0, "plan": "pro"}]
    assert httpx.post(f"{server.url}/predict", json=row).json()["version"] == 1
    assert httpx.post(f"{server.url}/preview/predict", json=row).json()["version"] == 2
    headers = {"x-shipyard-preview": "1"}
    assert httpx.post(f"{server.url}/predict", json=row, headers=headers).json()["version"] == 2
    rollouts.switch(rollout.id, project=project)
    time.sleep(POLL_WAIT_S)
    assert {httpx.post(f"{server.url}/predict", json=row).json()["version"] for _ in range(20)} == {
        2
    }
    rollouts.switch(rollout.id, back=True, project=project)
    time.sleep(POLL_WAIT_S)
    assert {httpx.post(f"{server.url}/predict", json=row).json()["version"] for _ in range(20)} == {
        1
    }
    rollouts.abort(rollout.id, project=project)


def test_shadow_copies_are_logged_and_never_reach_the_user(
    server: Server, project: Project
) -> None:
    from shipyard.predictions.query import query

    spec = parse({"model": "churn", "candidate": version_of("error"), "strategy": "shadow"})
    rollout = rollouts.start(spec, project=project)
    time.sleep(POLL_WAIT_S)
    answered = traffic(server, 40, seed=99)
    assert answered == {"1": 40}  # the failing shadow never reached a user
    time.sleep(POLL_WAIT_S * 2)
    shadows = query(
        f"SELECT count(*) AS n, min(status) AS status FROM predictions WHERE arm = 'shadow' "
        f"AND version = {version_of('error')} AND time >= '{rollout.created_at.isoformat()}'",
        project=project,
    ).to_pylist()[0]
    assert shadows["n"] >= 40 and shadows["status"] == 500
    rollouts.abort(rollout.id, project=project)


def test_a_shadow_rollout_summarises_the_paired_outputs(server: Server, project: Project) -> None:
    spec = parse(
        {
            "model": "churn",
            "candidate": version_of("flip"),
            "strategy": "shadow",
            "interval": 0,
            "analysis": [{"metric": "error_rate", "max": 0.05}],
        }
    )
    rollout = rollouts.start(spec, project=project)
    time.sleep(POLL_WAIT_S)
    traffic(server, 60, seed=5)
    time.sleep(POLL_WAIT_S * 2)
    (outcome,) = Controller(project).tick()
    assert outcome.action == "promote"  # no errors: the only bound declared
    (decision,) = [d for d in rollouts.history(rollout.id, project=project) if d.verdict]
    summary = decision.evidence["divergence"]
    assert summary["pairs"] >= 60 and summary["flipped_share"] == 1.0  # every label flipped
    assert summary["latency"]["candidate"]["p50_ms"] > 0
    assert summary["latency"]["champion"]["p99_ms"] > 0


def test_flags_route_and_their_kill_switch_applies_within_a_second(
    server: Server, project: Project
) -> None:
    flagstore.set_flag(
        "churn",
        {
            "name": "pro-gets-v2",
            "rules": [
                {
                    "attribute": "plan",
                    "operator": "equals",
                    "value": "pro",
                    "outcome": {"version": version_of("ok")},
                }
            ],
        },
        project=project,
    )
    time.sleep(1.0)
    pro = [{"age": 40, "income": 30000.0, "plan": "pro"}]
    basic = [{"age": 40, "income": 30000.0, "plan": "basic"}]
    assert httpx.post(f"{server.url}/predict", json=pro).json()["version"] == 2
    assert httpx.post(f"{server.url}/predict", json=basic).json()["version"] == 1
    flagstore.kill("pro-gets-v2", project=project)
    time.sleep(1.0)
    assert {httpx.post(f"{server.url}/predict", json=pro).json()["version"] for _ in range(10)} == {
        1
    }


def test_bad_rollouts_are_refused_and_change_nothing(project: Project) -> None:
    with pytest.raises(InvalidInput, match="unknown metric 'accuracy_pct'"):
        parse(
            {
                "model": "churn",
                "candidate": 2,
                "steps": [{"weight": 5}],
                "analysis": [{"metric": "accuracy_pct", "min": 0.9}],
            }
        )
    with pytest.raises(InvalidInput, match="must sum to 100"):
        parse(
            {"model": "churn", "candidate": 2, "strategy": "ab", "arms": {"champion": 50, "2": 40}}
        )
    with pytest.raises(InvalidInput, match="weights must not decrease"):
        parse({"model": "churn", "candidate": 2, "steps": [{"weight": 50}, {"weight": 5}]})
    with pytest.raises(InvalidInput, match="is the champion already"):
        rollouts.start(canary(1), project=project)
    with pytest.raises(NotFound):
        rollouts.start(canary(99), project=project)
    rollouts.start(canary(version_of("ok")), project=project)
    with pytest.raises(RolloutConflict, match="already has a live rollout"):
        rollouts.start(canary(version_of("flip")), project=project)
    assert len(rollouts.list_rollouts(active_only=True, project=project)) == 1


def test_feedback_over_http_joins_the_log_and_refuses_unknown_ids(
    server: Server, project: Project
) -> None:
    from shipyard.predictions.feedback import labels_for

    row = [{"age": 40, "income": 30000.0, "plan": "pro"}]
    answered = httpx.post(f"{server.url}/predict", json=row, headers={"x-request-id": "fb-1"})
    assert answered.status_code == 200
    time.sleep(POLL_WAIT_S)  # flushed to the log
    accepted = httpx.post(f"{server.url}/feedback", json={"request_id": "fb-1", "label": 1})
    assert accepted.status_code == 200 and accepted.json() == {"accepted": 1}
    assert labels_for(["fb-1"], project=project)["fb-1"].label == 1

    unknown = httpx.post(
        f"{server.url}/feedback",
        json=[{"request_id": "fb-1", "label": 0}, {"request_id": "never-seen", "label": 1}],
    )
    assert unknown.status_code == 404 and "never-seen" in unknown.json()["error"]
    assert labels_for(["fb-1"], project=project)["fb-1"].label == 1  # nothing half-written
    malformed = httpx.post(f"{server.url}/feedback", content=b"{not json")
    assert malformed.status_code == 400 and "not JSON" in malformed.json()["error"]
    empty = httpx.post(f"{server.url}/feedback", json={"request_id": "fb-1"})
    assert empty.status_code == 422, empty.text
    document = httpx.get(f"{server.url}/openapi.json").json()
    assert "/feedback" in document["paths"]


def test_a_killed_controller_process_resumes_where_it_was(server: Server, project: Project) -> None:
    """`shipyard rollout run` killed with SIGKILL mid-rollout; a new one finishes the rollout,
    and no step is repeated or skipped."""
    import subprocess

    rollout = rollouts.start(canary(version_of("ok"), interval="1s"), project=project)
    shipyard = str(Path(sys.executable).parent / "shipyard")

    def controller() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [shipyard, "rollout", "run", "--poll", "0.3"],
            cwd=project.home.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    first = controller()
    try:
        for round_ in range(20):
            traffic(server, 60, seed=round_)
            if rollouts.get(rollout.id, project=project).step >= 1:
                break
        assert rollouts.get(rollout.id, project=project).step >= 1
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    killed_at = rollouts.get(rollout.id, project=project)
    second = controller()
    try:
        for round_ in range(30):
            traffic(server, 60, seed=100 + round_)
            if not rollouts.get(rollout.id, project=project).active:
                break
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=30)
    assert rollouts.get(rollout.id, project=project).status == "promoted"
    moves = [
        (d.action, d.step_before, d.step_after)
        for d in rollouts.history(rollout.id, project=project)
        if d.action in ("advance", "promote")
    ]
    assert moves == [("advance", 0, 1), ("advance", 1, 2), ("promote", 2, 2)], moves
    assert killed_at.status == "running"
