"""ONNX: an `onnx.ModelProto`, run with onnxruntime on the CPU.

Only a ModelProto is taken (bytes or a path could be anything): `onnx.load(path)` first.
It is saved as `model.onnx` with deterministic protobuf serialisation, and `load` returns an
`onnxruntime.InferenceSession`, which is what `predict` runs (it also takes the ModelProto).

Inputs come from the frame: one tensor per graph input when every input name is a column,
else, for a graph with a single input, the frame's columns stacked in order into one 2-D
tensor (ordered by `feature_names` when the metadata has them, as shipyard's ONNX compiler
writes it); values are cast to each input's element type. A graph with two outputs is a
classifier, as skl2onnx and onnxmltools write them: "label" then "probabilities" (a tensor,
or a ZipMap's list of {label: probability}, put back in class order).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput
from shipyard.registry.flavors.classes import class_names
from shipyard.registry.flavors.packages import distributions_for
from shipyard.registry.flavors.tabular import features

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

FILE = "model.onnx"
_LABEL_ATTRIBUTES = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")


class OnnxFlavor:
    name = "onnx"

    def handles(self, model: Any) -> bool:
        return "onnx.onnx_ml_pb2.ModelProto" in class_names(model) or (
            type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx")
        )

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        import onnx

        (folder / FILE).write_bytes(model.SerializeToString(deterministic=True))
        graph = model.graph
        initialised = {initializer.name for initializer in graph.initializer}
        inputs = [_tensor_info(value) for value in graph.input if value.name not in initialised]
        outputs = [_tensor_info(value) for value in graph.output]
        classifier = len(outputs) >= 2
        shape = inputs[0]["shape"] if len(inputs) == 1 else None
        return {
            "library": "onnx",
            "library_version": onnx.__version__,
            "class": "onnx.ModelProto",
            "task": "classifier" if classifier else None,
            "n_features": shape[1]
            if shape and len(shape) == 2 and isinstance(shape[1], int)
            else len(inputs),
            "feature_names": [value["name"] for value in inputs] if len(inputs) > 1 else None,
            "classes": _class_labels(graph) if classifier else None,
            "inputs": inputs,
            "outputs": outputs,
            "label_output": _named(outputs, "label", 0) if classifier else outputs[0]["name"],
            "proba_output": _named(outputs, "probabilities", 1) if classifier else None,
            "opsets": {entry.domain or "ai.onnx": entry.version for entry in model.opset_import},
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
            "files": [FILE],
            "dependencies": distributions_for(["onnxruntime"]),
        }

    def load(self, folder: Path, meta: dict[str, Any]) -> Any:
        return _session((folder / FILE).read_bytes())

    def predict(
        self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]
    ) -> np.ndarray[Any, Any]:
        import numpy as np

        session = _as_session(model)
        classes = meta.get("classes")
        if classes and meta.get("proba_output"):
            # The original model's labels, not the converter's: some converters give class
            # indices (LightGBM) or cast labels (booleans become 0/1), so take them as the
            # original does, from the most probable class.
            probabilities = self.predict_proba(session, frame, meta)
            assert probabilities is not None
            labels: np.ndarray[Any, Any] = np.asarray(
                classes, dtype=object if _mixed(classes) else None
            )
            chosen: np.ndarray[Any, Any] = labels[probabilities.argmax(axis=1)]
            return chosen
        name = meta.get("label_output") or session.get_outputs()[0].name
        (output,) = session.run([name], _feeds(session, frame, meta))
        values = np.asarray(output)
        return values.ravel() if values.ndim == 2 and values.shape[1] == 1 else values

    def predict_proba(
        self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]
    ) -> np.ndarray[Any, Any] | None:
        import numpy as np

        name = meta.get("proba_output")
        if not name:
            return None
        session = _as_session(model)
        (output,) = session.run([name], _feeds(session, frame, meta))
        if isinstance(output, list):  # a ZipMap: one {label: probability} per row
            keys = list(output[0]) if output else []
            classes = meta.get("classes") or []
            order = classes if classes and all(c in keys for c in classes) else sorted(keys)
            return np.array([[row[label] for label in order] for row in output])
        return np.asarray(output)

    def dependencies(self, meta: dict[str, Any]) -> dict[str, str]:
        return dict(meta.get("dependencies") or {"onnxruntime": "*"})


def _mixed(classes: list[Any]) -> bool:
    """Whether the labels have more than one Python type (keep them as objects then)."""
    return len({type(label) for label in classes}) > 1


def _session(data: bytes) -> Any:
    import onnxruntime  # type: ignore[import-untyped]

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: converters' shape warnings would flood the log
    return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _as_session(model: Any) -> Any:
    if hasattr(model, "SerializeToString"):  # the ModelProto itself, before it was saved
        return _session(model.SerializeToString())
    return model


# onnxruntime's input type names -> numpy dtypes; anything else is passed through unchanged.
_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


def _feeds(session: Any, frame: pd.DataFrame, meta: dict[str, Any]) -> dict[str, Any]:
    """One array per graph input, cast to its element type."""
    import numpy as np

    inputs = session.get_inputs()
    if all(spec.name in frame.columns for spec in inputs):
        feeds = {}
        for spec in inputs:
            column = frame[spec.name].to_numpy()
            feeds[spec.name] = _cast(
                column.reshape(-1, 1) if len(spec.shape) == 2 else column, spec
            )
        return feeds
    if len(inputs) == 1:  # in the order of the columns it was compiled from, when known
        values = np.asarray(features(frame, meta.get("feature_names")))
        return {inputs[0].name: _cast(values, inputs[0])}
    raise InvalidInput(
        f"the ONNX model has the inputs {[spec.name for spec in inputs]}; send one column per "
        f"input, by name (the input has {[str(column) for column in frame.columns]})"
    )


def _cast(values: Any, spec: Any) -> Any:
    dtype = _DTYPES.get(spec.type)
    if dtype == "object":
        return values.astype(str).astype(object)
    return values if dtype is None else values.astype(dtype)


def _tensor_info(value: Any) -> dict[str, Any]:
    """Name, element type and shape of a graph input or output, as JSON."""
    import onnx

    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return {"name": value.name, "type": kind, "dtype": None, "shape": None}
    tensor = value.type.tensor_type
    shape: list[Any] = [
        dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None)
        for dim in tensor.shape.dim
    ]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
    return {"name": value.name, "type": kind, "dtype": str(dtype), "shape": shape}


def _named(outputs: list[dict[str, Any]], name: str, position: int) -> str:
    names = [output["name"] for output in outputs]
    return name if name in names else str(names[position])


def _class_labels(graph: Any) -> list[Any] | None:
    """The labels a classifier operator (TreeEnsembleClassifier, LinearClassifier...) emits."""
    import onnx

    for node in graph.node:
        for attribute in node.attribute:
            if attribute.name in _LABEL_ATTRIBUTES:
                values = onnx.helper.get_attribute_value(attribute)
                return [v.decode() if isinstance(v, bytes) else int(v) for v in values]
    return None
