"""The rollout analysis on crafted prediction logs: pass, fail, inconclusive, and the evidence."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import InvalidInput
from shipyard.predictions import feedback
from shipyard.predictions.writer import ParquetLog
from shipyard.project import Project
from shipyard.release.analysis import (
    Analysis,
    analyse,
    interval,
    logged_predictions,
    logged_rows,
    required_samples,
)
from shipyard.release.spec import Check, RolloutSpec, parse
from shipyard.serving.protocols import logged_request
from shipyard.serving.record import PredictionRecord

START = datetime(2024, 5, 1, 13, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
REGIONS = ("north", "south", "east", "west", "central")


def spec(*checks: dict[str, Any], **extra: Any) -> RolloutSpec:
    declared: dict[str, Any] = {
        "model": "churn",
        "candidate": 2,
        "strategy": "canary",
        "steps": [{"weight": 50}],
        "analysis": list(checks),
    }
    declared.update(extra)
    return parse(declared)


def entry(
    request_id: str,
    version: int,
    arm: str,
    row: dict[str, Any],
    prediction: Any,
    *,
    at: float,
    latency: float = 5.0,
    status: int = 200,
    model: str = "churn",
) -> PredictionRecord:
    outputs = (
        {"error": "RuntimeError: this candidate fails on purpose"}
        if status >= 500
        else {"model": model, "version": version, "predictions": [prediction]}
    )
    return PredictionRecord(
        request_id=request_id,
        time=at,
        model=model,
        version=version,
        protocol="predict",
        inputs=json.dumps([row]),
        outputs=json.dumps(outputs),
        latency_ms=latency,
        arm=arm,
        status=status,
    )


def traffic(
    champion: int = 600,
    candidate: int = 600,
    *,
    mirror: bool = True,
    fails: Callable[[int], bool] = lambda i: False,
    latency: Callable[[int], float] = lambda i: 5.0 + (i % 10) * 0.1,
    flips: Callable[[int, dict[str, Any]], bool] = lambda i, row: False,
    row_of: Callable[[int], dict[str, Any]] | None = None,
    offset: float = 0.0,
) -> list[PredictionRecord]:
    """A canary window: `champion` requests answered by v1 and `candidate` by v2 (arm
    "candidate"), each mirrored to the other version (arm "shadow") when `mirror`.

    v1 answers age % 2; v2 the same unless `flips`, fails (500) where `fails`, and takes
    `latency(i)` ms."""
    records = []
    base = START.timestamp() + 60 + offset
    for i in range(champion + candidate):
        row = row_of(i) if row_of else {"age": 20 + i % 50, "region": REGIONS[i % len(REGIONS)]}
        truth = row["age"] % 2
        theirs = truth
        ours = 1 - truth if flips(i, row) else truth
        on_candidate = i % 2 == 1 if i < 2 * min(champion, candidate) else candidate > champion
        at = base + i * 0.5
        request_id = f"q{i}"
        v1_arm, v2_arm = ("shadow", "candidate") if on_candidate else ("champion", "shadow")
        v1 = entry(request_id, 1, v1_arm, row, theirs, at=at, latency=5.0 + (i % 10) * 0.1)
        status = 500 if fails(i) else 200
        v2 = entry(request_id, 2, v2_arm, row, ours, at=at, latency=latency(i), status=status)
        answering, mirrored = (v2, v1) if on_candidate else (v1, v2)
        records.append(answering)
        if mirror:
            records.append(mirrored)
    return records


def logged(folder: Path, records: list[PredictionRecord]) -> Path:
    with ParquetLog(folder) as log:
        for item in records:
            log.append(item)
    return folder


def judge(folder: Path, rollout: RolloutSpec, **window: Any) -> Analysis:
    return analyse(
        rollout,
        champion=1,
        candidate=2,
        start=window.get("start", START),
        end=window.get("end", END),
        folder=folder,
    )


def by_metric(result: Analysis, metric: str, segment: str | None = None) -> Any:
    (found,) = [c for c in result.checks if c.metric == metric and c.segment == segment]
    return found


def assert_json_safe(result: Analysis) -> dict[str, Any]:
    evidence = result.to_dict()
    assert json.loads(json.dumps(evidence, allow_nan=False)) == evidence
    return evidence


HEALTHY_CHECKS = (
    {"metric": "error_rate", "max": 0.05, "max_increase": 0.05},
    {"metric": "latency_p99_ms", "max": 50, "max_ratio": 1.5},
    {"metric": "latency_p50_ms", "max": 20},
    {"metric": "agreement", "min": 0.95},
    {"metric": "flipped_labels", "max": 0.05},
    {"metric": "mean_abs_diff", "max": 0.1},
    {"metric": "prediction_psi", "max": 0.25},
    {"metric": "prediction_js", "max": 0.1},
    {"metric": "input_psi", "max": 0.25},
)


# -- the verdicts -----------------------------------------------------------------------------


def test_a_healthy_candidate_passes_every_check(tmp_path: Path) -> None:
    folder = logged(tmp_path / "log", traffic())
    result = judge(folder, spec(*HEALTHY_CHECKS))
    assert result.verdict == "pass", result.reason
    assert [c.verdict for c in result.checks] == ["pass"] * len(HEALTHY_CHECKS)
    assert result.samples["candidate"] == 600 and result.samples["champion"] == 600
    assert result.samples["pairs"] == 1200  # every request answered by one, mirrored to the other
    assert by_metric(result, "agreement").value == 1.0
    assert by_metric(result, "input_psi").detail["feature"] in ("age", "region")
    assert result.reason.startswith("pass on 600 candidate and 600 champion request(s)")
    evidence = assert_json_safe(result)
    assert evidence["window"] == {"start": START.isoformat(), "end": END.isoformat()}
    assert evidence["checks"][0]["metric"] == "error_rate"


def test_an_erroring_candidate_fails_with_its_numbers_in_the_evidence(tmp_path: Path) -> None:
    folder = logged(tmp_path / "log", traffic(fails=lambda i: i % 20 in (1, 3, 5)))  # 30%
    result = judge(folder, spec({"metric": "error_rate", "max": 0.05, "max_increase": 0.01}))
    assert result.verdict == "fail"
    check = by_metric(result, "error_rate")
    assert check.verdict == "fail" and check.value == pytest.approx(0.3)
    assert check.champion_value == 0.0 and check.n == 600 and check.required == 300
    assert check.detail["errors"] == 180 and check.detail["champion_n"] == 600
    assert check.detail["bounds_verdicts"] == {"max": "fail", "max_increase": "fail"}
    assert "error_rate: 0.3 (180 of 600) > max 0.05" in result.reason
    evidence = assert_json_safe(result)
    assert evidence["checks"][0]["value"] == pytest.approx(0.3)


def test_a_slow_candidate_fails_on_its_p99_ratio(tmp_path: Path) -> None:
    folder = logged(tmp_path / "log", traffic(latency=lambda i: 40.0 + (i % 10)))
    result = judge(folder, spec({"metric": "latency_p99_ms", "max_ratio": 3.0}))
    check = by_metric(result, "latency_p99_ms")
    assert (result.verdict, check.verdict) == ("fail", "fail")
    assert check.value == pytest.approx(49.0, abs=0.1)
    assert check.champion_value == pytest.approx(5.8, abs=0.01)
    assert check.detail["ratio"] == pytest.approx(49.0 / 5.8, rel=0.01)
    assert check.required == 500 and check.n == 600
    fine = judge(folder, spec({"metric": "latency_p99_ms", "max_ratio": 10.0}))
    assert fine.verdict == "pass"


def test_diverging_outputs_fail_agreement_and_flipped_labels(tmp_path: Path) -> None:
    folder = logged(tmp_path / "log", traffic(flips=lambda i, row: i % 5 == 0))  # 20% flipped
    result = judge(
        folder,
        spec({"metric": "agreement", "min": 0.95}, {"metric": "flipped_labels", "max": 0.05}),
    )
    agreement, flipped = by_metric(result, "agreement"), by_metric(result, "flipped_labels")
    assert result.verdict == "fail"
    assert agreement.verdict == "fail" and agreement.value == pytest.approx(0.8)
    assert flipped.verdict == "fail" and flipped.value == pytest.approx(0.2)
    assert agreement.detail["divergence"]["kind"] == "label" and agreement.n == 1200


def test_a_regression_in_one_segment_fails_while_the_aggregate_passes(tmp_path: Path) -> None:
    folder = logged(tmp_path / "log", traffic(flips=lambda i, row: row["region"] == "east"))
    checks = ({"metric": "flipped_labels", "max": 0.25},)
    aggregate_only = judge(folder, spec(*checks))
    assert aggregate_only.verdict == "pass"  # 20% flipped overall: under the bound
    result = judge(folder, spec(*checks, segments=["region"]))
    assert result.verdict == "fail"
    assert by_metric(result, "flipped_labels").verdict == "pass"
    failed = result.failed()
    assert [c.segment for c in failed] == ["region=east"]
    assert failed[0].value == 1.0 and failed[0].n == 240
    others = [c for c in result.checks if c.segment not in (None, "region=east")]
    assert {c.verdict for c in others} == {"pass"} and len(others) == 4
    assert "flipped_labels [region=east]: 1 (240 of 240) > max 0.25" in result.reason
    by_check = judge(folder, spec({**checks[0], "segment": "region"}))
    assert [c.segment for c in by_check.failed()] == ["region=east"]


def test_a_starved_window_is_inconclusive_never_pass_nor_fail(tmp_path: Path) -> None:
    rollout = spec(*HEALTHY_CHECKS)
    empty = judge(tmp_path / "nothing", rollout)
    assert empty.verdict == "inconclusive"
    assert {c.verdict for c in empty.checks} == {"inconclusive"}
    assert empty.samples["candidate"] == 0 and empty.samples["records"] == 0
    assert_json_safe(empty)
    few = logged(tmp_path / "few", traffic(champion=5, candidate=5))
    starved = judge(few, rollout)
    assert starved.verdict == "inconclusive", starved.reason
    assert starved.samples["candidate"] == 5
    assert "5 of 60 candidate requests needed" in by_metric(starved, "error_rate").summary
    # one failure in a few requests is not yet evidence of a bad version
    one_bad = logged(tmp_path / "one-bad", traffic(champion=5, candidate=5, fails=lambda i: i == 1))
    assert judge(one_bad, spec({"metric": "error_rate", "max": 0.05})).verdict == "inconclusive"
    # no declared check and no traffic: still not a pass
    assert judge(tmp_path / "nothing", spec()).verdict == "inconclusive"


def test_conclusive_evidence_fails_before_the_sample_is_complete(tmp_path: Path) -> None:
    folder = logged(tmp_path / "log", traffic(champion=8, candidate=8, fails=lambda i: True))
    result = judge(folder, spec({"metric": "error_rate", "max": 0.05}))
    check = by_metric(result, "error_rate")
    assert (result.verdict, check.n, check.required) == ("fail", 8, 60)
    assert "95% lower bound" in check.summary
    low, high = check.detail["interval_95"]
    assert low == pytest.approx(0.025 ** (1 / 8)) and high == 1.0
    slow = logged(tmp_path / "slow", traffic(champion=8, candidate=8, latency=lambda i: 900.0))
    p99 = by_metric(judge(slow, spec({"metric": "latency_p99_ms", "max": 100})), "latency_p99_ms")
    assert p99.verdict == "fail" and p99.n == 8 and p99.required == 500


def test_a_shadow_rollout_judges_the_mirrored_copies(tmp_path: Path) -> None:
    records = traffic(champion=400, candidate=0, fails=lambda i: i % 4 == 0)
    folder = logged(tmp_path / "log", records)
    shadow = spec({"metric": "error_rate", "max": 0.05}, strategy="shadow", steps=None)
    result = judge(folder, shadow)
    check = by_metric(result, "error_rate")
    assert result.samples["candidate"] == 400 and check.value == pytest.approx(0.25)
    assert result.verdict == "fail"
    canary = judge(folder, spec({"metric": "error_rate", "max": 0.05}))
    assert canary.samples["candidate"] == 0 and canary.verdict == "inconclusive"


def test_only_the_window_and_the_model_are_read(tmp_path: Path) -> None:
    inside = traffic(champion=10, candidate=10)
    before = traffic(champion=10, candidate=10, offset=-3600, fails=lambda i: True)
    after = traffic(champion=10, candidate=10, offset=3600, fails=lambda i: True)
    other = [
        entry(
            f"o{i}",
            2,
            "candidate",
            {"age": 1},
            1,
            at=START.timestamp() + 5,
            status=500,
            model="fraud",
        )
        for i in range(10)
    ]
    folder = logged(tmp_path / "log", inside + before + after + other)
    result = judge(folder, spec({"metric": "error_rate", "max": 0.5}, min_samples=10))
    assert result.samples["candidate"] == 10 and result.verdict == "pass"
    with pytest.raises(InvalidInput, match="aware UTC datetime"):
        judge(folder, spec(), start=datetime(2024, 5, 1, 13))
    with pytest.raises(InvalidInput, match="the window is empty"):
        judge(folder, spec(), end=START)


def test_input_drift_between_the_arms_fails_input_psi(tmp_path: Path) -> None:
    def row_of(i: int) -> dict[str, Any]:
        if i % 2 == 1:  # the candidate's users are older and all in the north
            return {"age": 60 + i % 20, "region": "north", "code": 2}
        return {"age": 20 + i % 50, "region": REGIONS[i % len(REGIONS)], "code": 1}

    folder = logged(tmp_path / "log", traffic(row_of=row_of))
    check = by_metric(judge(folder, spec({"metric": "input_psi", "max": 0.25})), "input_psi")
    assert check.verdict == "fail" and check.value > 1
    features = check.detail["features"]
    assert set(features) == {"age", "region", "code"}
    assert features["code"] > 5  # a constant code is compared by value, not by quantile bins
    assert check.required == 144 and check.n == 600
    same = logged(tmp_path / "same", traffic())
    check = by_metric(judge(same, spec({"metric": "input_psi", "max": 0.25})), "input_psi")
    assert check.verdict == "pass" and check.value < 0.05


# -- accuracy and feedback --------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    project = Project.init(tmp_path / ".shipyard")
    yield project
    project.close()


def test_accuracy_joins_feedback_and_reports_coverage(project: Project) -> None:
    # the candidate flips a quarter of its answers; outcomes come back for half the requests
    records = traffic(champion=200, candidate=200, mirror=False, flips=lambda i, r: i % 8 == 1)
    logged(Path(project.settings.resolved_prediction_log_url), records)
    labelled = [r for r in records if int(r.request_id[1:]) % 2 == 0]  # the champion's
    truth = {r.request_id: json.loads(r.inputs)[0]["age"] % 2 for r in records}
    feedback.add(
        [{"request_id": r.request_id, "label": truth[r.request_id]} for r in labelled[:150]]
        + [{"request_id": f"q{i}", "label": str(truth[f"q{i}"])} for i in range(1, 400, 4)],
        project=project,
        source="crm",
    )
    rollout = spec({"metric": "accuracy", "min": 0.9, "max_decrease": 0.05})
    result = analyse(rollout, champion=1, candidate=2, start=START, end=END, project=project)
    check = by_metric(result, "accuracy")
    assert check.required == 60  # ceil(3 / 0.05) for max_decrease; 30 for min
    assert check.detail["labelled"] == 100 and check.detail["predictions"] == 200
    assert check.detail["coverage"] == 0.5  # labels given as text ("1") still match 1
    assert check.value == pytest.approx(0.5) and check.champion_value == 1.0
    assert check.detail["champion_coverage"] == 150 / 200
    assert result.verdict == "fail" and check.detail["decrease"] == pytest.approx(0.5)
    assert result.samples["candidate_labelled"] == 100
    unlabelled = spec({"metric": "accuracy", "min": 0.5}, min_samples=500)
    starved = analyse(unlabelled, champion=1, candidate=2, start=START, end=END, project=project)
    assert starved.verdict == "inconclusive"


# -- required sample sizes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "bins", "required"),
    [
        ({"metric": "error_rate", "max": 0.01}, None, 300),  # ceil(3 / 0.01)
        ({"metric": "error_rate", "max": 0.5}, None, 20),  # 6, raised to the floor
        ({"metric": "error_rate", "max": 0.0001}, None, 10_000),  # 30000, capped
        ({"metric": "error_rate", "max": 0.0}, None, 10_000),
        ({"metric": "error_rate", "max": 0.05, "max_increase": 0.01}, None, 300),
        ({"metric": "flipped_labels", "max": 0.02}, None, 150),
        ({"metric": "agreement", "min": 0.99}, None, 300),  # ceil(3 / (1 - 0.99))
        ({"metric": "accuracy", "min": 0.9, "max_decrease": 0.02}, None, 150),
        ({"metric": "latency_p99_ms", "max": 100}, None, 500),  # ceil(5 / 0.01)
        ({"metric": "latency_p50_ms", "max_ratio": 2}, None, 20),  # ceil(5 / 0.5) -> floor
        ({"metric": "prediction_psi", "max": 0.1}, None, 360),  # ceil(4 * 9 / 0.1)
        ({"metric": "prediction_psi", "max": 0.1}, 2, 40),
        ({"metric": "input_psi", "max": 0.2}, None, 180),
        ({"metric": "prediction_js", "max": 0.1}, 2, 145),  # ceil(1 / (ln 2 * 0.01))
        ({"metric": "prediction_js", "max": 0.1}, None, 1299),
        ({"metric": "mean_abs_diff", "max": 0.1}, None, 100),
    ],
)
def test_required_sample_sizes_follow_the_documented_formulas(
    check: dict[str, Any], bins: int | None, required: int
) -> None:
    (parsed,) = spec(check).analysis
    assert required_samples(parsed, bins=bins) == required


def test_declared_sample_sizes_win() -> None:
    check = Check("error_rate", {"max": 0.01})
    assert required_samples(check, spec(min_samples=40)) == 40
    assert required_samples(Check("error_rate", {"max": 0.01}, min_samples=7), spec()) == 7
    assert required_samples(check, spec()) == 300


def test_the_rate_interval_is_exact() -> None:
    assert interval(0, 0) == (0.0, 1.0)
    low, high = interval(0, 10)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 10))
    low, high = interval(1, 1)
    assert low == pytest.approx(0.025) and high == 1.0
    low, high = interval(50, 100)
    assert low == pytest.approx(0.3983, abs=1e-4) and high == pytest.approx(0.6017, abs=1e-4)


# -- reading what was logged ------------------------------------------------------------------


def test_rows_and_predictions_of_each_protocol() -> None:
    one = {"age": 30, "region": "north"}
    assert logged_rows("predict", json.dumps(one)) == [one]
    assert logged_rows("predict", json.dumps({"records": [one, one]})) == [one, one]
    split = {"dataframe_split": {"columns": ["age", "region"], "data": [[30, "north"]]}}
    assert logged_rows("mlflow", json.dumps(split)) == [one]
    assert logged_rows("mlflow", json.dumps({"dataframe_records": [one]})) == [one]
    assert logged_rows("mlflow", json.dumps({"inputs": {"age": [30], "region": ["north"]}})) == [
        one
    ]
    assert logged_rows("mlflow", json.dumps({"instances": [[30, "north"]]})) == [
        {"0": 30, "1": "north"}
    ]
    v2 = {
        "inputs": [
            {"name": "age", "shape": [2], "datatype": "INT64", "data": [30, 40]},
            {"name": "region", "shape": [2, 1], "datatype": "BYTES", "data": [["n"], ["s"]]},
            {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]},
        ]
    }
    assert logged_rows("v2", json.dumps(v2)) == [
        {"age": 30, "region": "n", "x[0]": 1, "x[1]": 2},
        {"age": 40, "region": "s", "x[0]": 3, "x[1]": 4},
    ]
    assert logged_rows("predict", "{not json") == []
    assert logged_rows("v2", None) == []

    assert logged_predictions("predict", '{"model": "m", "version": 1, "predictions": [1, 0]}') == [
        1,
        0,
    ]
    records = {
        "predictions": [
            {"prediction": 1, "predict_proba": [0.2, 0.8]},
            {"prediction": None, "predict_proba": None, "filtered": "rule"},
        ]
    }
    assert logged_predictions("mlflow", json.dumps(records)) == [1, None]
    assert logged_predictions("mlflow", '{"predictions": [{"score": 0.5}]}') == [0.5]
    outputs = {
        "outputs": [
            {"name": "predict_proba", "shape": [2, 2], "datatype": "FP64", "data": [0.1] * 4},
            {"name": "predict", "shape": [2], "datatype": "INT64", "data": [1, None]},
        ]
    }
    assert logged_predictions("v2", json.dumps(outputs)) == [1, None]
    assert logged_predictions("v2", json.dumps({"outputs": outputs["outputs"][:1]})) == [
        [0.1, 0.1],
        [0.1, 0.1],
    ]
    assert logged_predictions("predict", '{"error": "RuntimeError: boom"}') == []


def test_csv_and_binary_bodies_kept_in_base64_are_read() -> None:
    def wrapped(body: bytes, headers: dict[str, str]) -> str:
        text = logged_request(body, headers)  # what the server logs for such a body
        assert text.startswith('{"shipyard_logged_request"')
        return text

    csv_body = b"age,region,score\n30,north,0.5\n41,,x\n"
    assert logged_rows("mlflow", wrapped(csv_body, {"content-type": "text/csv"})) == [
        {"age": 30, "region": "north", "score": 0.5},
        {"age": 41, "region": None, "score": "x"},
    ]
    header = {
        "inputs": [
            {"name": "age", "shape": [2], "datatype": "INT32",
             "parameters": {"binary_data_size": 8}},
            {"name": "region", "shape": [2], "datatype": "BYTES",
             "parameters": {"binary_data_size": 14}},
        ]
    }  # fmt: skip
    head = json.dumps(header).encode()
    binary = struct.pack("<2i", 30, 40) + struct.pack("<I", 5) + b"north" + struct.pack("<I", 1)
    binary += b"s"
    text = wrapped(head + binary, {"inference-header-content-length": str(len(head))})
    assert logged_rows("v2", text) == [{"age": 30, "region": "north"}, {"age": 40, "region": "s"}]


def test_non_finite_values_never_reach_the_evidence(tmp_path: Path) -> None:
    records = traffic(champion=30, candidate=30, latency=lambda i: math.inf if i == 1 else 5.0)
    folder = logged(tmp_path / "log", records)
    result = judge(folder, spec({"metric": "latency_p50_ms", "max": 10, "max_ratio": 2}))
    evidence = assert_json_safe(result)
    assert evidence["verdict"] == result.verdict
