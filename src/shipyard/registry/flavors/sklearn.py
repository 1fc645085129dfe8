"""scikit-learn: any estimator, Pipeline or ColumnTransformer, saved as a pickle.

scikit-learn has no other complete format, so the model is pickled (protocol 5, the same bytes
for the same model). The pickle is only ever loaded from the project's own artifact store,
after its sha256 is checked, as everywhere in shipyard. The modules the pickle imports are
read from its opcodes at save time, so a Pipeline holding an XGBoost step depends on xgboost.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.registry.flavors import pickles
from shipyard.registry.flavors.classes import comes_from, dotted_name
from shipyard.registry.flavors.packages import distributions_for
from shipyard.registry.flavors.tabular import features, jsonable, names_of

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

FILE = "model.pkl"


class SklearnFlavor:
    name = "sklearn"

    def handles(self, model: Any) -> bool:
        # Custom estimators deriving from sklearn.base.BaseEstimator count too; the xgboost and
        # lightgbm flavors, registered later, are asked first for their sklearn-API classes.
        return (
            not isinstance(model, type)
            and comes_from(model, "sklearn")
            and callable(getattr(model, "fit", None))
            and (hasattr(model, "predict") or hasattr(model, "transform"))
        )

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        import sklearn  # type: ignore[import-untyped]
        from sklearn.base import is_classifier, is_regressor  # type: ignore[import-untyped]

        data = pickles.write(model, folder / FILE)
        task = (
            "classifier" if is_classifier(model) else "regressor" if is_regressor(model) else None
        )
        return {
            "library": "scikit-learn",
            "library_version": sklearn.__version__,
            "class": dotted_name(model),
            "task": task,
            "n_features": getattr(model, "n_features_in_", None),
            "feature_names": names_of(getattr(model, "feature_names_in_", None)),
            "classes": jsonable(getattr(model, "classes_", None)),
            "serialization": "pickle",
            "pickle_protocol": pickles.PROTOCOL,
            "files": [FILE],
            "dependencies": distributions_for({"sklearn", *pickles.modules_in(data)}),
        }

    def load(self, folder: Path, meta: dict[str, Any]) -> Any:
        return pickles.read(folder / meta.get("files", [FILE])[0])

    def predict(
        self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]
    ) -> np.ndarray[Any, Any]:
        import numpy as np

        inputs = features(frame, meta.get("feature_names"))
        if hasattr(model, "predict"):
            return np.asarray(model.predict(inputs))
        return np.asarray(model.transform(inputs))  # a fitted ColumnTransformer or transformer

    def predict_proba(
        self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]
    ) -> np.ndarray[Any, Any] | None:
        import numpy as np

        if not hasattr(model, "predict_proba"):  # also False for SVC(probability=False)
            return None
        return np.asarray(model.predict_proba(features(frame, meta.get("feature_names"))))

    def dependencies(self, meta: dict[str, Any]) -> dict[str, str]:
        return dict(meta.get("dependencies") or {"scikit-learn": meta["library_version"]})
