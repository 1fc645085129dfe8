"""LightGBM: LGBMClassifier, LGBMRegressor (the scikit-learn API) and Booster.

Saved as LightGBM's text model (`model_to_string`, the same text for the same model) in
`model.lgb`. It loads back as a `lightgbm.Booster`, which predicts exactly what the original
did: the metadata keeps the classifier's labels, so probabilities map back to them the way
LGBMClassifier.predict maps them (most probable column; the first one on a tie).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.registry.flavors.classes import class_names, dotted_name
from shipyard.registry.flavors.packages import distributions_for
from shipyard.registry.flavors.tabular import features, jsonable, labels, names_of, two_columns

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

FILE = "model.lgb"
_ROOTS = {"lightgbm.sklearn.LGBMModel", "lightgbm.basic.Booster"}
_CLASSIFYING = ("binary", "multiclass", "softmax", "multiclassova", "multiclass_ova", "ova")
_GENERATED_NAME = re.compile(r"Column_\d+")  # what LightGBM calls columns of an array


class LightGBMFlavor:
    name = "lightgbm"

    def handles(self, model: Any) -> bool:
        return bool(_ROOTS & class_names(model))

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        import lightgbm

        booster = model if isinstance(model, lightgbm.Booster) else model.booster_
        text = booster.model_to_string()
        (folder / FILE).write_text(text, encoding="utf-8")
        objective = _objective(text)
        names = booster.feature_name()
        if all(_GENERATED_NAME.fullmatch(name) for name in names):
            names = None  # trained on an array: columns are taken by position
        if hasattr(model, "classes_"):
            classes = jsonable(model.classes_)
        elif objective in _CLASSIFYING:
            classes = list(range(max(booster.num_model_per_iteration(), 2)))
        else:
            classes = None
        return {
            "library": "lightgbm",
            "library_version": lightgbm.__version__,
            "class": dotted_name(model),
            "objective": objective,
            "task": "classifier" if classes is not None else _regressor(objective),
            "n_features": booster.num_feature(),
            "feature_names": names_of(names),
            "classes": classes,
            "files": [FILE],
            "dependencies": distributions_for(["lightgbm"]),
        }

    def load(self, folder: Path, meta: dict[str, Any]) -> Any:
        import lightgbm

        return lightgbm.Booster(model_str=(folder / FILE).read_text(encoding="utf-8"))

    def predict(
        self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]
    ) -> np.ndarray[Any, Any]:
        import numpy as np

        proba = self.predict_proba(model, frame, meta)
        if proba is not None:
            return labels(proba, meta.get("classes"))
        return np.asarray(_booster(model).predict(features(frame, meta.get("feature_names"))))

    def predict_proba(
        self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]
    ) -> np.ndarray[Any, Any] | None:
        import numpy as np

        if meta.get("task") != "classifier":
            return None
        output = np.asarray(_booster(model).predict(features(frame, meta.get("feature_names"))))
        return two_columns(output) if output.ndim == 1 else output

    def dependencies(self, meta: dict[str, Any]) -> dict[str, str]:
        return dict(meta.get("dependencies") or {"lightgbm": meta["library_version"]})


def _booster(model: Any) -> Any:
    """The Booster behind a model: itself once loaded, `booster_` for the original."""
    return model if "lightgbm.basic.Booster" in class_names(model) else model.booster_


def _objective(text: str) -> str | None:
    """The objective's name from the model text ("objective=binary sigmoid:1" -> "binary")."""
    match = re.search(r"^objective=(\S+)", text, flags=re.MULTILINE)
    return match.group(1) if match else None


def _regressor(objective: str | None) -> str | None:
    ranking = objective is None or objective.startswith(("lambdarank", "rank_xendcg"))
    return None if ranking else "regressor"
