"""scikit-learn: any estimator, Pipeline or ColumnTransformer, saved as a pickle.

scikit-learn has no other complete format, so the model is pickled (protocol 5, the same bytes
for the same model). The pickle is only ever loaded from the project's own artifact store,
after its sha256 is checked, as everywhere in shipyard. The modules the pickle imports are
read from its opcodes at save time, so a Pipeline holding an XGBoost step depends on xgboost.
"""

from __future__ import annotations

import warnings
import weakref
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
# Whether a loaded model can take a float array instead of a DataFrame (see _as_array).
_ARRAY_SAFE: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


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

        inputs = _as_array(model, features(frame, meta.get("feature_names")))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", _NO_NAMES_WARNING, UserWarning)
            if hasattr(model, "predict"):
                return np.asarray(model.predict(inputs))
            return np.asarray(model.transform(inputs))  # a fitted ColumnTransformer

    def predict_proba(
        self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]
    ) -> np.ndarray[Any, Any] | None:
        import numpy as np

        if not hasattr(model, "predict_proba"):  # also False for SVC(probability=False)
            return None
        inputs = _as_array(model, features(frame, meta.get("feature_names")))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", _NO_NAMES_WARNING, UserWarning)
            return np.asarray(model.predict_proba(inputs))

    def dependencies(self, meta: dict[str, Any]) -> dict[str, str]:
        return dict(meta.get("dependencies") or {"scikit-learn": meta["library_version"]})


# -- the array fast path -----------------------------------------------------------------------

_NO_NAMES_WARNING = "X does not have valid feature names"


def _as_array(model: Any, inputs: Any) -> Any:
    """A float64 array in place of an all-numeric DataFrame, when the model reads by position.

    scikit-learn 1.9 with pandas 3 spends about 1 ms validating a DataFrame before a
    LogisticRegression that itself costs 0.1 ms. The signature check has already put the
    columns in the training order with the training types, so a model that only reads its
    inputs by position gets the same values as an array, and the same answer (tested). A model
    that may read columns by name (a ColumnTransformer, a FunctionTransformer, categorical
    features named by string, any class from outside scikit-learn) keeps the DataFrame.
    """
    import pandas as pd

    if not isinstance(inputs, pd.DataFrame) or not _reads_by_position(model):
        return inputs
    import numpy as np

    if not _numeric_kinds(inputs) <= {"i", "u", "f", "b"}:  # text, categories, dates: keep
        return inputs
    return inputs.to_numpy(dtype=np.float64, na_value=np.nan)


def _numeric_kinds(frame: Any) -> set[str]:
    """The dtype kinds of a frame's columns (nullable ones count by their numpy kind)."""
    try:  # the frame's own arrays: ~1 us, where `frame.dtypes` builds a Series in ~30 us
        arrays = frame._mgr.arrays
    except AttributeError:  # another pandas layout: the public, slower way
        arrays = [frame[name] for name in frame.columns]
    return {array.dtype.kind for array in arrays}


def _reads_by_position(model: Any) -> bool:
    try:
        return _ARRAY_SAFE[model]
    except KeyError:
        pass
    except TypeError:  # not weak-referenceable: decide each time
        return _positional(model)
    safe = _ARRAY_SAFE[model] = _positional(model)
    return safe


def _positional(model: Any) -> bool:
    """Whether the model and every estimator inside it come from scikit-learn and take
    their inputs by position."""
    name = type(model).__name__
    module = type(model).__module__
    if not module.startswith("sklearn.") or name in ("ColumnTransformer", "FunctionTransformer"):
        return False
    categorical = getattr(model, "categorical_features", None)
    # "from_dtype" reads pandas categories: such inputs are not numeric, so they keep the frame.
    if (isinstance(categorical, str) and categorical != "from_dtype") or (
        isinstance(categorical, list | tuple) and any(isinstance(c, str) for c in categorical)
    ):
        return False
    for child in _children(model):
        if child not in ("drop", "passthrough", None) and not _positional(child):
            return False
    return True


def _children(model: Any) -> list[Any]:
    steps = getattr(model, "steps", None) or getattr(model, "transformer_list", None)
    if steps is not None:
        return [step for _, step in steps]
    children = []
    for attribute in ("estimator", "base_estimator", "final_estimator", "estimator_"):
        child = getattr(model, attribute, None)
        if child is not None and not isinstance(child, str):
            children.append(child)
    for attribute in ("estimators", "estimators_"):
        many = getattr(model, attribute, None)
        if isinstance(many, list):
            children += [item[1] if isinstance(item, tuple) else item for item in many]
    return children
