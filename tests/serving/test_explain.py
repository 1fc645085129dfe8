"""Explanations of real registered models: SHAP contributions add up to the model's raw output,
the feature the data was built on comes first, and what cannot be explained says why."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import shipyard.data as data
import shipyard.serving.explain as explain_module
from shipyard.errors import InvalidInput
from shipyard.project import Project
from shipyard.registry.loaded import LoadedModel
from shipyard.registry.signature import SignatureError
from shipyard.registry.versions import get, register
from shipyard.serving.explain import (
    Explainer,
    Explanation,
    ExplanationUnavailable,
    explain,
    global_importance,
)

pytest.importorskip("shap")

FEATURES = ["signal", "noise", "count"]
ADDITIVE = 1e-6
# XGBoost adds its trees in float32: its own margins carry ~5e-7 of rounding at |margin| ~ 5.
ADDITIVE_FLOAT32 = 1e-5


def frame(rows: int, seed: int, task: str = "binary") -> pd.DataFrame:
    """`signal` drives the target; `noise` and `count` barely matter. Scales differ on purpose."""
    rng = np.random.default_rng(seed)
    result = pd.DataFrame(
        {
            "signal": rng.normal(50.0, 10.0, rows),
            "noise": rng.normal(0.0, 1.0, rows),
            "count": rng.integers(0, 100, rows),
        }
    )
    score = 0.4 * (result["signal"] - 50.0) + 0.1 * result["noise"] + 0.002 * result["count"]
    if task == "regression":
        result["y"] = 3.0 * score + rng.normal(0.0, 0.5, rows)
    elif task == "multiclass":
        result["y"] = np.digitize(score + rng.normal(0, 0.5, rows), [-2.0, 2.0])
    else:
        result["y"] = (score + rng.logistic(0.0, 1.0, rows)) > 0
    return result


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    created = Project.init(tmp_path / ".shipyard")
    yield created
    created.close()


def registered(
    project: Project, model: Any, task: str = "binary", *, name: str = "m", dataset: bool = True
) -> tuple[Any, LoadedModel, pd.DataFrame]:
    """`model` fitted, registered with its training data, loaded back; and held-out rows."""
    train = frame(600, 1, task)
    model.fit(train[FEATURES], train["y"])
    training: Any = data.add(train, f"{name}-train", project=project) if dataset else train
    version = register(model, name, training_data=training, target="y", project=project)
    return model, version.load(project=project), frame(40, 2, task)[FEATURES]


def xgboost_classifier() -> Any:
    xgboost = pytest.importorskip("xgboost")
    return xgboost.XGBClassifier(n_estimators=30, max_depth=3)


def lightgbm_classifier() -> Any:
    lightgbm = pytest.importorskip("lightgbm")
    return lightgbm.LGBMClassifier(n_estimators=30, verbose=-1)


def xgboost_margin(model: Any, rows: pd.DataFrame) -> Any:
    return model.predict(rows, output_margin=True)


def lightgbm_margin(model: Any, rows: pd.DataFrame) -> Any:
    return model.predict(rows, raw_score=True)


def decision(model: Any, rows: pd.DataFrame) -> Any:
    return model.decision_function(rows)


def prediction(model: Any, rows: pd.DataFrame) -> Any:
    return model.predict(rows)


# (id, model maker, task, raw output of the fitted original, method, output text)
CASES: list[tuple[str, Callable[[], Any], str, Callable[[Any, pd.DataFrame], Any], str, str]] = [
    (
        "GradientBoostingClassifier",
        lambda: GradientBoostingClassifier(n_estimators=40, random_state=0),
        "binary",
        decision,
        "tree",
        "log-odds of class True",
    ),
    (
        "RandomForestRegressor",
        lambda: RandomForestRegressor(n_estimators=30, max_depth=6, random_state=0),
        "regression",
        prediction,
        "tree",
        "prediction",
    ),
    (
        "LogisticRegression",
        lambda: LogisticRegression(max_iter=1000),
        "binary",
        decision,
        "linear",
        "log-odds of class True",
    ),
    (
        "StandardScaler+LogisticRegression",
        lambda: make_pipeline(StandardScaler(), LogisticRegression()),
        "binary",
        decision,
        "linear",
        "log-odds of class True",
    ),
    ("XGBClassifier", xgboost_classifier, "binary", xgboost_margin, "tree", "log-odds of class 1"),
    (
        "LGBMClassifier",
        lightgbm_classifier,
        "binary",
        lightgbm_margin,
        "tree",
        "log-odds of class True",
    ),
]


def contributions(explanation: Explanation) -> np.ndarray[Any, Any]:
    return np.array([list(row.values()) for row in explanation.contributions])


def assert_additive(explanation: Explanation, raw: Any) -> None:
    """base + sum(contributions) == the model's raw output, row by row."""
    raw = np.asarray(raw)
    tolerance = ADDITIVE_FLOAT32 if raw.dtype == np.float32 else ADDITIVE
    totals = explanation.base_value + contributions(explanation).sum(axis=1)
    np.testing.assert_allclose(totals, raw.astype(np.float64), rtol=0, atol=tolerance)


def top_feature(explanation: Explanation) -> str:
    mean = np.abs(contributions(explanation)).mean(axis=0)
    return explanation.features[int(np.argmax(mean))]


@pytest.mark.parametrize(
    ("title", "make", "task", "raw", "method", "output"), CASES, ids=[c[0] for c in CASES]
)
def test_contributions_add_up_to_the_raw_output_and_find_the_signal(
    project: Project,
    title: str,
    make: Callable[[], Any],
    task: str,
    raw: Callable[[Any, pd.DataFrame], Any],
    method: str,
    output: str,
) -> None:
    model, loaded, rows = registered(project, make(), task)

    explanation = explain(loaded, rows)

    assert explanation.method == method and explanation.output == output
    assert explanation.model == "m@1" and len(explanation.contributions) == len(rows)
    assert_additive(explanation, raw(model, rows))
    assert top_feature(explanation) == "signal"
    document = json.loads(json.dumps(explanation.to_json()))  # plain JSON, floats and all
    assert document["contributions"][0] == explanation.contributions[0]
    assert document["base_value"] == explanation.base_value
    if title.startswith("StandardScaler"):
        assert explanation.transformed_by == ["standardscaler"]
        assert explanation.features == FEATURES  # the scaler keeps the names
    else:
        assert explanation.transformed_by == [] and explanation.features == FEATURES

    # One row as a JSON request sends it: records, with the ints and floats JSON has.
    record = {name: rows[name].iloc[0].item() for name in FEATURES}
    single = explain(loaded, [record])
    assert single.contributions[0] == pytest.approx(explanation.contributions[0], abs=1e-9)


@pytest.mark.parametrize(
    ("title", "make", "task", "raw", "method", "output"), CASES, ids=[c[0] for c in CASES]
)
def test_global_importance_ranks_the_signal_first(
    project: Project,
    title: str,
    make: Callable[[], Any],
    task: str,
    raw: Callable[[Any, pd.DataFrame], Any],
    method: str,
    output: str,
) -> None:
    _, loaded, rows = registered(project, make(), task)

    own = global_importance(loaded, project=project)
    by_shap = global_importance(loaded, rows, project=project)

    for importance in (own, by_shap):
        assert next(iter(importance.importance)) == "signal"
        assert set(importance.importance) == set(FEATURES)
        values = list(importance.importance.values())
        assert values == sorted(values, reverse=True)
        json.dumps(importance.to_json())
    assert by_shap.method == "mean_abs_shap"
    explanation = explain(loaded, rows)
    mean = np.abs(contributions(explanation)).mean(axis=0)
    assert by_shap.importance == pytest.approx(dict(zip(FEATURES, mean, strict=True)))
    expected_own = {
        "tree": "gain" if title.startswith(("XGB", "LGBM")) else "impurity",
        "linear": "coef" if title.startswith("StandardScaler") else "coef_std",
    }[method]
    assert own.method == expected_own
    if own.method == "gain" or own.method == "impurity":
        assert sum(own.importance.values()) == pytest.approx(1.0)


def test_linear_importance_scales_coefficients_by_the_training_std(project: Project) -> None:
    model, loaded, _ = registered(project, LogisticRegression(max_iter=1000))
    train = frame(600, 1)

    importance = global_importance(loaded, project=project)

    assert importance.method == "coef_std" and "m-train@1" in importance.detail
    expected = np.abs(model.coef_[0]) * train[FEATURES].std(ddof=0).to_numpy()
    assert importance.importance == pytest.approx(dict(zip(FEATURES, expected, strict=True)))


def test_linear_reference_is_the_training_mean_or_the_background(project: Project) -> None:
    model, loaded, rows = registered(project, LogisticRegression(max_iter=1000))
    train = frame(600, 1)

    default = explain(loaded, rows, project=project)
    assert "training data m-train@1" in default.reference
    means = train[FEATURES].mean().to_frame().T
    assert default.base_value == pytest.approx(float(model.decision_function(means)[0]))

    background = frame(200, 7)[FEATURES]
    given = explain(loaded, rows, background=background)
    assert given.reference == "mean of 200 background rows"
    centre = background.mean().to_frame().T
    assert given.base_value == pytest.approx(float(model.decision_function(centre)[0]))
    assert_additive(given, model.decision_function(rows))


def test_linear_reference_without_a_dataset_falls_back_to_the_ranges(project: Project) -> None:
    model, loaded, rows = registered(project, LinearRegression(), "regression", dataset=False)
    assert loaded.version.datasets == []

    explanation = explain(loaded, rows, project=project)

    assert "midpoints of the signature's training ranges" in explanation.reference
    assert explanation.output == "prediction"
    assert_additive(explanation, model.predict(rows))
    signature = loaded.signature
    assert signature is not None
    middle = pd.DataFrame(
        {spec.name: [(spec.minimum + spec.maximum) / 2] for spec in signature.inputs}  # type: ignore[operator]
    )
    assert explanation.base_value == pytest.approx(float(model.predict(middle)[0]))
    assert global_importance(loaded, project=project).method == "coef"  # no std known


def test_a_linear_model_with_nothing_to_measure_from_asks_for_a_background(
    project: Project,
) -> None:
    train = frame(300, 1, "regression")
    model = LinearRegression().fit(train[FEATURES], train["y"])
    version = register(model, "bare", project=project)  # no signature, no data
    loaded = version.load(project=project)

    with pytest.raises(ExplanationUnavailable, match="pass background="):
        explain(loaded, train[FEATURES].head(3), project=project)
    explained = explain(loaded, train[FEATURES].head(3), background=train[FEATURES])
    assert_additive(explained, model.predict(train[FEATURES].head(3)))


def test_binary_classes_either_way_and_multiclass_by_name(project: Project) -> None:
    _, loaded, rows = registered(project, LogisticRegression(max_iter=1000))

    positive = explain(loaded, rows)
    negative = explain(loaded, rows, output_class=False)
    assert negative.output == "log-odds of class False" and negative.output_class is False
    assert negative.base_value == pytest.approx(-positive.base_value)
    np.testing.assert_allclose(contributions(negative), -contributions(positive))
    assert explain(loaded, rows, output_class="true").output_class is True  # as JSON sends it
    with pytest.raises(InvalidInput, match="has no class 'maybe'"):
        explain(loaded, rows, output_class="maybe")

    multi, loaded3, rows3 = registered(
        project, LogisticRegression(max_iter=1000), "multiclass", name="three"
    )
    with pytest.raises(InvalidInput, match="3 classes: say which one"):
        explain(loaded3, rows3)
    for index, label in enumerate(multi.classes_):
        explanation = explain(loaded3, rows3, output_class=label.item())
        assert explanation.output == f"raw score (softmax logit) of class {label.item()!r}"
        assert_additive(explanation, multi.decision_function(rows3)[:, index])


def test_forests_explain_a_class_probability(project: Project) -> None:
    model, loaded, rows = registered(
        project, RandomForestClassifier(n_estimators=30, max_depth=5, random_state=0)
    )

    explanation = explain(loaded, rows)

    assert explanation.output == "probability of class True"
    assert_additive(explanation, model.predict_proba(rows)[:, 1])
    assert top_feature(explanation) == "signal"
    assert global_importance(loaded).method == "impurity"


def test_xgboost_multiclass_explains_each_class(project: Project) -> None:
    model, loaded, rows = registered(project, xgboost_classifier(), "multiclass")
    margins = model.predict(rows, output_margin=True)

    for label in (0, 1, 2):
        explanation = explain(loaded, rows, output_class=label)
        assert explanation.output == f"raw score (softmax logit) of class {label}"
        assert_additive(explanation, margins[:, label])


def test_tree_background_makes_interventional_explanations(project: Project) -> None:
    model, loaded, rows = registered(
        project, GradientBoostingClassifier(n_estimators=40, random_state=0)
    )
    background = frame(300, 9)[FEATURES]

    explanation = explain(loaded, rows, background=background)

    assert explanation.reference.startswith("100 background rows (interventional")
    assert_additive(explanation, model.decision_function(rows))
    assert top_feature(explanation) == "signal"


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosted_regressors_with_a_background_explain_their_prediction(
    project: Project, library: str
) -> None:
    module = pytest.importorskip(library)
    if library == "xgboost":
        model, poisson = module.XGBRegressor(n_estimators=30), "count:poisson"
    else:
        model, poisson = module.LGBMRegressor(n_estimators=30, verbose=-1), "poisson"
    model, loaded, rows = registered(project, model, "regression")

    explanation = explain(loaded, rows, background=frame(50, 9)[FEATURES])

    assert explanation.output == "prediction" and explanation.reference.startswith("50 ")
    assert_additive(explanation, model.predict(rows))
    assert top_feature(explanation) == "signal"
    assert global_importance(loaded).method == "gain"

    counts = frame(600, 1, "regression")
    counts["y"] = np.exp(counts["y"] / 10)  # positive: a Poisson objective's raw score is a log
    model.set_params(objective=poisson).fit(counts[FEATURES], counts["y"])
    other = register(model, "counts", training_data=counts, target="y", project=project)
    logged = explain(other.load(project=project), rows)
    assert logged.output.startswith("raw score (the margin, before the objective's link")


def test_a_pipeline_with_preprocessing_is_explained_in_transformed_features(
    project: Project,
) -> None:
    train = frame(600, 1)
    train["plan"] = np.where(train["signal"] > 50, "pro", "basic")
    columns = [*FEATURES, "plan"]
    pipeline = make_pipeline(
        ColumnTransformer(
            [
                ("numbers", StandardScaler(), FEATURES),
                ("plans", OneHotEncoder(), ["plan"]),
            ]
        ),
        LogisticRegression(max_iter=1000),
    )
    pipeline.fit(train[columns], train["y"])
    training = data.add(train, "plans", project=project)
    loaded = register(pipeline, "plans", training_data=training, target="y", project=project).load(
        project=project
    )
    rows = train[columns].head(25)

    explanation = explain(loaded, rows, project=project)

    assert explanation.transformed_by == ["columntransformer"]
    assert explanation.features == [
        "numbers__signal",
        "numbers__noise",
        "numbers__count",
        "plans__plan_basic",
        "plans__plan_pro",
    ]
    assert "most frequent level" in explanation.reference
    assert "through the steps columntransformer" in explanation.reference
    assert_additive(explanation, pipeline.decision_function(rows))
    own = global_importance(loaded, project=project)
    assert own.method == "coef" and own.transformed_by == ["columntransformer"]
    assert set(own.importance) == set(explanation.features)


def test_input_that_breaks_the_signature_is_refused(project: Project) -> None:
    _, loaded, rows = registered(project, GradientBoostingClassifier(n_estimators=10))
    record = {name: rows[name].iloc[0].item() for name in FEATURES}
    del record["count"]

    with pytest.raises(SignatureError, match="lacks the column"):
        explain(loaded, [record])
    with pytest.raises(SignatureError, match="'noise' expects numbers"):
        explain(loaded, [{**record, "count": 3, "noise": "loud"}])


class Threshold:
    """A pyfunc model: nothing SHAP can look inside."""

    def __init__(self, cut: float = 50.0) -> None:
        self.cut = cut

    def load(self, folder: Path) -> None:
        pass

    def predict(self, frame: pd.DataFrame) -> Any:
        return (frame["signal"] > self.cut).to_numpy()


def test_pyfunc_and_onnx_models_are_refused_saying_what_is_supported(project: Project) -> None:
    train = frame(200, 1)
    pyfunc = register(Threshold(), "rule", training_data=train, target="y", project=project)
    with pytest.raises(ExplanationUnavailable, match=r"Threshold, which has no SHAP explainer"):
        explain(pyfunc.load(project=project), train[FEATURES].head(2))

    pytest.importorskip("skl2onnx")
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    fitted = LogisticRegression(max_iter=1000).fit(train[FEATURES].to_numpy(), train["y"])
    proto = convert_sklearn(fitted, initial_types=[("input", FloatTensorType([None, 3]))])
    onnx_version = register(proto, "graph", project=project)
    assert onnx_version.flavor == "onnx"
    with pytest.raises(ExplanationUnavailable, match=r"ONNX model.*tree models") as caught:
        Explainer(onnx_version.load(project=project))
    assert "Register the original model" in str(caught.value)


def test_a_version_served_as_onnx_is_explained_through_its_original(project: Project) -> None:
    pytest.importorskip("skl2onnx")
    from shipyard.registry.compile import compile_onnx

    model, loaded, rows = registered(project, LogisticRegression(max_iter=1000))
    compile_onnx("m@1", frame(100, 3), project=project)
    served = get("m@1", project=project).load(project=project)  # now with its ONNX sibling
    assert served.flavor.name == "onnx"

    explanation = explain(served, rows, project=project)

    assert_additive(explanation, model.decision_function(rows))
    assert explanation.contributions == explain(loaded, rows, project=project).contributions


def test_an_explainer_is_built_once_and_reused(project: Project) -> None:
    _, loaded, rows = registered(project, GradientBoostingClassifier(n_estimators=10))
    explainer = Explainer(loaded)

    first = explainer.explain(rows.head(1))
    built = explainer._shap_explainer
    second = explainer.explain(rows.head(1))

    assert explainer._shap_explainer is built and first == second
    with pytest.raises(InvalidInput, match="no rows"):
        explainer.explain(rows.head(0))


def test_without_shap_the_error_says_how_to_install_it(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, loaded, rows = registered(project, GradientBoostingClassifier(n_estimators=10))
    monkeypatch.setattr(explain_module, "_shap_module", None)
    monkeypatch.setitem(sys.modules, "shap", None)  # what an environment without it gives

    with pytest.raises(ExplanationUnavailable, match=r"pip install 'shipyard\[explain\]'"):
        explain(loaded, rows)
    assert global_importance(loaded).method == "impurity"  # the model's own: no shap needed


def test_importing_the_module_does_not_import_shap() -> None:
    code = "import sys, shipyard.serving.explain; print('shap' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
