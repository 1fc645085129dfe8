"""Bring an existing MLflow model directory into shipyard: its model, flavor and signature.

MLflow writes a folder with an `MLmodel` YAML file beside the model's files; this reads the
same layout, MLflow 2.x and 3.x alike, without MLflow installed:

    flavors:
      sklearn:    {pickled_model: model.pkl, serialization_format: cloudpickle, ...}
      xgboost:    {data: model.ubj, model_class: xgboost.sklearn.XGBClassifier, ...}
      lightgbm:   {data: model.lgb, model_class: lightgbm.basic.Booster, ...}  # or model.pkl
      onnx:       {data: model.onnx, ...}
      pytorch:    {model_data: data, ...}         # data/model.pth, TorchScript only
      python_function: {loader_module: ..., ...}  # a pure pyfunc model is not importable
    run_id: ...
    signature: {inputs: '<JSON list>', outputs: '<JSON list>', params: ...}

Pickled models (sklearn, and lightgbm's scikit-learn classes) run code from the file when
loaded, and the folder is not the project's own store: they are loaded only with
`allow_pickle=True`, for folders whose source is trusted. cloudpickle files load with pickle
when the model's classes are importable.

The signature becomes a plain dict, shipyard's logical types in place of MLflow's:

    {"kind": "table" | "tensor",
     "inputs":  [{"name": "age", "type": "integer"|"float"|"boolean"|"string"|"datetime"
                  |"other", "nullable": True, "required": True, "mlflow_type": "long",
                  "dtype": "float32", "shape": [-1, 4]}, ...],   # dtype/shape: tensors only
     "outputs": [...] | None}

Unnamed MLflow columns and tensors are named by position: input_0, ..., output_0, ...
The dict reads with `shipyard.registry.signature.Signature.from_json`.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shipyard.errors import InvalidInput, NotFound

MLMODEL = "MLmodel"
# MLflow flavor -> shipyard flavor, in the order tried when a model has several.
SUPPORTED = {
    "onnx": "onnx",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "pytorch": "pytorch",
    "sklearn": "sklearn",
}
# MLflow column types -> shipyard logical types (see shipyard.data.schema.LogicalType).
COLUMN_TYPES = {
    "double": "float",
    "float": "float",
    "long": "integer",
    "integer": "integer",
    "boolean": "boolean",
    "string": "string",
    "datetime": "datetime",
    "binary": "other",
}


@dataclass
class ImportedModel:
    """An MLflow model, loaded: the native model and what its MLmodel file said about it."""

    flavor: str  # shipyard's flavor name
    model: Any
    signature: dict[str, Any] | None
    mlflow_flavors: list[str]
    run_id: str | None
    meta: dict[str, Any] = field(default_factory=dict)  # MLflow's provenance fields


def import_mlflow_model(path: Path | str, *, allow_pickle: bool = False) -> ImportedModel:
    """Load the MLflow model in folder `path` (or its MLmodel file) with its signature.

    >>> imported = import_mlflow_model(Path("mlruns/0/abc/artifacts/model"))
    >>> imported.flavor, imported.signature["inputs"][0]
    """
    folder = Path(path)
    if folder.name == MLMODEL and folder.is_file():
        folder = folder.parent
    document = _read_mlmodel(folder / MLMODEL)
    flavors: dict[str, Any] = document.get("flavors") or {}
    chosen = next((name for name in SUPPORTED if name in flavors), None)
    if chosen is None:
        raise InvalidInput(_unsupported(folder, flavors))
    try:
        model = _LOADERS[chosen](folder, flavors[chosen] or {}, allow_pickle)
    except (InvalidInput, NotFound):
        raise
    except Exception as error:  # the library's own error: say which file and library
        raise InvalidInput(
            f"the MLflow {chosen} model in {folder} could not be loaded: {type(error).__name__}: "
            f"{error}; check that the installed {chosen} version can read it (MLmodel says "
            f"{_versions(flavors[chosen] or {})})"
        ) from error
    return ImportedModel(
        flavor=SUPPORTED[chosen],
        model=model,
        signature=convert_signature(document.get("signature")),
        mlflow_flavors=list(flavors),
        run_id=document.get("run_id"),
        meta={
            "source": str(folder.resolve()),
            "mlflow_flavor": chosen,
            "mlflow_flavor_conf": flavors[chosen] or {},
            **{
                key: document[key]
                for key in ("mlflow_version", "model_uuid", "utc_time_created", "artifact_path")
                if key in document
            },
        },
    )


def convert_signature(signature: dict[str, Any] | None) -> dict[str, Any] | None:
    """MLflow's signature (JSON strings inside the YAML) as shipyard's signature dict."""
    if not signature or not signature.get("inputs"):
        return None
    inputs = _specs(signature["inputs"], "inputs")
    outputs = _specs(signature["outputs"], "outputs") if signature.get("outputs") else None
    tensor = any("shape" in spec for spec in inputs)
    return {"kind": "tensor" if tensor else "table", "inputs": inputs, "outputs": outputs}


def _specs(raw: str | list[Any], where: str) -> list[dict[str, Any]]:
    try:
        specs = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as error:
        raise InvalidInput(f"the MLmodel signature's {where} are not JSON: {error}") from error
    if not isinstance(specs, list):
        raise InvalidInput(f"the MLmodel signature's {where} must be a JSON list; got {specs!r}")
    prefix = where.removesuffix("s")  # unnamed columns and tensors: input_0, output_0, ...
    return [
        _spec(spec, spec.get("name") or f"{prefix}_{index}") for index, spec in enumerate(specs)
    ]


def _spec(spec: dict[str, Any], name: str) -> dict[str, Any]:
    if spec.get("type") == "tensor":
        tensor = spec.get("tensor-spec") or {}
        dtype = str(tensor.get("dtype", ""))
        return {
            "name": name,
            "type": _tensor_type(dtype),
            "nullable": True,
            "required": True,
            "mlflow_type": "tensor",
            "dtype": dtype,
            "shape": list(tensor.get("shape") or []),
        }
    mlflow_type = spec.get("type")
    # array, object, map and any (MLflow 2.10+) have no flat logical type: "other".
    kind = COLUMN_TYPES.get(mlflow_type, "other") if isinstance(mlflow_type, str) else "other"
    return {
        "name": name,
        "type": kind,
        "nullable": True,
        "required": bool(spec.get("required", True)),
        "mlflow_type": mlflow_type if isinstance(mlflow_type, str) else json.dumps(mlflow_type),
    }


def _tensor_type(dtype: str) -> str:
    if dtype.startswith(("float", "double")):
        return "float"
    if dtype.startswith(("int", "uint")):
        return "integer"
    if dtype in ("bool", "bool_"):
        return "boolean"
    if dtype in ("str", "object", "unicode"):
        return "string"
    return "datetime" if dtype.startswith("datetime") else "other"


def _read_mlmodel(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise NotFound(
            f"no MLmodel file in {path.parent}; point at the folder MLflow wrote the model to "
            "(the one holding MLmodel, e.g. mlruns/<experiment>/<run>/artifacts/model)"
        )
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise InvalidInput(f"{path} is not valid YAML: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("flavors"), dict):
        raise InvalidInput(f"{path} has no `flavors` section; is it an MLflow MLmodel file?")
    return document


def _unsupported(folder: Path, flavors: dict[str, Any]) -> str:
    found = ", ".join(flavors) or "none"
    supported = ", ".join(sorted(SUPPORTED))
    if list(flavors) == ["python_function"]:
        loader = (flavors["python_function"] or {}).get("loader_module", "mlflow.pyfunc.model")
        return (
            f"the MLflow model in {folder} is a pure python_function model (loader_module "
            f"{loader}), which only MLflow can load; shipyard imports the {supported} flavors. "
            "Re-log the underlying model with one of those flavors, or register a shipyard "
            "pyfunc class (with load(folder) and predict(frame)) that wraps it"
        )
    return (
        f"the MLflow model in {folder} has the flavors {found}; shipyard imports {supported} "
        "(pytorch as TorchScript). Re-log the model with one of those flavors"
    )


def _versions(conf: dict[str, Any]) -> str:
    found = {key: value for key, value in conf.items() if key.endswith("_version")}
    return ", ".join(f"{key} {value}" for key, value in found.items()) or "no version"


def _file(folder: Path, relative: str | None, flavor: str) -> Path:
    if not relative:
        raise InvalidInput(f"the {flavor} flavor in {folder / MLMODEL} names no model file")
    path = folder / relative
    if not path.is_file():
        raise NotFound(f"the {flavor} flavor's model file {relative} is missing from {folder}")
    return path


def _unpickle(path: Path, flavor: str, allow_pickle: bool) -> Any:
    if not allow_pickle:
        raise InvalidInput(
            f"the MLflow {flavor} model {path} is a pickle, and loading a pickle runs code from "
            "the file; if you trust where this folder came from, import it with "
            "allow_pickle=True"
        )
    try:
        return pickle.loads(path.read_bytes())  # trusted by the caller: allow_pickle=True
    except ModuleNotFoundError as error:
        raise InvalidInput(
            f"the pickled {flavor} model {path} needs the module {error.name!r}; install it, or "
            "add the model's code/ folder to the Python path"
        ) from error


def _load_sklearn(folder: Path, conf: dict[str, Any], allow_pickle: bool) -> Any:
    serialization = conf.get("serialization_format", "cloudpickle")
    if serialization not in ("pickle", "cloudpickle"):
        raise InvalidInput(
            f"the sklearn model in {folder} is serialised as {serialization!r}; shipyard reads "
            "pickle and cloudpickle: re-log it with serialization_format='cloudpickle'"
        )
    return _unpickle(_file(folder, conf.get("pickled_model"), "sklearn"), "sklearn", allow_pickle)


def _load_xgboost(folder: Path, conf: dict[str, Any], allow_pickle: bool) -> Any:
    import xgboost

    path = _file(folder, conf.get("data", "model.xgb"), "xgboost")
    module, _, name = str(conf.get("model_class", "xgboost.core.Booster")).rpartition(".")
    if name == "Booster":
        return xgboost.Booster(model_file=str(path))
    if not module.startswith("xgboost") or not hasattr(xgboost, name):
        raise InvalidInput(f"unknown xgboost model_class {conf.get('model_class')!r} in {folder}")
    model = getattr(xgboost, name)()
    model.load_model(path)
    return model


def _load_lightgbm(folder: Path, conf: dict[str, Any], allow_pickle: bool) -> Any:
    import lightgbm

    path = _file(folder, conf.get("data", "model.lgb"), "lightgbm")
    if conf.get("model_class", "lightgbm.basic.Booster") == "lightgbm.basic.Booster":
        return lightgbm.Booster(model_file=str(path))
    return _unpickle(path, "lightgbm", allow_pickle)  # MLflow cloudpickles the sklearn API


def _load_onnx(folder: Path, conf: dict[str, Any], allow_pickle: bool) -> Any:
    import onnx

    return onnx.load_model_from_string(_file(folder, conf.get("data"), "onnx").read_bytes())


def _load_pytorch(folder: Path, conf: dict[str, Any], allow_pickle: bool) -> Any:
    import importlib

    torch: Any = importlib.import_module("torch")
    data = conf.get("model_data", "data")
    path = _file(folder, f"{data}/model.pth", "pytorch")
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as error:
        raise InvalidInput(
            f"the MLflow pytorch model {path} is a pickled nn.Module, not TorchScript; "
            "shipyard imports TorchScript only: re-log torch.jit.script(model), or register "
            "the module itself (shipyard.registry.flavors.pytorch.TorchModel)"
        ) from error


_LOADERS = {
    "sklearn": _load_sklearn,
    "xgboost": _load_xgboost,
    "lightgbm": _load_lightgbm,
    "onnx": _load_onnx,
    "pytorch": _load_pytorch,
}
