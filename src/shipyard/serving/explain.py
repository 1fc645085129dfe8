"""Explanations: how much each feature moved one prediction (SHAP), and which matter overall.

>>> loaded = shipyard.registry.get("churn@champion").load()
>>> explanation = explain(loaded, [{"age": 41, "income": 52000.0, "tenure": 12}])
>>> explanation.output, explanation.base_value         # ('log-odds of class True', -0.41)
>>> explanation.contributions[0]                        # {'age': 0.83, 'tenure': -0.12, ...}
>>> global_importance(loaded).importance                # {'age': 0.61, ...}, largest first

For every row, `base_value + sum(contributions)` is the model's raw output for that row, in
the space `output` names: the prediction of a regressor; for a classifier the log-odds of
one class (gradient boosting, XGBoost, LightGBM, logistic regression: their own margin), the
probability of one class (scikit-learn forests and trees, which average probabilities), a
softmax logit (multiclass boosting and logistic regression) or a linear classifier's
decision function. A binary classifier explains its positive class (the second label) unless
`output_class` names the other one; a multiclass model needs `output_class`.

Tree models (scikit-learn trees, forests and gradient boosting, XGBoost, LightGBM) go
through `shap.TreeExplainer`, linear models (scikit-learn's `linear_model`, `LinearSVC`,
`LinearSVR`) through `shap.LinearExplainer`, alone or as the last step of a `Pipeline`. A
pipeline's earlier steps transform the input first and the contributions are those of the
transformed features (named by `get_feature_names_out` where the steps have it); the
explanation lists those steps in `transformed_by`. ONNX, PyTorch and pyfunc models are
refused with `ExplanationUnavailable`; a version compiled to ONNX is explained through its
original model, which the compilation checked to predict the same.

What the contributions are measured against (`reference`):

- tree models: the training data as the trees recorded it (each node's share of the training
  rows), or, with `background=`, up to BACKGROUND_ROWS of those rows (interventional SHAP);
- linear models: the mean of `background=`; else the training data's profile (the dataset
  version the model was registered with: numeric means, share of true, most frequent level),
  run through the pipeline's earlier steps; else the midpoints of the signature's training
  ranges, said so; else `ExplanationUnavailable` asks for a background.

`shap` is an optional extra (`pip install 'shipyard[explain]'`) and slow to import: it is
imported on the first explanation, never with this module. The global importance of a model
without data needs no shap: feature_importances_/gain for trees, |coef| for linear models.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shipyard.errors import ConfigError, InvalidInput, NotFound, ShipyardError
from shipyard.registry.flavors.classes import class_names, comes_from, dotted_name
from shipyard.registry.flavors.tabular import features as model_columns

if TYPE_CHECKING:
    from shipyard.data.profile import ColumnProfile
    from shipyard.project import Project
    from shipyard.registry.loaded import LoadedModel
    from shipyard.registry.signature import ColumnSpec

Array = np.ndarray[Any, Any]

TREE = "tree"
LINEAR = "linear"
# Interventional tree SHAP costs time linear in the background's rows: a fixed-seed sample.
BACKGROUND_ROWS = 100
INSTALL_HINT = "pip install 'shipyard[explain]'"
SUPPORTED = (
    "tree models (scikit-learn trees, forests and gradient boosting, XGBoost, LightGBM) and "
    "linear models (scikit-learn linear_model, LinearSVC, LinearSVR), alone or as the last "
    "step of a scikit-learn Pipeline"
)

_BOOSTED_ROOTS = {
    "xgboost.sklearn.XGBModel",
    "xgboost.core.Booster",
    "lightgbm.sklearn.LGBMModel",
    "lightgbm.basic.Booster",
}
_PIPELINE = "sklearn.pipeline.Pipeline"
_LINEAR_SVM = ("LinearSVC", "LinearSVR")
_GLMS = ("PoissonRegressor", "GammaRegressor", "TweedieRegressor")
# Objectives whose raw output is the prediction itself (an identity link).
_XGBOOST_IDENTITY = {"reg:squarederror", "reg:linear", "reg:absoluteerror", "reg:quantileerror"}
_LIGHTGBM_IDENTITY = {"regression", "regression_l1", "huber", "fair", "quantile", "mape"}
_IDENTITY_OBJECTIVES = _XGBOOST_IDENTITY | _LIGHTGBM_IDENTITY | {"reg:pseudohubererror"}
_LIGHTGBM_NOTICE = "LightGBM binary classifier with TreeExplainer shap values output has changed"
_OUTPUT_WORDS = {
    "probability": "probability",
    "log-odds": "log-odds",
    "logit": "raw score (softmax logit)",
    "margin": "decision function (margin)",
}


class ExplanationUnavailable(ShipyardError):
    """This model cannot be explained here (its kind, a missing extra or a missing background)."""


@dataclass(frozen=True)
class Explanation:
    """Per-row feature contributions: `base_value + sum(contributions[i].values())` is row i's
    output, in the space `output` describes (e.g. "log-odds of class 1")."""

    model: str  # the version explained, "churn@3"
    method: str  # "tree" or "linear"
    output: str  # what base_value and the contributions add up to
    output_class: Any  # the class explained; None for a regressor
    base_value: float
    features: list[str]
    contributions: list[dict[str, float]]  # one per input row, in `features` order
    reference: str  # what the contributions are measured against
    transformed_by: list[str] = field(default_factory=list)  # pipeline steps applied first

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "method": self.method,
            "output": self.output,
            "output_class": _plain(self.output_class),
            "base_value": float(self.base_value),
            "features": list(self.features),
            "contributions": [
                {name: float(value) for name, value in row.items()} for row in self.contributions
            ],
            "reference": self.reference,
            "transformed_by": list(self.transformed_by),
        }


@dataclass(frozen=True)
class GlobalImportance:
    """How much each feature matters to a version overall, largest first.

    `method`: "mean_abs_shap" (mean |contribution| over the data given), "impurity"
    (scikit-learn's feature_importances_), "gain" (XGBoost/LightGBM total split gain),
    "coef_std" (|coefficient| x the feature's training standard deviation) or "coef"
    (|coefficient|). `detail` says it in words.
    """

    model: str
    method: str
    detail: str
    importance: dict[str, float]
    transformed_by: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "method": self.method,
            "detail": self.detail,
            "importance": {name: float(value) for name, value in self.importance.items()},
            "transformed_by": list(self.transformed_by),
        }


def explain(
    loaded: LoadedModel,
    data: Any,
    *,
    output_class: Any = None,
    background: Any = None,
    project: Project | None = None,
) -> Explanation:
    """Explain the model's output for each row of `data` (anything `loaded.check` takes).

    The data is checked against the signature first (a `SignatureError` names what is
    wrong). `background`: rows the contributions are measured against (see the module
    docstring for the default). `project`: where to find the training data's profile and,
    for a version loaded as ONNX, its original model (default: the current project).
    To explain many requests, build one `Explainer` and keep it: SHAP's setup costs more
    than one row's explanation.
    """
    checked = loaded.check(data)
    explainer = Explainer(loaded, background=background, project=project)
    return explainer.explain_checked(checked, output_class=output_class)


def global_importance(
    loaded: LoadedModel,
    data: Any | None = None,
    *,
    output_class: Any = None,
    background: Any = None,
    project: Project | None = None,
) -> GlobalImportance:
    """Each feature's importance to this version, largest first.

    With `data`: the mean |SHAP contribution| over its rows. Without: the model's own
    importance (tree models' feature_importances_ or split gain; for linear models |coef|
    times the feature's standard deviation in the training data when the version's training
    dataset is known and the features are the model's inputs, else |coef|).
    """
    explainer = Explainer(loaded, background=background, project=project)
    return explainer.global_importance(data, output_class=output_class)


class Explainer:
    """Explanations for one loaded version; build it once and call it per request.

    >>> explainer = Explainer(loaded)       # refuses a kind of model it cannot explain
    >>> explainer.explain(rows).to_json()

    The SHAP explainer and the reference are built on first use and kept; calls may come
    from several threads.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        background: Any = None,
        project: Project | None = None,
    ) -> None:
        self.served = loaded  # checks requests (and counts their out-of-range values)
        self.loaded = _original(loaded, project)  # what is explained: never its ONNX form
        self.ref = loaded.version.ref
        self._project = project
        self._background = background
        self._steps, self.estimator = _unwrap(self.loaded)
        self.kind = _kind(self.estimator, self.ref)
        self.classes = _classes(self.loaded, self.estimator)
        self.space = _output_space(self.estimator, self.kind, self.classes, self.loaded.meta)
        self._lock = threading.Lock()
        self._shap_explainer: Any = None
        self._reference = ""

    @property
    def transformed_by(self) -> list[str]:
        return [name for name, _ in self._steps]

    def explain(self, data: Any, *, output_class: Any = None) -> Explanation:
        """Explain each row of `data`, checked against the signature first."""
        return self.explain_checked(self.served.check(data), output_class=output_class)

    def explain_checked(self, checked: Any, *, output_class: Any = None) -> Explanation:
        """Explain input already checked by `loaded.check` (the model's input frame)."""
        index, label = self._output(output_class)
        matrix, names = self._prepared(checked)
        if len(matrix) == 0:
            raise InvalidInput("nothing to explain: the input has no rows; send at least one")
        values, base = self._values(matrix, names, index)
        return Explanation(
            model=self.ref,
            method=self.kind,
            output=self._output_text(label),
            output_class=label,
            base_value=base,
            features=names,
            contributions=[dict(zip(names, row, strict=True)) for row in values.tolist()],
            reference=self._reference,
            transformed_by=self.transformed_by,
        )

    def global_importance(
        self, data: Any | None = None, *, output_class: Any = None
    ) -> GlobalImportance:
        """Mean |contribution| over `data`; the model's own importance without it."""
        if data is None:
            return self._native_importance()
        index, label = self._output(output_class)
        matrix, names = self._prepared(_checked_quietly(self.loaded, data))
        if len(matrix) == 0:
            raise InvalidInput("global importance needs at least one row of data; got none")
        values, _ = self._values(matrix, names, index)
        mean = np.abs(values).mean(axis=0)
        return GlobalImportance(
            model=self.ref,
            method="mean_abs_shap",
            detail=(
                f"mean |SHAP contribution| to the {self._output_text(label)} over "
                f"{len(values)} rows ({self.kind}; reference: {self._reference})"
            ),
            importance=_ranked(names, mean),
            transformed_by=self.transformed_by,
        )

    # -- the model's input -------------------------------------------------------------------

    def _prepared(self, checked: Any) -> tuple[Any, list[str]]:
        """What the explained estimator reads, and its feature names."""
        model_input = _model_input(self.loaded, checked)
        names = _input_names(self.loaded, model_input)
        if not self._steps:
            return model_input, names
        matrix = _transform(self._steps, model_input)
        names = self._step_names(names)
        width = int(matrix.shape[1])
        if len(names) != width:
            names = [f"x{position}" for position in range(width)]
        return matrix, names

    def _step_names(self, names: list[str]) -> list[str]:
        current: Any = np.asarray(names, dtype=object)
        try:
            for _, step in self._steps:
                current = step.get_feature_names_out(current)
        except (AttributeError, ValueError, TypeError):
            return []  # filled with x0, x1, ... once the width is known
        return [str(name) for name in current]

    # -- SHAP ---------------------------------------------------------------------------------

    def _values(self, matrix: Any, names: list[str], index: int | None) -> tuple[Array, float]:
        """Contributions (rows x features) and the base value for the class at `index` (None:
        the one output of a regressor)."""
        explainer = self._explainer()
        if self.kind == LINEAR:
            matrix = _numeric(matrix, self.ref, names)
        if comes_from(self.estimator, "lightgbm"):
            # shap warns on every LightGBM binary explanation that its output format changed;
            # the output is read by its shape here, so the warning tells users nothing. (Set
            # per call: a test runner or a server may reset the filters; the same filter is
            # replaced, not added again.)
            warnings.filterwarnings("ignore", message=_LIGHTGBM_NOTICE, category=UserWarning)
        raw = explainer.shap_values(matrix)
        values = np.asarray(raw, dtype=np.float64)
        if values.ndim == 2:
            values = values[:, :, np.newaxis]
        base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64))
        outputs = values.shape[2]
        classes = len(self.classes or ())
        if len(base) != outputs:
            raise ExplanationUnavailable(
                f"SHAP gave {len(base)} base values for {outputs} outputs of {self.ref}"
            )
        if index is None and outputs == 1:
            return values[:, :, 0], float(base[0])
        if index is not None and outputs == classes:
            return values[:, :, index], float(base[index])
        if index is not None and outputs == 1 and classes == 2 and self.space != "probability":
            # One margin for both classes: class 0's log-odds are class 1's, negated.
            sign = 1.0 if index == 1 else -1.0
            return sign * values[:, :, 0], sign * float(base[0])
        raise ExplanationUnavailable(
            f"SHAP gave {outputs} output(s) for {self.ref}, which has "
            f"{classes or 'no'} classes; explanations cannot tell which is which"
        )

    def _explainer(self) -> Any:
        with self._lock:
            if self._shap_explainer is None:
                shap = _shap()
                if self.kind == TREE:
                    self._shap_explainer = self._tree_explainer(shap)
                else:
                    self._shap_explainer = self._linear_explainer(shap)
            return self._shap_explainer

    def _tree_explainer(self, shap: Any) -> Any:
        data = None
        if self._background is not None:
            matrix, _ = self._prepared(_checked_quietly(self.loaded, self._background))
            data = _sample(matrix, BACKGROUND_ROWS)
            self._reference = (
                f"{len(data)} background rows (interventional: each feature set to the "
                "background's values)"
            )
        else:
            self._reference = (
                "the training data, as the trees recorded it (each node's share of the "
                "training rows)"
            )
        try:
            return shap.TreeExplainer(self.estimator, data=data)
        except Exception as error:  # shap's own error types differ by version
            raise ExplanationUnavailable(
                f"SHAP cannot explain {self.ref} ({dotted_name(self.estimator)}): "
                f"{str(error).rstrip('.!')}. "
                f"Supported: {SUPPORTED}"
            ) from error

    def _linear_explainer(self, shap: Any) -> Any:
        mean, self._reference = self._linear_reference()
        covariance = np.zeros((len(mean), len(mean)))  # unused: interventional SHAP
        return shap.LinearExplainer(self.estimator, (mean, covariance))

    def _linear_reference(self) -> tuple[Array, str]:
        """The point a linear model's contributions are measured from, and how it was found."""
        if self._background is not None:
            matrix, names = self._prepared(_checked_quietly(self.loaded, self._background))
            numbers = _numeric(matrix, self.ref, names)
            if len(numbers) == 0:
                raise InvalidInput("background has no rows; pass at least one row")
            return numbers.mean(axis=0), f"mean of {len(numbers)} background rows"
        found = _training_profile(self.loaded, self._project)
        row, described = None, ""
        if found is not None:
            ref, profile = found
            row = _profile_row(self.loaded, profile)
            if row is not None:
                kinds = "means, share of true, most frequent level"
                described = f"training data {ref}: " + (
                    kinds if _has_levels(self.loaded) else "column means"
                )
        if row is None:
            row = _range_row(self.loaded)
            described = (
                "the midpoints of the signature's training ranges (no profile of the "
                "training data is recorded with this version; pass background= for a better "
                "reference)"
            )
        if row is None:
            raise ExplanationUnavailable(
                f"a linear model's contributions are measured from a reference point, and "
                f"{self.ref} has no training data profile or numeric ranges to take it from: "
                "pass background= (a DataFrame of typical rows), or register the model with "
                "training_data=DATASET_VERSION"
            )
        try:
            matrix, names = self._prepared(row)
        except (InvalidInput, ValueError, TypeError) as error:
            raise ExplanationUnavailable(
                f"the reference row ({described}) does not go through {self.ref}'s pipeline "
                f"({error}); pass background= (a DataFrame of typical rows)"
            ) from error
        if self._steps:
            described += f", through the steps {', '.join(self.transformed_by)}"
        return _numeric(matrix, self.ref, names)[0], described

    # -- outputs ------------------------------------------------------------------------------

    def _output(self, output_class: Any) -> tuple[int | None, Any]:
        """The index of the class to explain and its label (None, None for a regressor)."""
        if self.classes is None:
            if output_class is not None:
                raise InvalidInput(
                    f"{self.ref} is not a classifier; explain it without output_class "
                    f"(got {output_class!r})"
                )
            return None, None
        if output_class is None:
            if len(self.classes) != 2:
                raise InvalidInput(
                    f"{self.ref} has {len(self.classes)} classes: say which one to explain with "
                    f"output_class (one of {', '.join(map(repr, self.classes))})"
                )
            index = 1
        else:
            index = _class_index(self.classes, output_class, self.ref)
        return index, self.classes[index]

    def _output_text(self, label: Any) -> str:
        if self.space == "prediction":
            return "prediction"
        if self.space == "raw":
            return "raw score (the margin, before the objective's link function)"
        return f"{_OUTPUT_WORDS[self.space]} of class {_plain(label)!r}"

    # -- the model's own importance ------------------------------------------------------------

    def _native_importance(self) -> GlobalImportance:
        if self.kind == TREE:
            values, method, detail = _tree_importance(self.estimator, self.ref)
        else:
            values, method, detail = self._coefficient_importance()
        names = self._native_names(len(values))
        return GlobalImportance(
            model=self.ref,
            method=method,
            detail=detail,
            importance=_ranked(names, values),
            transformed_by=self.transformed_by,
        )

    def _coefficient_importance(self) -> tuple[Array, str, str]:
        coef = np.abs(np.atleast_2d(np.asarray(self.estimator.coef_, dtype=np.float64)))
        magnitude = coef.mean(axis=0)  # one row per class (or output): their mean
        over = "classes" if self.classes else "outputs"
        many = f" (mean over the {over})" if len(coef) > 1 else ""
        if self._steps:
            return (
                magnitude,
                "coef",
                (
                    f"|coefficient|{many} of the features after the steps "
                    f"{', '.join(self.transformed_by)}; their scales are whatever those steps give"
                ),
            )
        found = _training_profile(self.loaded, self._project)
        if found is not None:
            ref, profile = found
            std = _profile_std(self.loaded, profile)
            if std is not None and len(std) == len(magnitude):
                return (
                    magnitude * std,
                    "coef_std",
                    (
                        f"|coefficient|{many} x the feature's standard deviation in the training "
                        f"data {ref}: how far the output moves for a typical change of the feature"
                    ),
                )
        return (
            magnitude,
            "coef",
            (
                f"|coefficient|{many}: no training data profile is recorded with this version, so "
                "the features' scales are not accounted for; pass data= for mean |SHAP|"
            ),
        )

    def _native_names(self, width: int) -> list[str]:
        names = _declared_names(self.loaded)
        if names is not None and self._steps:
            names = self._step_names(names) or None
        if names is None or len(names) != width:
            return [f"x{index}" for index in range(width)]
        return names


# -- the model and its structure --------------------------------------------------------------


def _original(loaded: LoadedModel, project: Project | None) -> LoadedModel:
    """The model to explain: a version served as ONNX is explained through its original."""
    if loaded.flavor.name != "onnx":
        return loaded
    version = loaded.version
    if version.flavor == "onnx":
        raise ExplanationUnavailable(
            f"{version.ref} is an ONNX model, which SHAP cannot look inside; explanations "
            f"cover {SUPPORTED}. Register the original model to explain it"
        )
    from shipyard.project import current
    from shipyard.registry.loaded import load_version

    return load_version(version, project or current(), range_policy=loaded.range_policy, onnx=False)


def _unwrap(loaded: LoadedModel) -> tuple[list[tuple[str, Any]], Any]:
    """A Pipeline's transforming steps (nested pipelines flattened) and its last estimator."""
    model, steps = loaded.model, []
    while _PIPELINE in class_names(model):
        *earlier, (name, last) = model.steps
        steps += [(str(step_name), step) for step_name, step in earlier if _active(step)]
        if not _active(last):
            raise ExplanationUnavailable(
                f"{loaded.version.ref}'s pipeline ends in {last!r} (step {name!r}), not a "
                f"model; explanations cover {SUPPORTED}"
            )
        model = last
    return steps, model


def _active(step: Any) -> bool:
    return step is not None and not (isinstance(step, str) and step == "passthrough")


def _kind(estimator: Any, ref: str) -> str:
    if _BOOSTED_ROOTS & class_names(estimator):
        return TREE
    if comes_from(estimator, "sklearn") and _predicts(estimator):
        module, name = type(estimator).__module__, type(estimator).__name__
        if module.startswith(("sklearn.tree", "sklearn.ensemble")):
            return TREE
        linear = module.startswith("sklearn.linear_model") or name in _LINEAR_SVM
        if linear and hasattr(estimator, "coef_") and hasattr(estimator, "intercept_"):
            return LINEAR
    raise ExplanationUnavailable(
        f"{ref} is a {dotted_name(estimator)}, which has no SHAP explainer here; explanations "
        f"cover {SUPPORTED}"
    )


def _predicts(estimator: Any) -> bool:
    """A classifier or a regressor (not an outlier detector, whose SHAP output means else)."""
    from sklearn.base import is_classifier, is_regressor  # type: ignore[import-untyped]

    return bool(is_classifier(estimator) or is_regressor(estimator))


def _classes(loaded: LoadedModel, estimator: Any) -> list[Any] | None:
    meta = loaded.meta
    if meta.get("task") != "classifier":
        return None
    classes = meta.get("classes")
    if classes is None and hasattr(estimator, "classes_"):
        classes = np.asarray(estimator.classes_).tolist()
    return list(classes) if classes is not None else None


def _output_space(
    estimator: Any, kind: str, classes: list[Any] | None, meta: dict[str, Any]
) -> str:
    """What SHAP's raw output is: prediction, raw, probability, log-odds, logit or margin."""
    name = type(estimator).__name__
    sklearn_model = comes_from(estimator, "sklearn") and not _BOOSTED_ROOTS & class_names(estimator)
    if classes is None:
        if sklearn_model:
            glm = name in _GLMS or getattr(estimator, "loss", None) in ("poisson", "gamma")
            return "raw" if glm else "prediction"
        return "prediction" if _objective(estimator, meta) in _IDENTITY_OBJECTIVES else "raw"
    binary = len(classes) == 2
    if kind == TREE:
        if sklearn_model and "Boosting" not in name:
            return "probability"  # forests and trees average class probabilities
        return "log-odds" if binary else "logit"
    if name.startswith("LogisticRegression"):
        return "log-odds" if binary else "logit"
    return "margin"


def _objective(estimator: Any, meta: dict[str, Any]) -> str | None:
    if hasattr(estimator, "get_xgb_params"):
        objective = estimator.get_xgb_params().get("objective")
        return str(objective) if isinstance(objective, str) else meta.get("objective")
    given = getattr(estimator, "objective_", None) or getattr(estimator, "objective", None)
    if isinstance(given, str):
        return given
    objective = meta.get("objective")
    return str(objective) if objective is not None else None


def _class_index(classes: list[Any], wanted: Any, ref: str) -> int:
    for index, label in enumerate(classes):
        if label == wanted and type(label) is type(wanted):
            return index
    for index, label in enumerate(classes):
        if label == wanted:  # 1 for True, 1.0 for 1
            return index
    # Labels come back from JSON as text: "1" or "true" names the class 1 or True.
    text = str(wanted).lower()
    for index, label in enumerate(classes):
        if str(label).lower() == text:
            return index
    raise InvalidInput(
        f"{ref} has no class {wanted!r}; its classes are {', '.join(map(repr, classes))}"
    )


# -- inputs ----------------------------------------------------------------------------------


def _checked_quietly(loaded: LoadedModel, data: Any) -> Any:
    """`data` checked like a request, without counting its out-of-range values as traffic."""
    if loaded.signature is None:
        return data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    from shipyard.registry.signature import enforce

    return enforce(loaded.signature, data).model_input


def _model_input(loaded: LoadedModel, checked: Any) -> Any:
    if isinstance(checked, pd.DataFrame):
        return model_columns(checked, loaded.meta.get("feature_names"))
    if isinstance(checked, Mapping):
        raise ExplanationUnavailable(
            f"{loaded.version.ref} takes several named tensors; explanations cover models "
            "that take one table"
        )
    array = np.asarray(checked)
    if array.ndim != 2:
        raise ExplanationUnavailable(
            f"{loaded.version.ref} takes a tensor of shape {array.shape[1:]} per row; "
            "explanations cover models that take one table (rows x features)"
        )
    return array


def _input_names(loaded: LoadedModel, model_input: Any) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        return [str(name) for name in model_input.columns]
    width = int(model_input.shape[1])
    names = _declared_names(loaded)
    if names is not None and len(names) == width:
        return names
    return [f"x{index}" for index in range(width)]


def _declared_names(loaded: LoadedModel) -> list[str] | None:
    names = loaded.meta.get("feature_names")
    if names:
        return [str(name) for name in names]
    signature = loaded.signature
    if signature is not None and signature.kind == "table":
        return signature.input_names
    return None


def _transform(steps: list[tuple[str, Any]], matrix: Any) -> Any:
    for name, step in steps:
        try:
            matrix = step.transform(matrix)
        except ValueError as error:
            raise InvalidInput(f"the pipeline step {name!r} refused the input: {error}") from None
    if hasattr(matrix, "toarray"):  # a sparse matrix (one-hot encoding)
        matrix = matrix.toarray()
    return matrix


def _numeric(matrix: Any, ref: str, names: list[str] | None = None) -> Array:
    try:
        numbers = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise ExplanationUnavailable(
            f"{ref}'s linear model reads values that are not numbers; explanations need "
            "numeric features at the linear step"
        ) from None
    if not np.isfinite(numbers).all():
        row, column = (int(i) for i in np.argwhere(~np.isfinite(numbers))[0])
        feature = names[column] if names is not None and column < len(names) else column
        raise InvalidInput(
            f"row {row} has a missing or infinite value in feature {feature!r}, and {ref}'s "
            "linear model cannot take one; send a number"
        )
    return numbers


def _sample(matrix: Any, rows: int) -> Any:
    if len(matrix) <= rows:
        return matrix
    chosen = np.sort(np.random.default_rng(0).choice(len(matrix), rows, replace=False))
    return matrix.iloc[chosen] if isinstance(matrix, pd.DataFrame) else matrix[chosen]


# -- the training data's profile --------------------------------------------------------------


def _training_profile(
    loaded: LoadedModel, project: Project | None
) -> tuple[str, dict[str, ColumnProfile]] | None:
    """The profile of the dataset version the model was trained on, when one is recorded.

    The signature was inferred from the training data's profile, so the version whose
    numeric ranges match the signature's is it; else the first that has every input column.
    """
    signature = loaded.signature
    if signature is None or signature.kind != "table" or not loaded.version.datasets:
        return None
    from shipyard.data.versions import get as get_dataset
    from shipyard.project import current

    try:
        project = project or current()
    except ConfigError:
        return None
    candidates = []
    for ref in loaded.version.datasets:
        try:
            dataset = get_dataset(ref, project=project)
        except NotFound:
            continue
        if not set(signature.input_names) <= set(dataset.schema.names):
            continue
        profile = dataset.profile.columns
        if all(_same_range(profile[spec.name], spec) for spec in signature.inputs):
            return ref, profile
        candidates.append((ref, profile))
    return candidates[0] if candidates else None


def _same_range(stats: ColumnProfile, spec: ColumnSpec) -> bool:
    from shipyard.data.profile import NumericProfile

    if spec.minimum is None and spec.maximum is None:
        return True
    return isinstance(stats, NumericProfile) and (stats.minimum, stats.maximum) == (
        spec.minimum,
        spec.maximum,
    )


def _profile_row(loaded: LoadedModel, profile: dict[str, ColumnProfile]) -> Any:
    """One row of typical values from the profile (a frame in signature order), or None."""
    from shipyard.data.profile import CategoricalProfile, NumericProfile
    from shipyard.data.schema import LogicalType

    assert loaded.signature is not None
    row: dict[str, Any] = {}
    for spec in loaded.signature.inputs:
        stats = profile[spec.name]
        if isinstance(stats, NumericProfile) and stats.finite_count:
            row[spec.name] = [stats.mean]
        elif isinstance(stats, CategoricalProfile) and stats.frequencies:
            if spec.type is LogicalType.BOOLEAN:
                total = sum(stats.frequencies.values())
                row[spec.name] = [stats.frequencies.get("true", 0) / total]
            else:
                level = stats.top(1)[0][0]
                row[spec.name] = (
                    pd.Categorical([level], categories=list(spec.levels or [level]))
                    if spec.dtype == "category"
                    else [level]
                )
        else:
            return None
    return pd.DataFrame(row)


def _has_levels(loaded: LoadedModel) -> bool:
    from shipyard.data.schema import LogicalType

    assert loaded.signature is not None
    return any(
        spec.type not in (LogicalType.INTEGER, LogicalType.FLOAT)
        for spec in loaded.signature.inputs
    )


def _range_row(loaded: LoadedModel) -> Any:
    """One row at the middle of each numeric training range, or None when one is missing."""
    signature = loaded.signature
    if signature is None or signature.kind != "table":
        return None
    row: dict[str, list[float]] = {}
    for spec in signature.inputs:
        if spec.minimum is None or spec.maximum is None:
            return None
        row[spec.name] = [(spec.minimum + spec.maximum) / 2]
    return pd.DataFrame(row)


def _profile_std(loaded: LoadedModel, profile: dict[str, ColumnProfile]) -> Array | None:
    """Each model input's standard deviation in training, in the model's column order."""
    from shipyard.data.profile import NumericProfile

    names = _declared_names(loaded) or []
    stds = []
    for name in names:
        stats = profile.get(name)
        if not isinstance(stats, NumericProfile) or stats.std is None:
            return None
        stds.append(stats.std)
    return np.asarray(stds, dtype=np.float64) if stds else None


# -- tree models' own importance --------------------------------------------------------------


def _tree_importance(estimator: Any, ref: str) -> tuple[Array, str, str]:
    names = class_names(estimator)
    if "lightgbm.basic.Booster" in names or "lightgbm.sklearn.LGBMModel" in names:
        booster = estimator if "lightgbm.basic.Booster" in names else estimator.booster_
        gains = np.asarray(booster.feature_importance(importance_type="gain"), np.float64)
        return _shares(gains), "gain", _GAIN_DETAIL
    if "xgboost.core.Booster" in names or "xgboost.sklearn.XGBModel" in names:
        booster = estimator if "xgboost.core.Booster" in names else estimator.get_booster()
        scores = booster.get_score(importance_type="total_gain")
        feature_names = booster.feature_names or [
            f"f{index}" for index in range(booster.num_features())
        ]
        gains = np.asarray([scores.get(name, 0.0) for name in feature_names], np.float64)
        return _shares(gains), "gain", _GAIN_DETAIL
    importances = getattr(estimator, "feature_importances_", None)
    if importances is None:
        raise ExplanationUnavailable(
            f"{ref}'s {type(estimator).__name__} has no feature_importances_; pass data= to "
            "rank the features by mean |SHAP contribution| over those rows"
        )
    return (
        np.asarray(importances, np.float64),
        "impurity",
        "scikit-learn's feature_importances_: the mean impurity decrease of each feature's "
        "splits, as shares summing to 1",
    )


_GAIN_DETAIL = "total split gain of each feature, as shares summing to 1"


def _shares(values: Array) -> Array:
    total = values.sum()
    return values / total if total > 0 else values


# -- small helpers ----------------------------------------------------------------------------


def _ranked(names: list[str], values: Array) -> dict[str, float]:
    if not names or len(names) != len(values):
        names = [f"x{index}" for index in range(len(values))]
    pairs = sorted(zip(names, values.tolist(), strict=True), key=lambda pair: -pair[1])
    return {name: float(value) for name, value in pairs}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


_shap_module: Any = None


def _shap() -> Any:
    """The shap module, imported on first use (seconds), or a clear error saying how to add it."""
    global _shap_module
    if _shap_module is None:
        try:
            import shap  # type: ignore[import-untyped]
        except ImportError as error:
            raise ExplanationUnavailable(
                f"explanations need the optional `shap` package ({error}): {INSTALL_HINT}"
            ) from None
        _shap_module = shap
    return _shap_module


__all__ = [
    "BACKGROUND_ROWS",
    "Explainer",
    "Explanation",
    "ExplanationUnavailable",
    "GlobalImportance",
    "explain",
    "global_importance",
]
