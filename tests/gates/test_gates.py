"""Each gate kind passing and failing on real scikit-learn models (see conftest.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from gates_helpers import HOLDOUT, policy

from shipyard.data import expectations_for
from shipyard.data import get as get_dataset
from shipyard.errors import InvalidInput
from shipyard.gates import (
    Benchmark,
    Blessing,
    DataValidation,
    Differential,
    Evaluation,
    Slice,
    Threshold,
    run_gates,
)
from shipyard.project import Project
from shipyard.registry.aliases import set_alias


def crown(project: Project, version: int) -> None:
    """Make `version` the champion (forced: these tests judge the gates, not the guard)."""
    set_alias("churn", "champion", version, force=True, reason="test setup", project=project)


def test_evaluation_passes_a_good_model_and_fails_a_dummy(project: Project) -> None:
    gate = Evaluation(metrics={"auc": {"min": 0.70}, "log_loss": {"max": 0.69}})
    good = run_gates("churn@1", policy(gate), project=project).result("evaluation")
    assert good.passed
    assert good.details["metrics"]["auc"] > 0.70
    assert [c["passed"] for c in good.checks] == [True, True]
    bad = run_gates("churn@3", policy(gate), project=project).result("evaluation")
    assert not bad.passed
    assert bad.details["metrics"]["auc"] == pytest.approx(0.5)
    assert any("auc = 0.5" in reason and "NOT met" in reason for reason in bad.reasons)


def test_a_regressor_metric_on_a_classifier_is_a_clear_error(project: Project) -> None:
    with pytest.raises(InvalidInput, match=r"'rmse' is for regressors but churn@1 is a classi"):
        run_gates("churn@1", policy(Evaluation(metrics={"rmse": {"max": 1}})), project=project)


def test_blessing_without_a_champion_is_judged_by_thresholds_alone(project: Project) -> None:
    thresholds = policy(Evaluation(metrics={"auc": {"min": 0.7}}), Blessing(metric="auc"))
    first = run_gates("churn@1", thresholds, project=project).result("blessing")
    assert first.passed and first.details["champion"] is None
    assert "judged by thresholds alone" in first.reasons[0]
    dummy = run_gates("churn@3", thresholds, project=project).result("blessing")
    assert not dummy.passed
    bare = run_gates("churn@3", policy(Blessing(metric="auc")), project=project)
    assert bare.passed and "there are none" in bare.results[0].reasons[0]


def test_blessing_needs_the_candidate_to_beat_the_champion(project: Project) -> None:
    crown(project, 3)  # the dummy reigns
    gate = Blessing(metric="auc", margin=0.1)
    better = run_gates("churn@1", policy(gate), project=project).result("blessing")
    assert better.passed
    assert better.details["champion_version"] == "churn@3"
    assert better.details["candidate"] >= better.details["champion"] + 0.1
    crown(project, 1)
    worse = run_gates("churn@3", policy(gate), project=project).result("blessing")
    assert not worse.passed and "does NOT beat the champion" in worse.reasons[0]
    # A loss metric is better when lower: the margin goes the other way.
    loss = run_gates("churn@3", policy(Blessing(metric="log_loss")), project=project)
    assert not loss.passed and loss.results[0].checks[0]["op"] == "<="


def test_differential_reports_the_most_changed_rows(project: Project) -> None:
    crown(project, 1)
    loose = Differential(max_mean_abs_diff=0.5, max_flip_share=0.5, top=5)
    result = run_gates("churn@2", policy(loose), project=project).result("differential")
    assert result.passed
    assert 0 < result.details["mean_abs_diff"] <= result.details["max_abs_diff"] < 1
    assert 0 <= result.details["flip_share"] < 0.5
    changed = result.details["most_changed"]
    assert len(changed) == 5
    diffs = [row["abs_diff"] for row in changed]
    assert diffs == sorted(diffs, reverse=True) and diffs[0] == result.details["max_abs_diff"]
    first = changed[0]
    assert set(first["inputs"]) == {"age", "visits", "spend", "plan"}
    assert first["abs_diff"] == pytest.approx(abs(first["candidate"] - first["champion"]))
    assert first["candidate_label"] in (True, False)
    strict = Differential(max_mean_abs_diff=0.001)
    failed = run_gates("churn@2", policy(strict), project=project).result("differential")
    assert not failed.passed and any("EXCEEDED" in r for r in failed.reasons)


def test_differential_and_benchmark_pass_without_a_champion(project: Project) -> None:
    report = run_gates(
        "churn@1", policy(Differential(max_mean_abs_diff=0.0), Benchmark(rows=5)), project=project
    )
    assert report.passed
    assert [r.reasons[0].startswith("no champion to compare with") for r in report.results] == [
        True,
        True,
    ]
    assert report.result("benchmark").details["candidate"]["p99_ms"] > 0


@pytest.mark.parametrize(("ratio", "passes"), [(1e6, True), (1e-6, False)])
def test_benchmark_verdict_follows_the_measured_ratio(
    project: Project, ratio: float, passes: bool
) -> None:
    crown(project, 1)
    gate = Benchmark(max_latency_ratio=ratio, rows=12, batch_repeats=2)
    result = run_gates("churn@2", policy(gate), project=project).result("benchmark")
    details = result.details
    for who in ("candidate", "champion"):
        timings = details[who]
        assert timings["calls"] >= 2
        assert 0 < timings["p50_ms"] <= timings["p99_ms"]
        assert timings["rows_per_s"] > 0 and timings["batch_rows"] == 12
    measured = details["candidate"]["p99_ms"] / details["champion"]["p99_ms"]
    assert details["p99_ratio"] == pytest.approx(measured)
    assert result.passed is passes is (measured <= ratio)


def test_data_validation_passes_clean_training_data(project: Project) -> None:
    result = run_gates("churn@1", policy(DataValidation()), project=project).results[0]
    assert result.passed
    assert result.details["datasets"] == ["customers-train@1"]
    assert result.details["failures"] == []


def test_data_validation_fails_training_data_that_breaks_expectations(project: Project) -> None:
    result = run_gates("churn@4", policy(DataValidation()), project=project).results[0]
    assert not result.passed
    (failure,) = result.details["failures"]
    assert failure["dataset"] == "customers-drifted@1"
    assert (failure["column"], failure["rule"]) == ("age", "range")
    assert any("customers-drifted@1: age range" in reason for reason in result.reasons)


def test_data_validation_reads_an_expectations_file(project: Project, tmp_path: Path) -> None:
    rules = expectations_for(get_dataset(HOLDOUT, project=project))
    rules.columns["spend"].max = 10.0  # far tighter than the training data
    path = rules.save(tmp_path / "rules.toml")
    gate = DataValidation(expectations=str(path))
    result = run_gates("churn@1", policy(gate), project=project).results[0]
    assert not result.passed
    assert [f["column"] for f in result.details["failures"]] == ["spend"]
    assert result.details["expectations"] == str(path)


def test_slice_fails_when_a_slice_falls_behind(project: Project) -> None:
    gate = Slice(column="city", metric="auc", max_gap=0.1)
    result = run_gates("churn@1", policy(gate), project=project).results[0]
    assert not result.passed
    slices = {s["value"]: s for s in result.details["slices"]}
    assert set(slices) == {"east", "north", "south"}
    assert sum(s["rows"] for s in slices.values()) == 600
    east = slices["east"]
    assert not east["passed"] and east["gap"] > 0.1
    assert east["gap"] == pytest.approx(result.details["overall"] - east["metric"])
    assert slices["north"]["passed"] and slices["south"]["passed"]
    assert any(reason.startswith("city = east") for reason in result.reasons)


def test_slice_passes_even_groups_and_does_not_judge_small_ones(project: Project) -> None:
    even = run_gates(
        "churn@1", policy(Slice(column="segment", metric="accuracy", max_gap=0.1)), project=project
    ).results[0]
    assert even.passed and len(even.details["slices"]) == 2
    small = run_gates(
        "churn@1", policy(Slice(column="city", max_gap=0.1, min_rows=1000)), project=project
    ).results[0]
    assert small.passed
    assert not any(s["judged"] for s in small.details["slices"])


def test_slice_on_a_missing_column_names_the_columns(project: Project) -> None:
    with pytest.raises(InvalidInput, match=r"field 'column'.*no column 'town' \(columns: age"):
        run_gates("churn@1", policy(Slice(column="town")), project=project)


def test_a_champion_with_other_inputs_is_a_clear_error(project: Project) -> None:
    crown(project, 1)
    with pytest.raises(InvalidInput) as caught:
        run_gates("churn@5", policy(Blessing(metric="auc")), project=project)
    message = str(caught.value)
    assert "churn@5" in message and "champion churn@1" in message
    assert "input 'spend' removed" in message and "input 'plan' removed" in message
    # New ranges (training data moved on) do not make rows incomparable.
    assert run_gates("churn@4", policy(Differential()), project=project).passed


def test_a_threshold_object_and_nan_metrics(project: Project) -> None:
    assert Threshold(min=0.5).holds(0.6) and not Threshold(min=0.5).holds(math.nan)
    gate = Blessing(metric="auc", threshold=Threshold(min=0.99))
    assert not run_gates("churn@1", policy(gate), project=project).passed


def test_a_regressor_is_judged_on_its_values(project: Project) -> None:
    from sklearn.linear_model import LinearRegression, Ridge

    from shipyard.registry.versions import register

    train = get_dataset("customers-train@1", project=project)
    frame = train.to_pandas()
    x, y = frame[["age", "visits"]], frame["spend"]
    for model in (LinearRegression().fit(x, y), Ridge(alpha=1e5).fit(x, y)):
        register(model, "spend", training_data=train, target="spend", project=project)
    set_alias("spend", "champion", 1, project=project)  # unguarded: no policy judged it yet
    gates = policy(
        Evaluation(metrics={"rmse": {"max": 200}, "r2": {"min": -1}}),
        Blessing(metric="mae"),
        Differential(max_mean_abs_diff=100.0),
        target="spend",
    )
    report = run_gates("spend@2", gates, project=project)
    metrics = report.result("evaluation").details["metrics"]
    assert 100 < metrics["rmse"] < 200 and report.result("evaluation").passed
    differential = report.result("differential").details
    assert "flip_share" not in differential and differential["mean_abs_diff"] > 0
    assert (
        differential["most_changed"][0]["candidate"] != differential["most_changed"][0]["champion"]
    )
    with pytest.raises(InvalidInput, match=r"'auc' is for classifiers but spend@2 is a regres"):
        run_gates(
            "spend@2",
            policy(Evaluation(metrics={"auc": {"min": 0.5}}), target="spend"),
            project=project,
        )
