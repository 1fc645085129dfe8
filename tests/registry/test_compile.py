"""ONNX compilation: kept only after the equivalence check passes, served when present."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")
pytest.importorskip("onnxmltools")

import shipyard.data as data
from shipyard.errors import InvalidInput
from shipyard.project import Project
from shipyard.registry.compile import EquivalenceFailed, OnnxCheck, compile_onnx
from shipyard.registry.versions import get, register

COLUMNS = ["a", "b", "c", "d", "e"]


def frame(rows: int, seed: int, classes: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, len(COLUMNS)))
    result = pd.DataFrame(values, columns=COLUMNS)
    result["d"] = rng.integers(0, 10, rows)  # an integer input: cast to float32 like the rest
    score = values[:, 0] + 0.5 * values[:, 1] - 0.3 * result["d"] + rng.normal(0, 0.3, rows)
    if classes == 0:
        result["y"] = score * 3.0 + 1.0
    else:
        result["y"] = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    return result


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    created = Project.init(tmp_path / ".shipyard")
    yield created
    created.close()


def _sklearn(kind: str) -> Any:
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "gbc": lambda: GradientBoostingClassifier(n_estimators=30, random_state=0),
        "rf": lambda: RandomForestClassifier(n_estimators=20, random_state=0),
        "logreg": lambda: LogisticRegression(max_iter=500),
        "logreg_pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression()),
        "gbr": lambda: GradientBoostingRegressor(n_estimators=30, random_state=0),
    }[kind]()


def _boosted(kind: str) -> Any:
    if kind.startswith("xgb"):
        xgboost = pytest.importorskip("xgboost")
        if kind == "xgb_regressor":
            return xgboost.XGBRegressor(n_estimators=20, max_depth=3)
        return xgboost.XGBClassifier(n_estimators=20, max_depth=3)
    lightgbm = pytest.importorskip("lightgbm")
    return lightgbm.LGBMClassifier(n_estimators=20, verbose=-1)


CASES: list[tuple[str, Callable[[], Any], int]] = [
    ("GradientBoostingClassifier", lambda: _sklearn("gbc"), 2),
    ("RandomForestClassifier, 3 classes", lambda: _sklearn("rf"), 3),
    ("LogisticRegression", lambda: _sklearn("logreg"), 2),
    ("StandardScaler + LogisticRegression", lambda: _sklearn("logreg_pipeline"), 3),
    ("GradientBoostingRegressor", lambda: _sklearn("gbr"), 0),
    ("XGBClassifier", lambda: _boosted("xgb"), 2),
    ("XGBClassifier, 3 classes", lambda: _boosted("xgb"), 3),
    ("XGBRegressor", lambda: _boosted("xgb_regressor"), 0),
    ("LGBMClassifier", lambda: _boosted("lgbm"), 2),
]


def _registered(project: Project, make: Callable[[], Any], classes: int) -> tuple[Any, Any, Any]:
    train, holdout = frame(600, 1, classes), frame(300, 2, classes)
    model = make().fit(train[COLUMNS], train["y"])
    training = data.add(train, "train", project=project)
    version = register(model, "m", training_data=training, target="y", project=project)
    return model, version, data.add(holdout, "holdout", project=project)


@pytest.mark.parametrize(("title", "make", "classes"), CASES, ids=[c[0] for c in CASES])
def test_compiled_version_is_served_with_onnx_and_matches(
    project: Project, title: str, make: Callable[[], Any], classes: int
) -> None:
    model, version, holdout = _registered(project, make, classes)
    check = compile_onnx(version.ref, holdout, project=project)
    assert check.passed and check.rows == 300 and check.label_mismatches == 0
    assert check.max_abs_diff <= 1e-4

    stored = get(version.ref, project=project)
    assert stored.onnx is not None
    assert stored.onnx["check"] == check.to_json()
    assert stored.onnx["meta"]["task"] == ("regressor" if classes == 0 else "classifier")

    rows = holdout.to_pandas()[COLUMNS]
    served, original = stored.load(project=project), stored.load(project=project, onnx=False)
    assert served.flavor.name == "onnx"
    assert original.flavor.name == version.flavor != "onnx"
    if classes:
        assert np.array_equal(served.predict(rows), model.predict(rows))
        np.testing.assert_allclose(
            served.predict_proba(rows), model.predict_proba(rows), rtol=1e-4, atol=1e-5
        )
    else:
        np.testing.assert_allclose(served.predict(rows), model.predict(rows), rtol=1e-4, atol=1e-4)
    # One row as HTTP gives it: a record, through the same signature enforcement.
    record = {name: rows[name].iloc[0].item() for name in COLUMNS}
    assert served.predict([record]).shape[0] == 1


def test_held_out_data_as_a_frame_a_reference_or_a_file(project: Project, tmp_path: Path) -> None:
    _, version, holdout = _registered(project, lambda: _sklearn("gbc"), 2)
    assert compile_onnx(version.ref, holdout.to_pandas(), project=project).rows == 300
    assert compile_onnx(version.ref, holdout.ref, project=project).rows == 300
    path = tmp_path / "holdout.csv"
    holdout.to_pandas().head(50).to_csv(path, index=False)
    assert compile_onnx(version.ref, str(path), project=project).rows == 50


def test_an_impossible_tolerance_stores_nothing(project: Project) -> None:
    _, version, holdout = _registered(project, lambda: _sklearn("gbr"), 0)
    with pytest.raises(EquivalenceFailed) as raised:
        compile_onnx(version.ref, holdout, rtol=0.0, atol=0.0, project=project)
    check = raised.value.check
    assert isinstance(check, OnnxCheck) and not check.passed and check.max_abs_diff > 0
    assert "tolerance atol 0" in str(raised.value) and "nothing was stored" in str(raised.value)
    assert get(version.ref, project=project).onnx is None
    assert get(version.ref, project=project).load(project=project).flavor.name == "sklearn"


def test_a_failed_recompile_keeps_the_earlier_passed_one(project: Project) -> None:
    _, version, holdout = _registered(project, lambda: _sklearn("gbr"), 0)
    passed = compile_onnx(version.ref, holdout, project=project)
    with pytest.raises(EquivalenceFailed):
        compile_onnx(version.ref, holdout, rtol=0.0, atol=0.0, project=project)
    assert get(version.ref, project=project).onnx["check"] == passed.to_json()  # type: ignore[index]


def test_a_tampered_comparison_fails(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiled model whose probabilities are off by 1e-3 never reaches serving."""
    from shipyard.registry.flavors import get_flavor

    _, version, holdout = _registered(project, lambda: _sklearn("gbc"), 2)
    flavor = get_flavor("onnx")
    honest = flavor.predict_proba

    def skewed(model: Any, rows: pd.DataFrame, meta: dict[str, Any]) -> Any:
        return honest(model, rows, meta) + 1e-3

    monkeypatch.setattr(flavor, "predict_proba", skewed)
    with pytest.raises(EquivalenceFailed, match=r"max \|difference\| of probabilities 0.001"):
        compile_onnx(version.ref, holdout, project=project)
    assert get(version.ref, project=project).onnx is None


def test_non_numeric_inputs_are_refused_naming_the_columns(project: Project) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    train = frame(300, 1)
    train["plan"] = np.where(train["a"] > 0, "pro", "basic")
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["plan"]), remainder="passthrough"),
        LogisticRegression(),
    ).fit(train[[*COLUMNS, "plan"]], train["y"])
    training = data.add(train, "train", project=project)
    version = register(model, "m", training_data=training, target="y", project=project)
    with pytest.raises(InvalidInput, match="non-numeric inputs: plan \\(category\\)"):
        compile_onnx(version.ref, train, project=project)
    assert get(version.ref, project=project).onnx is None


def test_without_a_signature_or_rows_it_says_what_to_do(project: Project) -> None:
    from sklearn.linear_model import LogisticRegression

    train = frame(300, 1)
    bare = register(LogisticRegression().fit(train[COLUMNS], train["y"]), "bare", project=project)
    with pytest.raises(InvalidInput, match="no signature"):
        compile_onnx(bare.ref, train, project=project)
    _, version, _ = _registered(project, lambda: _sklearn("gbc"), 2)
    with pytest.raises(InvalidInput, match="no rows"):
        compile_onnx(version.ref, train.head(0), project=project)
    with pytest.raises(InvalidInput, match="rtol and atol"):
        compile_onnx(version.ref, train, rtol=-1.0, project=project)
