"""The metrics a gate may name: scikit-learn's, each with its task, direction and needs.

Classifier metrics read predicted labels (`predict`) or, for `auc` and `log_loss`, the predicted
probabilities (`predict_proba`; for a binary model the positive class is the last column).
Regressor metrics read the predictions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

Task = Literal["classifier", "regressor"]
Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Predictions:
    """What one model said about a frame: labels or values, and class probabilities."""

    task: Task
    values: Array
    proba: Array | None = None
    classes: Array | None = None

    def take(self, mask: Array) -> Predictions:
        """The predictions for the rows where `mask` is True (a slice)."""
        proba = None if self.proba is None else self.proba[mask]
        return Predictions(self.task, self.values[mask], proba, self.classes)


@dataclass(frozen=True)
class Metric:
    """A named metric: which models it suits, whether higher is better, what it reads."""

    name: str
    task: Task
    higher_is_better: bool
    needs_proba: bool
    compute: Callable[[Array, Predictions], float]

    def better(self, value: float, than: float, by: float = 0.0) -> bool:
        """Whether `value` is at least `by` better than `than`, in this metric's direction."""
        return value >= than + by if self.higher_is_better else value <= than - by

    def gap(self, overall: float, value: float) -> float:
        """How much worse `value` is than `overall` (negative when it is better)."""
        return overall - value if self.higher_is_better else value - overall


def _sk() -> Any:
    """scikit-learn's metrics module, imported on first use (it ships no type stubs)."""
    import importlib

    return importlib.import_module("sklearn.metrics")


def _average(truth: Array, predictions: Predictions) -> dict[str, Any]:
    """Binary: the positive (last) class; more classes: the unweighted mean over classes."""
    classes = _classes(truth, predictions)
    if len(classes) <= 2:
        return {"average": "binary", "pos_label": classes[-1], "zero_division": 0}
    return {"average": "macro", "zero_division": 0}


def _classes(truth: Array, predictions: Predictions) -> Array:
    if predictions.classes is not None:
        return predictions.classes
    return np.unique(np.concatenate([truth, predictions.values]))


def _accuracy(truth: Array, p: Predictions) -> float:
    return float(_sk().accuracy_score(truth, p.values))


def _balanced_accuracy(truth: Array, p: Predictions) -> float:
    return float(_sk().balanced_accuracy_score(truth, p.values))


def _precision(truth: Array, p: Predictions) -> float:
    return float(_sk().precision_score(truth, p.values, **_average(truth, p)))


def _recall(truth: Array, p: Predictions) -> float:
    return float(_sk().recall_score(truth, p.values, **_average(truth, p)))


def _f1(truth: Array, p: Predictions) -> float:
    return float(_sk().f1_score(truth, p.values, **_average(truth, p)))


def _auc(truth: Array, p: Predictions) -> float:
    assert p.proba is not None
    classes = _classes(truth, p)
    if len(np.unique(truth)) < 2:
        return float("nan")  # undefined with one class present: reported, never judged
    if p.proba.shape[1] == 2:
        return float(_sk().roc_auc_score(truth == classes[-1], p.proba[:, -1]))
    return float(_sk().roc_auc_score(truth, p.proba, multi_class="ovr", labels=classes))


def _log_loss(truth: Array, p: Predictions) -> float:
    assert p.proba is not None
    return float(_sk().log_loss(truth, p.proba, labels=_classes(truth, p)))


def _rmse(truth: Array, p: Predictions) -> float:
    return float(np.sqrt(_sk().mean_squared_error(truth, p.values)))


def _mae(truth: Array, p: Predictions) -> float:
    return float(_sk().mean_absolute_error(truth, p.values))


def _r2(truth: Array, p: Predictions) -> float:
    return float(_sk().r2_score(truth, p.values)) if len(truth) > 1 else float("nan")


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "classifier", True, False, _accuracy),
        Metric("balanced_accuracy", "classifier", True, False, _balanced_accuracy),
        Metric("precision", "classifier", True, False, _precision),
        Metric("recall", "classifier", True, False, _recall),
        Metric("f1", "classifier", True, False, _f1),
        Metric("auc", "classifier", True, True, _auc),
        Metric("log_loss", "classifier", False, True, _log_loss),
        Metric("rmse", "regressor", False, False, _rmse),
        Metric("mae", "regressor", False, False, _mae),
        Metric("r2", "regressor", True, False, _r2),
    )
}


def known_metrics() -> str:
    """The metric names, for error messages: which suit which model, which need probabilities."""
    classifier = ", ".join(n for n, m in METRICS.items() if m.task == "classifier")
    regressor = ", ".join(n for n, m in METRICS.items() if m.task == "regressor")
    proba = ", ".join(n for n, m in METRICS.items() if m.needs_proba)
    return f"classifiers: {classifier} ({proba} need predict_proba); regressors: {regressor}"


def metric(name: str, where: str) -> Metric:
    """The metric called `name`, or a clear error naming `where` it was asked for."""
    import difflib

    found = METRICS.get(name) if isinstance(name, str) else None
    if found is None:
        close = difflib.get_close_matches(str(name), list(METRICS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InvalidInput(
            f"{where}: unknown metric {name!r}{hint} Known metrics: {known_metrics()}"
        )
    return found


def evaluate(found: Metric, truth: Array, predictions: Predictions, model: str) -> float:
    """`found` on these rows, or a clear error when the model cannot give what it needs."""
    if found.task != predictions.task:
        raise InvalidInput(
            f"metric {found.name!r} is for {found.task}s but {model} is a {predictions.task}; "
            f"choose one of {known_metrics()}"
        )
    if found.needs_proba and predictions.proba is None:
        raise InvalidInput(
            f"metric {found.name!r} needs predicted probabilities but {model} has no "
            "predict_proba; choose a label metric such as accuracy or f1"
        )
    if len(truth) == 0:
        return float("nan")
    return found.compute(truth, predictions)


def truth_of(column: pd.Series[Any]) -> Array:
    """A label column as plain numpy values (pandas' nullable dtypes would confuse sklearn)."""
    import pandas as pd

    dtype = column.dtype
    if isinstance(dtype, pd.BooleanDtype):
        return column.to_numpy(dtype=bool)
    if pd.api.types.is_integer_dtype(dtype):
        return column.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(dtype):
        return column.to_numpy(dtype=np.float64)
    return column.astype(object).to_numpy()
