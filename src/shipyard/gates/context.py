"""What the gates of one run share: the candidate, the champion, the frames, the predictions.

Each model predicts each frame once; every gate that needs those predictions reads them here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from shipyard.errors import InvalidInput
from shipyard.gates.metrics import Array, Predictions, truth_of

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.gates.policy import Policy
    from shipyard.project import Project
    from shipyard.registry.loaded import LoadedModel
    from shipyard.registry.versions import ModelVersion

FrameName = Literal["holdout", "standard"]


@dataclass
class Subject:
    """A model version under judgement, loaded."""

    version: ModelVersion
    model: LoadedModel

    @property
    def ref(self) -> str:
        return self.version.ref


@dataclass
class GateContext:
    """The inputs of one gate run; predictions are computed on first use and kept."""

    policy: Policy
    project: Project
    candidate: Subject
    champion: Subject | None
    holdout: pd.DataFrame | None = None
    standard: pd.DataFrame | None = None
    dropped_unlabelled: int = 0
    _predictions: dict[tuple[str, str], Predictions] = field(default_factory=dict)

    def frame(self, which: FrameName) -> pd.DataFrame:
        frame = self.holdout if which == "holdout" else self.standard
        if frame is None:
            raise InvalidInput(
                f"policy {self.policy.name!r} has no {which} dataset; set {which} = "
                f'"NAME@VERSION" in [policies.{self.policy.name}]'
            )
        return frame

    def features(self, which: FrameName) -> pd.DataFrame:
        """The model's input columns of a frame (the signature's, else all but the target)."""
        frame = self.frame(which)
        signature = self.candidate.version.signature
        if signature is not None:
            names = [spec.name for spec in signature.inputs]
            missing = [n for n in names if n not in frame.columns]
            if missing:
                ref = self.policy.holdout if which == "holdout" else self.policy.standard_rows
                raise InvalidInput(
                    f"the {which} dataset {ref} lacks the columns {', '.join(missing)} that "
                    f"{self.candidate.ref} takes; point the policy at data with the model's "
                    "inputs"
                )
            return frame[names]
        target = self.policy.target
        return frame.drop(columns=[target]) if target in frame.columns else frame

    def truth(self) -> Array:
        target = self.policy.target
        assert target is not None  # the policy checked it for every gate that asks
        return truth_of(self.frame("holdout")[target])

    def predictions(self, subject: Subject, which: FrameName) -> Predictions:
        key = (subject.ref, which)
        if key not in self._predictions:
            self._predictions[key] = predict(subject.model, self.features(which))
        return self._predictions[key]


def predict(model: LoadedModel, features: pd.DataFrame) -> Predictions:
    """Labels (or values) and, for a classifier that has them, class probabilities."""
    values = np.asarray(model.predict(features))
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    proba_raw = model.predict_proba(features)
    proba = None if proba_raw is None else np.asarray(proba_raw, dtype=np.float64)
    # The flavor says which task it is when it knows; otherwise regressors are the models
    # that give floats and no probabilities.
    said = model.meta.get("task")
    task: Literal["classifier", "regressor"]
    if said in ("classifier", "regressor"):
        task = said
    else:
        task = "classifier" if proba is not None or values.dtype.kind != "f" else "regressor"
    known: Any = model.meta.get("classes")
    if known is None:
        known = getattr(model.model, "classes_", None)
    classes = None if known is None else np.asarray(known)
    if proba is not None and classes is not None and len(classes) != proba.shape[1]:
        classes = None  # an unusual wrapper: fall back to the labels seen
    return Predictions(task, values, proba, classes)


def json_value(value: Any) -> Any:
    """A cell as JSON can hold it: numpy scalars unwrapped, NaN and NA as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)
