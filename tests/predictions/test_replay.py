"""Replay: a logged request re-run on its exact model version, the verdict, and its reasons."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from predictions_helpers import FEATURES, ROWS, answered, churn_frame, logged
from sklearn.linear_model import LogisticRegression

import shipyard.data as data
from shipyard.errors import InvalidInput, NotFound
from shipyard.predictions.log import open_log
from shipyard.predictions.replay import replay
from shipyard.project import Project
from shipyard.registry.versions import register
from shipyard.serving.predictor import Predictor
from shipyard.store.models import ModelVersionRecord


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    created = Project.init(tmp_path / ".shipyard")
    frame = churn_frame()
    train = data.add(frame, "churn-train", project=created)
    model = LogisticRegression(max_iter=1000).fit(frame[FEATURES], frame["churned"])
    register(model, "churn", training_data=train, target="churned", project=created)
    yield created
    created.close()


def test_every_protocol_replays_identically(project: Project) -> None:
    v2 = {
        "inputs": [
            {"name": name, "shape": [3], "datatype": "FP64", "data": [row[name] for row in ROWS]}
            for name in FEATURES
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    csv = (
        "age,income,tenure\n" + "\n".join(f"{r['age']},{r['income']},{r['tenure']}" for r in ROWS)
    ).encode()
    logged(
        project,
        answered(project, "p1", {"records": ROWS}),
        answered(project, "v1", v2, "v2"),
        answered(project, "m1", {"dataframe_records": ROWS}, "mlflow"),
        answered(project, "c1", csv, "mlflow", headers={"content-type": "text/csv"}),
    )
    for request_id in ("p1", "v1", "m1", "c1"):
        report = replay(request_id, project=project)
        assert report.verdict == "identical", (request_id, report.differences)
        assert (report.ref, report.runtime, report.exit_code) == ("churn@1", "sklearn", 0)
        assert report.reasons == [] and report.error is None
    assert replay("v1", project=project).logged["outputs"][1]["name"] == "predict_proba"


def test_a_changed_answer_is_different_and_says_where(project: Project) -> None:
    def flip(response: dict[str, Any]) -> None:
        response["predictions"][1] = 1 - response["predictions"][1]

    logged(project, answered(project, "r1", {"records": ROWS}, tamper=flip))
    report = replay("r1", project=project)
    assert (report.verdict, report.exit_code, report.different_fields) == ("different", 1, 1)
    (line,) = report.differences
    assert line.startswith("predictions[1]: logged ")
    assert report.max_abs_diff == 1.0


def test_a_tiny_float_difference_is_close_with_the_largest_gap(project: Project) -> None:
    def nudge(response: dict[str, Any]) -> None:
        response["outputs"][0]["data"][2] *= 1 + 1e-12

    v2 = {
        "inputs": [{"name": "x", "shape": [3, 3], "datatype": "FP64",
                    "data": [[r[n] for n in FEATURES] for r in ROWS]}],
        "outputs": [{"name": "predict_proba"}],
    }  # fmt: skip
    logged(project, answered(project, "r1", v2, "v2", tamper=nudge))
    report = replay("r1", project=project)
    assert (report.verdict, report.exit_code) == ("close", 0)
    assert report.max_abs_diff is not None and 0 < report.max_abs_diff < 1e-11
    strict = replay("r1", project=project, rtol=0, atol=0)
    assert strict.verdict == "different" and "outputs[0].data[2]" in strict.differences[0]


def test_the_reasons_name_changed_hooks_packages_and_python(project: Project) -> None:
    def flip(response: dict[str, Any]) -> None:
        response["predictions"][0] = 1 - response["predictions"][0]

    logged(project, answered(project, "r1", {"records": ROWS}, tamper=flip,
                             hooks={"old_rule": "ab" * 32}))  # fmt: skip
    with project.metadata.write() as session:
        version = session.query(ModelVersionRecord).one()
        version.dependencies = {**version.dependencies, "python": "3.9.1", "scikit-learn": "0.24.2"}
    report = replay("r1", project=project)
    assert report.verdict == "different"
    text = "\n".join(report.reasons)
    assert "hook 'old_rule' shaped the logged answer but is no longer configured" in text
    assert "Python 3.9.1 when churn@1 was registered" in text
    assert "scikit-learn 0.24.2 when churn@1 was registered" in text


def test_a_hook_whose_code_changed_is_named(tmp_path: Path) -> None:
    (tmp_path / "churn_hooks.py").write_text(
        "def halve(batch):\n    batch.outputs['prediction'] = batch.outputs['prediction'] // 2\n"
    )
    project = Project.init(
        tmp_path / ".shipyard", serving={"churn": {"postprocess": ["churn_hooks:halve"]}}
    )
    frame = churn_frame()
    model = LogisticRegression(max_iter=1000).fit(frame[FEATURES], frame["churned"])
    register(model, "churn", project=project)
    record = answered(project, "r1", {"records": ROWS}, hooks={"halve": "0" * 64},
                      tamper=lambda r: r["predictions"].__setitem__(0, 7))  # fmt: skip
    logged(project, record)
    report = replay("r1", project=project)
    assert report.verdict == "different"
    assert any(
        reason.startswith("hook 'halve' changed since (code sha256 000000000000 then")
        for reason in report.reasons
    )
    project.close()


def test_the_runtime_that_reproduces_the_log_is_found(project: Project) -> None:
    """With an ONNX sibling the server answers with ONNX (float32); a request answered by the
    native model (float64) is reproduced by the native model, and the report says so."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    from shipyard.registry.compile import compile_onnx

    v2 = {
        "inputs": [{"name": "x", "shape": [3, 3], "datatype": "FP64",
                    "data": [[r[n] for n in FEATURES] for r in ROWS]}],
        "outputs": [{"name": "predict_proba"}],
    }  # fmt: skip
    native = answered(project, "native", v2, "v2")  # before compiling: sklearn answers
    compile_onnx("churn@1", churn_frame(), rtol=1e-3, atol=1e-4, project=project)
    logged(project, native, answered(project, "onnx", v2, "v2"))

    by_onnx = replay("onnx", project=project)
    assert (by_onnx.verdict, by_onnx.runtime) == ("identical", "onnx")
    assert by_onnx.reasons == ["answered by the ONNX sibling, as the server does by default"]
    by_native = replay("native", project=project)
    assert (by_native.verdict, by_native.runtime) == ("identical", "sklearn")
    (note,) = by_native.reasons
    assert note.startswith("the native sklearn model reproduces the log (identical) where its ONNX")


def test_replay_picks_the_arm_when_several_answered(project: Project) -> None:
    logged(
        project,
        answered(project, "r1", {"records": ROWS}, arm="champion"),
        answered(project, "r1", {"records": ROWS}, arm="shadow"),
    )
    with pytest.raises(InvalidInput, match=r"answered by 2 arms \(champion, shadow\).*--arm"):
        replay("r1", project=project)
    assert replay("r1", project=project, arm="shadow").arm == "shadow"
    with pytest.raises(InvalidInput, match="not answered by arm 'canary'"):
        replay("r1", project=project, arm="canary")


def test_an_unknown_request_is_not_found(project: Project) -> None:
    logged(project, answered(project, "r1", {"records": ROWS}))
    with pytest.raises(NotFound, match="no prediction with request id 'r2'"):
        replay("r2", project=project)


def test_a_request_answered_by_the_server_replays_identically(project: Project) -> None:
    """End to end: the ASGI app answers and logs through `open_log`; replay reads that log."""
    from shipyard.serving.app import ServingApp

    app = ServingApp.of(
        [Predictor.load("churn@1", project=project)], sink=open_log(project.settings)
    )
    app.load()

    async def ask() -> list[str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            ids = []
            for i, (path, body) in enumerate(
                [("/predict", {"records": ROWS}),
                 ("/invocations", {"dataframe_split": {"columns": FEATURES,
                                    "data": [[r[n] for n in FEATURES] for r in ROWS]}})]
            ):  # fmt: skip
                response = await client.post(path, json=body, headers={"x-request-id": f"e2e-{i}"})
                assert response.status_code == 200, response.text
                ids.append(response.headers["x-request-id"])
            return ids

    ids = asyncio.run(ask())
    app.sink.close()
    for request_id in ids:
        report = replay(request_id, project=project)
        assert report.verdict == "identical", report.differences
