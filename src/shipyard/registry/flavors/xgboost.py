"""XGBoost: the scikit-learn API classes (XGBClassifier, XGBRegressor, ...) and Booster.

Saved with `save_model` in UBJSON (`model.ubj`), XGBoost's own portable format: the same model
gives the same bytes, and `load_model` reads it back into the same class, sklearn attributes
included. A bare Booster knows no labels: its objective says what its output means
("binary:logistic" and "multi:softprob" are classifiers over the labels 0..n-1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput
from shipyard.registry.flavors.classes import class_names, dotted_name
from shipyard.registry.flavors.packages import distributions_for
from shipyard.registry.flavors.tabular import features, jsonable, labels, names_of, two_columns

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

FILE = "model.ubj"
# The classes `load` may rebuild, by the name stored in the metadata.
CLASSES = ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor")
_ROOTS = {"xgboost.sklearn.XGBModel", "xgboost.core.Booster"}


class XGBoostFlavor:
    name = "xgboost"

    def handles(self, model: Any) -> bool:
        return bool(_ROOTS & class_names(model))

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        import xgboost

        booster = model if isinstance(model, xgboost.Booster) else model.get_booster()
        class_name = type(model).__name__
        if not isinstance(model, xgboost.Booster) and class_name not in CLASSES:
            raise InvalidInput(
                f"{dotted_name(model)} is not one of xgboost's own classes ({', '.join(CLASSES)},"
                " Booster); register model.get_booster() or an instance of one of those classes"
            )
        objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
        model.save_model(folder / FILE)
        classes = _booster_classes(booster, objective) if class_name == "Booster" else None
        return {
            "library": "xgboost",
            "library_version": xgboost.__version__,
            "class": dotted_name(model),
            "class_name": class_name,
            "objective": objective,
            "task": _task(model, objective),
            "n_features": booster.num_features(),
            "feature_names": names_of(booster.feature_names),
            "classes": jsonable(getattr(model, "classes_", classes)),
            "files": [FILE],
            "dependencies": distributions_for(["xgboost"]),
        }

    def load(self, folder: Path, meta: dict[str, Any]) -> Any:
        import xgboost

        name = meta.get("class_name", "Booster")
        if name == "Booster":
            return xgboost.Booster(model_file=str(folder / FILE))
        if name not in CLASSES:
            raise InvalidInput(f"unknown xgboost class {name!r} in the flavor metadata")
        model = getattr(xgboost, name)()
        model.load_model(folder / FILE)
        return model

    def predict(
        self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]
    ) -> np.ndarray[Any, Any]:
        import numpy as np

        if not _is_booster(model):
            return np.asarray(model.predict(features(frame, meta.get("feature_names"))))
        output = _booster_output(model, frame, meta)
        proba = _as_proba(output, meta)
        return output if proba is None else labels(proba, meta.get("classes"))

    def predict_proba(
        self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]
    ) -> np.ndarray[Any, Any] | None:
        import numpy as np

        if not _is_booster(model):
            if not hasattr(model, "predict_proba") or meta.get("task") != "classifier":
                return None
            return np.asarray(model.predict_proba(features(frame, meta.get("feature_names"))))
        return _as_proba(_booster_output(model, frame, meta), meta)

    def dependencies(self, meta: dict[str, Any]) -> dict[str, str]:
        return dict(meta.get("dependencies") or {"xgboost": meta["library_version"]})


def _is_booster(model: Any) -> bool:
    return "xgboost.core.Booster" in class_names(model)


def _task(model: Any, objective: str) -> str | None:
    if "xgboost.sklearn.XGBClassifier" in class_names(model) or objective in _CLASSIFYING:
        return "classifier"
    if objective.startswith(("reg:", "survival:", "count:")):
        return "regressor"
    return None  # ranking, or a custom objective


_CLASSIFYING = ("binary:logistic", "multi:softprob")


def _booster_classes(booster: Any, objective: str) -> list[int] | None:
    if objective == "binary:logistic":
        return [0, 1]
    if objective == "multi:softprob":
        config = json.loads(booster.save_config())
        return list(range(int(config["learner"]["learner_model_param"]["num_class"])))
    return None


def _booster_output(booster: Any, frame: pd.DataFrame, meta: dict[str, Any]) -> Any:
    import numpy as np
    import xgboost

    matrix = xgboost.DMatrix(features(frame, meta.get("feature_names")))
    return np.asarray(booster.predict(matrix))


def _as_proba(output: Any, meta: dict[str, Any]) -> np.ndarray[Any, Any] | None:
    """A Booster's output as class probabilities, when its objective makes them so."""
    if meta.get("objective") == "binary:logistic":
        return two_columns(output)
    if meta.get("objective") == "multi:softprob":
        return output.reshape(len(output), -1)  # type: ignore[no-any-return]
    return None
