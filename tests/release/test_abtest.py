"""The A/B/n experiment of a rollout: its report from the prediction log and feedback, the
error rate of its sequential test, the bandit, the controller's use of both, the CLI status
and the declaration's checks.

Logs are crafted with ParquetLog into the project's log folder, outcomes sent with
`feedback.add`; the error-rate simulations run on outcomes in memory (`abtest.compare`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from shipyard.errors import InvalidInput
from shipyard.predictions import feedback
from shipyard.predictions.writer import ParquetLog
from shipyard.project import Project
from shipyard.release import abtest, rollouts
from shipyard.release.assignment import CURRENT_HASH
from shipyard.release.controller import Controller
from shipyard.release.experiment import two_proportion
from shipyard.release.rollouts import Rollout, initial_weights
from shipyard.release.spec import RolloutSpec, parse
from shipyard.serving.record import PredictionRecord

START = datetime(2024, 5, 1, 13, 0, tzinfo=UTC)
END = START + timedelta(hours=1)


# -- crafting an experiment -------------------------------------------------------------------


def ab_spec(arms: dict[str, float] | None = None, **extra: Any) -> RolloutSpec:
    declared: dict[str, Any] = {
        "model": "churn",
        "candidate": 2,
        "strategy": "ab",
        "arms": arms or {"champion": 50, "2": 50},
        "analysis": [{"metric": "error_rate", "max": 0.5}],
        "interval": 0,
    }
    return parse({**declared, **extra})


def ab_rollout(spec: RolloutSpec) -> Rollout:
    """The rollout row's view, without a registry: for `report` on a crafted log."""
    candidates = sorted(int(label) for label in spec.arms if label != "champion")
    return Rollout(
        id="ab-test",
        name=spec.name,
        model="churn",
        strategy="ab",
        champion=1,
        candidates=candidates,
        spec=spec,
        spec_hash=spec.hash,
        hash_version=CURRENT_HASH,
        status="running",
        step=0,
        step_started_at=START,
        weights=initial_weights(spec, 1, candidates),
        switched=False,
        failures=0,
        approved_by=None,
        created_at=START,
        created_by="test",
        updated_at=START,
        finished_at=None,
        outcome="",
    )


def record(
    request_id: str,
    version: int,
    arm: str,
    prediction: Any,
    at: float,
    *,
    status: int = 200,
    model: str = "churn",
) -> PredictionRecord:
    outputs = {"error": "boom"} if status >= 500 else {"predictions": [prediction]}
    return PredictionRecord(
        request_id=request_id,
        time=at,
        model=model,
        version=version,
        protocol="predict",
        inputs=json.dumps([{"age": 40}]),
        outputs=json.dumps(outputs),
        latency_ms=5.0,
        arm=arm,
        status=status,
    )


def conversions(
    rates: dict[int, float], n: int, *, seed: int
) -> tuple[list[PredictionRecord], list[dict[str, Any]]]:
    """`n` requests per version answered under its A/B arm, each with a reward of 1
    (converted, with probability `rates[version]`) or 0."""
    rng = np.random.default_rng(seed)
    records, outcomes = [], []
    at = START.timestamp() + 60
    for version, rate in rates.items():
        arm = "champion" if version == 1 else f"v{version}"
        for index, converted in enumerate(rng.random(n) < rate):
            request_id = f"v{version}-{index}"
            records.append(record(request_id, version, arm, 1, at))
            outcomes.append({"request_id": request_id, "reward": float(converted)})
            at += 0.1
    return records, outcomes


def not_randomised() -> tuple[list[PredictionRecord], list[dict[str, Any]]]:
    """Records the experiment must leave out, all converted: shadow copies, flag-routed
    requests, another model, and requests before the rollout started."""
    at = START.timestamp() + 30
    records = [
        record("shadow-0", 2, "shadow", 1, at),
        record("flag-0", 2, "flag-v2", 1, at),
        record("other-0", 2, "v2", 1, at, model="other"),
        record("early-0", 2, "v2", 1, START.timestamp() - 600),
        record("early-1", 1, "champion", 1, START.timestamp() - 600),
    ]
    return records, [{"request_id": r.request_id, "reward": 1.0} for r in records]


def write_log(project: Project, records: list[PredictionRecord]) -> None:
    with ParquetLog(Path(project.settings.resolved_prediction_log_url)) as log:
        for item in records:
            log.append(item)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    project = Project.init(tmp_path / ".shipyard")
    yield project
    project.close()


def assert_json_safe(data: dict[str, Any]) -> None:
    assert json.loads(json.dumps(data, allow_nan=False)) == data


# -- (a) a known effect, end to end through the log -------------------------------------------


def test_a_known_effect_is_significant_and_its_interval_holds_the_truth(project: Project) -> None:
    # champion 10%, v2 16% (+6 points), v3 10% (no effect); 2,000 requests each
    records, outcomes = conversions({1: 0.10, 2: 0.16, 3: 0.10}, 2000, seed=7)
    extra, extra_outcomes = not_randomised()
    write_log(project, records + extra)
    feedback.add(outcomes + extra_outcomes, project=project, source="shop")
    rollout = ab_rollout(ab_spec({"champion": 34, "2": 33, "3": 33}))

    result = abtest.report(rollout, end=END, project=project)

    champion, v2, v3 = (result.arm(version) for version in (1, 2, 3))
    assert [arm.arm for arm in result.arms] == ["champion", "v2", "v3"]
    for arm in (champion, v2, v3):  # nothing outside the randomised arms was counted
        assert (arm.requests, arm.outcomes, arm.units, arm.coverage) == (2000, 2000, 2000, 1.0)
    assert champion.estimate == pytest.approx(0.10, abs=0.015)
    assert v2.estimate == pytest.approx(0.16, abs=0.015)
    assert (v2.weight, v3.weight) == (33.0, 33.0)
    assert v2.vs_champion is not None and v3.vs_champion is not None
    assert v2.vs_champion.significant and v2.vs_champion.sequential
    low, high = v2.vs_champion.ci
    assert low < 0.06 < high and low > 0  # the true effect is inside; zero is not
    assert v2.vs_champion.effect == pytest.approx(v2.estimate - champion.estimate)
    assert not v3.vs_champion.significant
    assert v3.vs_champion.ci[0] < 0 < v3.vs_champion.ci[1]
    assert v2.vs_champion.alpha == pytest.approx(0.025)  # two challengers: Bonferroni
    assert any("Bonferroni" in note for note in result.notes)

    # the sample size is sized from the champion's observed rate and the default mde
    assert result.baseline == champion.estimate and result.mde == 0.02
    assert result.required_n is not None and result.required_n > 2000
    assert v2.vs_champion.required_n == result.required_n and not v2.reached
    summary = result.summary()
    assert summary.startswith("v2 vs champion: +")
    assert "pts [" in summary and "significant (p " in summary
    assert "v3 vs champion: " in summary and "not significant yet, n 2000 of " in summary

    evidence = result.to_dict()
    assert_json_safe(evidence)
    assert evidence["arms"][1]["vs_champion"]["significant"] is True
    assert evidence["window"]["start"] == START.isoformat()


def test_accuracy_and_reward_with_partial_coverage(project: Project) -> None:
    at = START.timestamp() + 60
    records = [record(f"c{i}", 1, "champion", i % 2, at + i) for i in range(100)]
    records += [record(f"n{i}", 2, "v2", 1, at + i) for i in range(100)]
    records += [record("n-failed", 2, "v2", None, at, status=500)]
    write_log(project, records)
    labels = [{"request_id": f"c{i}", "label": i % 2, "reward": 1.0} for i in range(100)]
    # v2 always answers 1, so it is right on the odd half; labels for 60 of its 100 answers
    labels += [{"request_id": f"n{i}", "label": str(i % 2), "reward": 2.0} for i in range(60)]
    labels += [{"request_id": "n-failed", "reward": 0.0}]
    feedback.add(labels, project=project)

    # sized for a large effect (mde 0.2): 60 labels are enough to see one
    declared = ab_spec(ab_metric="accuracy", mde=0.2)
    accuracy = abtest.report(ab_rollout(declared), end=END, project=project)
    champion, v2 = accuracy.arm(1), accuracy.arm(2)
    assert (champion.estimate, champion.coverage) == (1.0, 1.0)
    assert (v2.requests, v2.failed, v2.units, v2.outcomes) == (101, 1, 100, 60)
    assert v2.estimate == 0.5 and v2.coverage == 0.6  # labels given as text still match
    assert v2.vs_champion is not None and v2.vs_champion.significant
    assert any("coverage differs" in note for note in accuracy.notes)

    reward = abtest.report(ab_rollout(ab_spec(ab_metric="reward")), end=END, project=project)
    v2 = reward.arm(2)
    # a failed request counts when its outcome was reported (its reward of 0)
    assert (v2.units, v2.outcomes) == (101, 61)
    assert v2.estimate == pytest.approx(120 / 61)
    assert v2.vs_champion is not None and v2.vs_champion.metric == "mean"
    assert "vs champion: +0.967" in reward.summary()


def test_an_empty_experiment_reports_and_waits(project: Project) -> None:
    result = abtest.report(ab_rollout(ab_spec()), end=END, project=project)
    assert [arm.requests for arm in result.arms] == [0, 0]
    assert result.baseline == abtest.UNKNOWN_BASELINE and result.required_n is not None
    assert result.arm(2).vs_champion is None and not result.arm(2).reached
    assert "too few outcomes to compare" in result.summary()
    assert_json_safe(result.to_dict())
    canary = dataclasses.replace(ab_rollout(ab_spec()), strategy="canary")
    with pytest.raises(InvalidInput, match="only an A/B rollout"):
        abtest.report(canary, end=END, project=project)


# -- (b) no effect: the error rate under repeated looks ---------------------------------------


@pytest.mark.parametrize("metric", ["conversion", "reward"])
def test_without_an_effect_significance_stays_within_alpha_however_often_one_looks(
    metric: str,
) -> None:
    experiments, looks, batch, alpha = 200, 5, 200, 0.05
    rng = np.random.default_rng(2024)
    wrong = naive_wrong = 0
    for _ in range(experiments):
        if metric == "conversion":
            a = (rng.random(looks * batch) < 0.1).astype(float)
            b = (rng.random(looks * batch) < 0.1).astype(float)
            mde = 0.02
        else:
            a, b = rng.normal(1.0, 1.0, looks * batch), rng.normal(1.0, 1.0, looks * batch)
            mde = 0.1
        significant = naive = False
        for look in range(1, looks + 1):
            n = look * batch
            result = abtest.compare({1: a[:n], 2: b[:n]}, champion=1, metric=metric, mde=mde)
            test = result.arm(2).vs_champion
            assert test is not None and test.sequential
            significant |= test.significant
            if metric == "conversion":  # the fixed-horizon z-test, read at every look
                fixed = two_proportion(int(a[:n].sum()), n, int(b[:n].sum()), n, sequential=False)
                naive |= fixed.significant
        wrong += significant
        naive_wrong += naive
    # at most alpha plus three standard errors of the simulation
    assert wrong / experiments <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / experiments)
    if metric == "conversion":  # the simulation would see an inflated error rate
        assert naive_wrong > wrong


def test_an_aa_experiment_through_the_log_is_not_significant(project: Project) -> None:
    records, outcomes = conversions({1: 0.2, 2: 0.2}, 1000, seed=11)
    write_log(project, records)
    feedback.add(outcomes, project=project)
    result = abtest.report(ab_rollout(ab_spec()), end=END, project=project)
    test = result.arm(2).vs_champion
    assert test is not None and not test.significant and test.ci[0] < 0 < test.ci[1]
    assert "not significant yet" in result.summary()


# -- (c) the bandit ---------------------------------------------------------------------------


def made_up(rates: dict[int, float], n: int, seed: int) -> abtest.ExperimentReport:
    rng = np.random.default_rng(seed)
    outcomes = {version: (rng.random(n) < rate).astype(float) for version, rate in rates.items()}
    return abtest.compare(outcomes, champion=1)


def test_the_bandit_moves_weight_to_the_better_arm_and_keeps_the_floor() -> None:
    experiment = made_up({1: 0.10, 2: 0.16, 3: 0.02}, 2000, seed=3)
    current = {"v1": 34.0, "v2": 33.0, "v3": 33.0}
    weights = abtest.bandit_weights(experiment, current, seed=0)
    assert weights is not None and list(weights) == ["v1", "v2", "v3"]  # the split's order
    assert weights["v2"] > 80 and weights["v2"] > weights["v1"]
    assert min(weights.values()) >= 5.0  # the floor: every arm keeps learning
    assert weights["v3"] == 5.0
    assert math.fsum(weights.values()) == pytest.approx(100.0, abs=1e-9)
    assert all(round(w, 2) == w for w in weights.values())
    assert abtest.moved(current, weights) > abtest.REWEIGHT_MIN_CHANGE

    # the remainder of the rounding is the champion's, whatever the draws
    for seed in range(20):
        close = made_up({1: 0.10, 2: 0.11, 3: 0.105}, 300, seed=seed)
        shares = abtest.bandit_weights(close, current, seed=seed)
        assert shares is not None
        assert math.fsum(shares.values()) == pytest.approx(100.0, abs=1e-9)
        assert min(shares.values()) >= 5.0


def test_the_bandit_waits_for_outcomes_on_every_arm() -> None:
    few = abtest.compare({1: [1.0] * 50, 2: [0.0] * 5}, champion=1)
    assert abtest.bandit_weights(few, {"v1": 50.0, "v2": 50.0}, seed=0) is None


# -- (d) the controller -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with churn@1 (champion) and churn@2, two small logistic regressions."""
    from sklearn.linear_model import LogisticRegression

    from shipyard.registry.aliases import set_alias
    from shipyard.registry.versions import register

    path = tmp_path_factory.mktemp("abtest")
    project = Project.init(path / ".shipyard")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 1))
    y = (x[:, 0] > 0).astype(int)
    for strength in (1.0, 0.1):
        register(LogisticRegression(C=strength).fit(x, y), "churn", project=project)
    set_alias("churn", "champion", 1, reason="first", project=project)
    project.close()
    return path


@pytest.fixture
def registered(template: Path, tmp_path: Path) -> Iterator[Project]:
    shutil.copytree(template / ".shipyard", tmp_path / ".shipyard")
    project = Project.open(tmp_path / ".shipyard")
    yield project
    project.close()


def live_experiment(project: Project, rates: dict[int, float], **extra: Any) -> Rollout:
    rollout = rollouts.start(ab_spec(**extra), project=project, now=START)
    records, outcomes = conversions(rates, 1000, seed=5)
    write_log(project, records)
    feedback.add(outcomes, project=project)
    return rollout


def test_the_controller_records_the_experiment_and_holds(registered: Project) -> None:
    rollout = live_experiment(registered, {1: 0.10, 2: 0.20})
    outcome = Controller(registered, clock=lambda: END).judge(rollout, END)

    assert (outcome.action, outcome.verdict) == ("hold", "pass")
    assert outcome.reason.startswith("A/B v2 vs champion: +")
    assert "significant (p " in outcome.reason and "guardrails pass: pass on" in outcome.reason
    last = rollouts.history(rollout.id, project=registered)[-1]
    assert (last.action, last.verdict, last.reason) == ("hold", "pass", outcome.reason)
    experiment = last.evidence["experiment"]
    assert experiment["metric"] == "conversion" and experiment["champion"] == 1
    assert [arm["requests"] for arm in experiment["arms"]] == [1000, 1000]
    assert experiment["arms"][1]["vs_champion"]["significant"] is True
    assert last.evidence["checks"][0]["metric"] == "error_rate"  # the guardrails' evidence
    after = rollouts.get(rollout.id, project=registered)
    assert after.status == "running" and after.weights == {"v1": 50.0, "v2": 50.0}
    assert rollouts.champion_of("churn", project=registered) == 1  # a person promotes

    promoted = rollouts.promote(rollout.id, version=2, project=registered)
    assert promoted.status == "promoted"


def test_the_bandit_reweights_through_a_transition(registered: Project) -> None:
    rollout = live_experiment(registered, {1: 0.10, 2: 0.20}, bandit=True)
    controller = Controller(registered, clock=lambda: END)
    outcome = controller.judge(rollout, END)

    assert outcome.action == "reweight" and "bandit reweights to v1 " in outcome.reason
    after = rollouts.get(rollout.id, project=registered)
    assert after.status == "running" and list(after.weights) == ["v1", "v2"]
    assert after.weights["v2"] > 90 and after.weights["v1"] >= 5.0
    assert math.fsum(after.weights.values()) == pytest.approx(100.0, abs=1e-9)
    last = rollouts.history(rollout.id, project=registered)[-1]
    assert last.action == "reweight" and last.after["weights"] == after.weights
    assert last.before["weights"] == {"v1": 50.0, "v2": 50.0}
    assert last.evidence["experiment"]["bandit"]["weights"] == after.weights

    again = controller.judge(after, END)  # the same evidence: the split stays
    assert again.action == "hold" and "bandit keeps the split" in again.reason
    assert rollouts.get(rollout.id, project=registered).weights == after.weights


def test_the_cli_status_shows_the_experiment(
    registered: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shipyard.project
    from shipyard.cli import app
    from shipyard.cli.console import out

    rollout = live_experiment(registered, {1: 0.10, 2: 0.20})
    monkeypatch.setattr(out, "width", 250)  # no wrapped table cells
    try:  # the CLI opens the project of the current folder (tmp_path) itself
        result = CliRunner().invoke(app, ["rollout", "status", rollout.name])
        listed = CliRunner().invoke(app, ["rollout", "status", rollout.name, "--json"])
    finally:
        opened = shipyard.project._current
        for key in [key for key in opened if key[0].startswith(str(tmp_path))]:
            opened.pop(key).close()
    assert result.exit_code == 0, (result.output, result.exception)
    for expected in (
        "experiment: conversion, mde 0.02, n needed",
        "│ champion │ 50%    │ 1000     │ 1000 (100%) │",
        "pts [",
        "│ yes ",
        "v2 vs champion: +",
    ):
        assert expected in result.stdout, result.stdout
    data = json.loads(listed.stdout)
    assert data["experiment"]["arms"][1]["vs_champion"]["significant"] is True
    assert data["last_decision"]["action"] == "start"


# -- (e) the declaration ----------------------------------------------------------------------


def test_the_experiment_settings_default_and_round_trip() -> None:
    spec = ab_spec()
    assert (spec.ab_metric, spec.mde, spec.bandit) == ("conversion", 0.02, False)
    chosen = ab_spec(ab_metric="reward", mde=1.5, bandit=True)
    assert (chosen.ab_metric, chosen.mde, chosen.bandit) == ("reward", 1.5, True)
    assert RolloutSpec.from_dict(chosen.to_dict()) == chosen
    stored = {k: v for k, v in spec.to_dict().items() if k not in ("ab_metric", "mde", "bandit")}
    assert RolloutSpec.from_dict(stored) == spec  # rollouts stored before these settings


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ab_metric": "ctr"}, "`ab_metric` must be one of conversion, reward, accuracy"),
        ({"ab_metric": ["reward"]}, "`ab_metric` must be one of"),
        ({"mde": 0}, "`mde` (the minimum detectable effect, an absolute difference) must be"),
        ({"mde": -0.1}, "must be a number > 0; got -0.1"),
        ({"mde": "2%"}, "must be a number > 0; got '2%'"),
        ({"mde": True}, "must be a number > 0; got True"),
        ({"mde": math.nan}, "must be a number > 0; got nan"),
        ({"mde": 1.5}, "`mde` for ab_metric 'conversion' is a difference of rates"),
        ({"ab_metric": "accuracy", "mde": 1}, "for ab_metric 'accuracy' is a difference"),
        ({"bandit": "yes"}, "`bandit` must be true or false; got 'yes'"),
        ({"bandit": 1}, "`bandit` must be true or false; got 1"),
        (
            {"bandit": True, "arms": {"champion": 16, **{str(v): 4 for v in range(2, 23)}}},
            "`bandit` keeps 5% of the traffic on every arm: at most 20 arms; got 22",
        ),
    ],
)
def test_bad_experiment_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        ab_spec(**settings)
    assert message in str(caught.value)


def test_experiment_settings_are_for_ab_rollouts_only() -> None:
    with pytest.raises(InvalidInput, match=r"`mde`, `bandit`: for strategy 'ab' only"):
        parse(
            {"model": "churn", "candidate": 2, "steps": [{"weight": 5}], "mde": 0.01,
             "bandit": True}
        )  # fmt: skip
    with pytest.raises(InvalidInput) as caught:
        ab_spec(ab_metric="ctr", mde=0, bandit="no")
    assert str(caught.value).count("; ") >= 2  # every problem at once
