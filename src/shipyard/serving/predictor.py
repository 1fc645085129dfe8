"""One served model: a loaded version, its options and hooks, and the prediction path that
the server, batch scoring, stream scoring and replay all share.

    received rows -> preprocess -> signature check -> model -> postprocess -> filters

Keeping a single path is what makes a replay meaningful: the logged input goes through the
same steps, in the same order, as it did when it was first answered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput, ShipyardError
from shipyard.serving.options import ModelOptions

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from shipyard.project import Project
    from shipyard.registry.loaded import LoadedModel
    from shipyard.registry.versions import ModelVersion

PREDICTION = "prediction"
PROBABILITIES = "predict_proba"  # the output asked for by name (v2), beside the prediction
_NOT_YET = object()


class HookFailed(ShipyardError):
    """A pre/post-processing hook or an output filter raised or returned the wrong thing."""


@dataclass
class Batch:
    """What post-processors and filters see: the checked model input and the outputs so far."""

    inputs: pd.DataFrame | Any
    outputs: dict[str, np.ndarray[Any, Any]]
    model: LoadedModel
    _probabilities: Any = _NOT_YET

    @property
    def classes(self) -> list[Any] | None:
        classes = self.model.meta.get("classes")
        return list(classes) if classes is not None else None

    def probabilities_if_any(self) -> np.ndarray[Any, Any] | None:
        """The class probabilities of these rows, computed once on first use; None when the
        model has none."""
        if self._probabilities is _NOT_YET:
            model = self.model
            self._probabilities = model.flavor.predict_proba(model.model, self.inputs, model.meta)
        return self._probabilities  # type: ignore[no-any-return]

    def probabilities(self) -> np.ndarray[Any, Any]:
        """The class probabilities of these rows, for hooks that need them."""
        proba = self.probabilities_if_any()
        if proba is None:
            raise HookFailed(
                f"model {self.model.version.ref} has no class probabilities; a hook that "
                "needs them only works with a classifier that has predict_proba"
            )
        return proba


@dataclass
class Prediction:
    """The answer for a batch of rows: named outputs, and per row the filter that withheld it."""

    outputs: dict[str, np.ndarray[Any, Any]]
    withheld: list[str | None]
    out_of_range: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.withheld)

    @property
    def filters_fired(self) -> list[str]:
        return sorted({rule for rule in self.withheld if rule is not None})

    def column(self, name: str = PREDICTION) -> list[Any]:
        """One output as JSON-able values; a withheld row's value is None."""
        values = json_values(self.outputs[name])
        return [None if rule else value for value, rule in zip(values, self.withheld, strict=True)]

    def records(self) -> list[dict[str, Any]]:
        """Every output per row, plus `filtered` (the rule) for withheld rows."""
        columns = {name: self.column(name) for name in self.outputs}
        rows = [{name: values[i] for name, values in columns.items()} for i in range(self.rows)]
        for row, rule in zip(rows, self.withheld, strict=True):
            if rule is not None:
                row["filtered"] = rule
        return rows

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        frame = pd.DataFrame(
            {name: list(_rows_of(values)) for name, values in self.outputs.items()}
        )
        if any(rule is not None for rule in self.withheld):
            frame["filtered"] = self.withheld
        return frame

    def slice(self, start: int, stop: int) -> Prediction:
        """Rows [start, stop): one request's share of a micro-batch."""
        return Prediction(
            {name: values[start:stop] for name, values in self.outputs.items()},
            self.withheld[start:stop],
        )


class Predictor:
    """A model version ready to answer: loaded, its hooks imported, the path above in `predict`."""

    def __init__(self, version: ModelVersion, loaded: LoadedModel, options: ModelOptions) -> None:
        self.version = version
        self.loaded = loaded
        self.options = options
        self.name = version.name
        self.signature = version.signature
        self.enforcer = self.signature.enforcer() if self.signature is not None else None

    @classmethod
    def load(
        cls,
        ref: str,
        *,
        project: Project | None = None,
        options: ModelOptions | None = None,
        onnx: bool = True,
    ) -> Predictor:
        """`NAME`, `NAME@VERSION` or `NAME@ALIAS` from the registry; options from shipyard.toml
        (`[serving.NAME]`) unless given."""
        from shipyard.project import current
        from shipyard.registry.versions import get

        project = project or current()
        version = get(ref, project=project)
        if options is None:
            options = ModelOptions.from_settings(
                version.name, project.settings.serving.get(version.name)
            )
        loaded = version.load(project=project, range_policy=options.range_policy, onnx=onnx)
        return cls(version, loaded, options)

    @property
    def ref(self) -> str:
        return self.version.ref

    @property
    def input_names(self) -> list[str]:
        return self.signature.input_names if self.signature is not None else []

    def check(self, data: Any) -> tuple[Any, dict[str, int]]:
        """Pre-process, then check against the signature: the model input and out-of-range counts.

        Unlike `LoadedModel.check`, a column the signature does not name is refused: a client
        sending a field the model never reads has almost always misspelled one it does.
        """
        if self.options.preprocess is not None:
            data = _call_hook(self.options.preprocess, "preprocess", _as_frame(data))
        if self.enforcer is None:
            import pandas as pd

            return (data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)), {}
        checked = self.enforcer(data, range_policy=self.options.range_policy, refuse_extra=True)
        for column, count in checked.out_of_range.items():
            self.loaded.out_of_range[column] = self.loaded.out_of_range.get(column, 0) + count
        return checked.model_input, checked.out_of_range

    def predict(
        self, data: Any, *, probabilities: bool = False, hooks_off: frozenset[str] = frozenset()
    ) -> Prediction:
        """The path above; with `probabilities`, the class probabilities as `predict_proba` too
        (from the same checked input; left out when the model has none). `hooks_off`: the
        post-processors a feature flag switched off for this request."""
        model_input, out_of_range = self.check(data)
        prediction = self.predict_checked(
            model_input, probabilities=probabilities, hooks_off=hooks_off
        )
        prediction.out_of_range = out_of_range
        return prediction

    def predict_checked(
        self,
        model_input: Any,
        *,
        probabilities: bool = False,
        hooks_off: frozenset[str] = frozenset(),
    ) -> Prediction:
        """The model, post-processors and filters on input that already passed `check`."""
        loaded = self.loaded
        raw = loaded.flavor.predict(loaded.model, model_input, loaded.meta)
        batch = Batch(model_input, {PREDICTION: raw}, loaded)
        for hook in self.options.postprocess:
            if hook.name not in hooks_off:
                _call_hook(hook, "postprocess", batch)
        rows = len(raw)
        withheld: list[str | None] = [None] * rows
        for hook in self.options.filters:
            mask = _call_hook(hook, "filter", batch)
            for i in _withheld_rows(mask, rows, hook.name):
                if withheld[i] is None:  # the first rule that fires is the one reported
                    withheld[i] = hook.name
        if probabilities:
            proba = batch.probabilities_if_any()
            if proba is not None:
                batch.outputs[PROBABILITIES] = proba
        return Prediction(batch.outputs, withheld)

    def warm_up(self) -> None:
        """One prediction on a made-up row, so the first real request pays no lazy setup."""
        row = example_row(self)
        if row is not None:
            self.predict_checked(self.check([row])[0])


def example_row(predictor: Predictor) -> dict[str, Any] | None:
    """A row that fits the signature: each column's training minimum or first level."""
    signature = predictor.signature
    if signature is None or signature.kind != "table":
        return None
    row: dict[str, Any] = {}
    for spec in signature.inputs:
        if spec.levels:
            row[spec.name] = spec.levels[0]
        elif spec.type.value in ("integer",):
            row[spec.name] = int(spec.minimum) if spec.minimum is not None else 0
        elif spec.type.value in ("float",):
            row[spec.name] = float(spec.minimum) if spec.minimum is not None else 0.0
        elif spec.type.value == "boolean":
            row[spec.name] = False
        else:
            row[spec.name] = None if spec.nullable else ""
    return row


def _as_frame(data: Any) -> Any:
    """What a pre-processor receives, whatever the protocol: a DataFrame of the rows."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    try:
        return pd.DataFrame([data] if _is_one_record(data) else data)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"cannot read the input as rows of columns: {exc}") from None


def _is_one_record(data: Any) -> bool:
    return isinstance(data, dict) and not any(
        isinstance(value, list | tuple) for value in data.values()
    )


def _call_hook(hook: Any, role: str, argument: Any) -> Any:
    try:
        return hook.function(argument)
    except InvalidInput:
        raise
    except Exception as exc:
        raise HookFailed(f"{role} hook {hook.name!r} failed: {type(exc).__name__}: {exc}") from exc


def _withheld_rows(mask: Any, rows: int, rule: str) -> list[int]:
    import numpy as np

    array = np.asarray(mask)
    if array.shape != (rows,) or array.dtype != bool:
        raise HookFailed(
            f"filter {rule!r} must return one boolean per row ({rows}); "
            f"got {array.dtype} with shape {array.shape}"
        )
    return [int(i) for i in np.flatnonzero(array)]


def json_values(values: Any) -> list[Any]:
    """Numpy values as JSON-able Python ones; NaN and infinities become None."""
    import numpy as np

    array = np.asarray(values)
    items: list[Any] = array.tolist()
    if array.dtype.kind == "f":
        return [_finite(item) for item in items]
    return items


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _rows_of(values: Any) -> Any:
    import numpy as np

    array = np.asarray(values)
    return list(array) if array.ndim > 1 else array
