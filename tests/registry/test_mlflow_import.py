"""Importing MLflow model directories: real model files, MLmodel files written by hand.

MLflow is not installed. Each test builds the folder MLflow 2.x and 3.x write with
`mlflow.<flavor>.save_model`: the model file saved by the real library (a pickle or
cloudpickle for sklearn and lightgbm's scikit-learn classes, `save_model` for XGBoost and
LightGBM Boosters, the serialised ModelProto for ONNX, `torch.jit.save` to data/model.pth
for pytorch) and an `MLmodel` YAML with the keys MLflow writes and shipyard reads:

    artifact_path, mlflow_version, model_uuid, run_id, utc_time_created,
    flavors:
      python_function: {loader_module, model_path, env, python_version}
      sklearn:   {pickled_model, serialization_format, sklearn_version, code}
      xgboost:   {data, model_class, model_format, xgb_version, code}
      lightgbm:  {data, model_class, lgb_version, code}
      onnx:      {data, onnx_version, providers, code}
      pytorch:   {model_data, pytorch_version, code}
    signature: {inputs: '<JSON colspecs or tensor specs>', outputs: '<JSON>', params: null}
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from shipyard.errors import InvalidInput, NotFound
from shipyard.registry.flavors import flavor_for, get_flavor
from shipyard.registry.mlflow_import import convert_signature, import_mlflow_model

RUN_ID = "0f9d4c1e2b3a4d5e8f7a6b5c4d3e2f1a"
COLUMNS = ["a", "b", "c", "d"]
TABLE_INPUTS = json.dumps([{"type": "double", "name": name, "required": True} for name in COLUMNS])


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    return pd.DataFrame(rng.normal(size=(50, 4)), columns=COLUMNS)


@pytest.fixture(scope="module")
def binary(frame: pd.DataFrame) -> pd.Series:
    return (frame["a"] - frame["d"] > 0).astype(int)


def write_mlmodel(
    folder: Path,
    flavor: str,
    conf: dict[str, Any],
    *,
    loader: str | None = None,
    inputs: str | None = TABLE_INPUTS,
    outputs: str | None = '[{"type": "long", "required": true}]',
) -> Path:
    """An MLmodel file as mlflow.<flavor>.save_model writes it (MLflow 2.x/3.x layout)."""
    flavors: dict[str, Any] = {
        "python_function": {
            "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
            "loader_module": loader or f"mlflow.{flavor}",
            "python_version": "3.11.7",
            **({"model_path": conf["data"]} if "data" in conf else {}),
        }
    }
    if flavor != "python_function":
        flavors[flavor] = {"code": None, **conf}
    document: dict[str, Any] = {
        "artifact_path": "model",
        "flavors": flavors,
        "mlflow_version": "2.19.0",
        "model_size_bytes": 1234,
        "model_uuid": "5b2c8e1f0a9d4c3b8e7f6a5d4c3b2a19",
        "run_id": RUN_ID,
        "utc_time_created": "2025-01-15 10:00:00.000000",
    }
    if inputs is not None:
        document["signature"] = {"inputs": inputs, "outputs": outputs, "params": None}
    (folder / "MLmodel").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def test_sklearn_pickle_model_with_its_signature(
    frame: pd.DataFrame, binary: pd.Series, tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(frame, binary)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    conf = {"pickled_model": "model.pkl", "serialization_format": "pickle"}
    write_mlmodel(tmp_path, "sklearn", {**conf, "sklearn_version": "1.5.1"})

    with pytest.raises(InvalidInput, match=r"is a pickle.*allow_pickle=True"):
        import_mlflow_model(tmp_path)
    imported = import_mlflow_model(tmp_path / "MLmodel", allow_pickle=True)

    assert imported.flavor == "sklearn" and imported.run_id == RUN_ID
    assert imported.mlflow_flavors == ["python_function", "sklearn"]
    assert (
        imported.meta["mlflow_version"] == "2.19.0" and imported.meta["mlflow_flavor"] == "sklearn"
    )
    np.testing.assert_array_equal(imported.model.predict(frame), model.predict(frame))
    assert imported.signature == {
        "kind": "table",
        "inputs": [
            {
                "name": name,
                "type": "float",
                "nullable": True,
                "required": True,
                "mlflow_type": "double",
            }
            for name in COLUMNS
        ],
        "outputs": [
            {
                "name": "output_0",
                "type": "integer",
                "nullable": True,
                "required": True,
                "mlflow_type": "long",
            }
        ],
    }
    from shipyard.registry.signature import Signature

    signature = Signature.from_json(imported.signature)
    assert signature.input_names == COLUMNS and signature.output_names == ["output_0"]
    # The imported model goes on through shipyard's own flavor.
    flavor = flavor_for(imported.model)
    assert flavor.name == imported.flavor
    saved = tmp_path / "shipyard"
    saved.mkdir()
    meta = flavor.save(imported.model, saved)
    np.testing.assert_array_equal(
        flavor.predict(flavor.load(saved, meta), frame, meta), model.predict(frame)
    )


def test_sklearn_cloudpickle_model(frame: pd.DataFrame, binary: pd.Series, tmp_path: Path) -> None:
    cloudpickle = pytest.importorskip("cloudpickle")
    from sklearn.tree import DecisionTreeClassifier

    model = DecisionTreeClassifier(max_depth=2, random_state=0).fit(frame, binary)
    (tmp_path / "model.pkl").write_bytes(cloudpickle.dumps(model))
    conf = {"pickled_model": "model.pkl", "serialization_format": "cloudpickle"}
    imported = import_mlflow_model(write_mlmodel(tmp_path, "sklearn", conf), allow_pickle=True)
    np.testing.assert_array_equal(imported.model.predict_proba(frame), model.predict_proba(frame))


@pytest.mark.filterwarnings("ignore:.*(UBJSON|file format):UserWarning")  # MLflow 2's .xgb name
@pytest.mark.parametrize(
    ("file", "model_class"),
    [("model.xgb", "xgboost.sklearn.XGBClassifier"), ("model.ubj", "xgboost.core.Booster")],
)
def test_xgboost_model(
    file: str, model_class: str, frame: pd.DataFrame, binary: pd.Series, tmp_path: Path
) -> None:
    import xgboost

    model = xgboost.XGBClassifier(n_estimators=4, max_depth=2).fit(frame, binary)
    saved = model if model_class.endswith("XGBClassifier") else model.get_booster()
    saved.save_model(tmp_path / file)
    conf = {"data": file, "model_class": model_class, "model_format": file[-3:]}
    imported = import_mlflow_model(write_mlmodel(tmp_path, "xgboost", conf))

    assert imported.flavor == "xgboost" and type(imported.model) is type(saved)
    probabilities = model.predict_proba(frame)
    if isinstance(imported.model, xgboost.Booster):
        got = imported.model.predict(xgboost.DMatrix(frame))
        np.testing.assert_allclose(got, probabilities[:, 1], rtol=1e-6)
    else:
        np.testing.assert_array_equal(imported.model.predict_proba(frame), probabilities)
    assert flavor_for(imported.model).name == "xgboost"


def test_lightgbm_booster_and_pickled_classifier(
    frame: pd.DataFrame, binary: pd.Series, tmp_path: Path
) -> None:
    import lightgbm

    model = lightgbm.LGBMClassifier(n_estimators=4, num_leaves=4, min_child_samples=5, verbose=-1)
    model.fit(frame, binary)
    booster_dir, pickled_dir = tmp_path / "booster", tmp_path / "pickled"
    booster_dir.mkdir()
    pickled_dir.mkdir()
    model.booster_.save_model(booster_dir / "model.lgb")
    write_mlmodel(
        booster_dir, "lightgbm", {"data": "model.lgb", "model_class": "lightgbm.basic.Booster"}
    )
    (pickled_dir / "model.pkl").write_bytes(pickle.dumps(model))
    conf = {"data": "model.pkl", "model_class": "lightgbm.sklearn.LGBMClassifier"}
    write_mlmodel(pickled_dir, "lightgbm", conf)

    booster = import_mlflow_model(booster_dir)
    assert booster.flavor == "lightgbm" and isinstance(booster.model, lightgbm.Booster)
    np.testing.assert_allclose(booster.model.predict(frame), model.predict_proba(frame)[:, 1])

    with pytest.raises(InvalidInput, match="allow_pickle"):
        import_mlflow_model(pickled_dir)
    classifier = import_mlflow_model(pickled_dir, allow_pickle=True)
    np.testing.assert_array_equal(classifier.model.predict(frame), model.predict(frame))


def test_onnx_model_with_a_tensor_signature(
    frame: pd.DataFrame, binary: pd.Series, tmp_path: Path
) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    original = LogisticRegression().fit(frame.to_numpy(), binary)
    proto = convert_sklearn(
        original,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(original): {"zipmap": False}},
    )
    (tmp_path / "model.onnx").write_bytes(proto.SerializeToString())
    tensor = '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}]'
    conf = {"data": "model.onnx", "onnx_version": "1.17.0", "providers": ["CPUExecutionProvider"]}
    imported = import_mlflow_model(write_mlmodel(tmp_path, "onnx", conf, inputs=tensor))

    assert imported.flavor == "onnx" and imported.signature is not None
    assert imported.signature["kind"] == "tensor"
    assert imported.signature["inputs"] == [
        {
            "name": "input_0",
            "type": "float",
            "nullable": True,
            "required": True,
            "mlflow_type": "tensor",
            "dtype": "float32",
            "shape": [-1, 4],
        }
    ]
    from shipyard.registry.signature import Signature

    assert Signature.from_json(imported.signature).kind == "tensor"
    flavor = get_flavor("onnx")
    saved = tmp_path / "shipyard"
    saved.mkdir()
    meta = flavor.save(imported.model, saved)
    predictions = flavor.predict(flavor.load(saved, meta), frame, meta)
    np.testing.assert_array_equal(predictions, original.predict(frame.to_numpy()))


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_pytorch_torchscript_model_and_a_pickled_module(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    scripted_dir, pickled_dir = tmp_path / "scripted", tmp_path / "pickled"
    for folder in (scripted_dir, pickled_dir):
        (folder / "data").mkdir(parents=True)
        write_mlmodel(folder, "pytorch", {"model_data": "data", "pytorch_version": "2.5.1"})
    torch.jit.save(torch.jit.script(net), str(scripted_dir / "data" / "model.pth"))
    torch.save(net, pickled_dir / "data" / "model.pth")

    imported = import_mlflow_model(scripted_dir)
    assert imported.flavor == "pytorch"
    flavor = get_flavor("pytorch")
    with torch.no_grad():
        expected = net(torch.tensor(frame.to_numpy(), dtype=torch.float32)).numpy().ravel()
    np.testing.assert_array_equal(flavor.predict(imported.model, frame, {}), expected)

    with pytest.raises(InvalidInput, match=r"not TorchScript.*torch.jit.script"):
        import_mlflow_model(pickled_dir)


def test_pure_python_function_model_is_refused_with_what_is_supported(tmp_path: Path) -> None:
    write_mlmodel(tmp_path, "python_function", {}, loader="mlflow.pyfunc.model")
    with pytest.raises(InvalidInput) as raised:
        import_mlflow_model(tmp_path)
    message = str(raised.value)
    assert "pure python_function model" in message and "mlflow.pyfunc.model" in message
    assert "lightgbm, onnx, pytorch, sklearn, xgboost" in message
    assert "pyfunc class" in message


def test_other_flavors_missing_files_and_folders(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no MLmodel file"):
        import_mlflow_model(tmp_path)

    write_mlmodel(tmp_path, "tensorflow", {"saved_model_dir": "tfmodel"}, inputs=None)
    with pytest.raises(InvalidInput, match=r"flavors python_function, tensorflow; shipyard"):
        import_mlflow_model(tmp_path)

    write_mlmodel(tmp_path, "xgboost", {"data": "model.xgb"})
    with pytest.raises(NotFound, match=r"model file model.xgb is missing"):
        import_mlflow_model(tmp_path)

    (tmp_path / "MLmodel").write_text("flavors: [unclosed\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        import_mlflow_model(tmp_path)


def test_signature_types_map_to_shipyard_logical_types() -> None:
    columns = [
        {"type": "double", "name": "x"},
        {"type": "float", "name": "f"},
        {"type": "long", "name": "n"},
        {"type": "integer", "name": "i"},
        {"type": "boolean", "name": "flag"},
        {"type": "string", "name": "city", "required": False},
        {"type": "datetime", "name": "at"},
        {"type": "binary", "name": "blob"},
        {"type": {"type": "array", "items": {"type": "double"}}, "name": "list"},
    ]
    converted = convert_signature({"inputs": json.dumps(columns), "outputs": None})
    assert converted is not None and converted["outputs"] is None
    types = {spec["name"]: spec["type"] for spec in converted["inputs"]}
    assert types == {
        "x": "float",
        "f": "float",
        "n": "integer",
        "i": "integer",
        "flag": "boolean",
        "city": "string",
        "at": "datetime",
        "blob": "other",
        "list": "other",
    }
    assert converted["inputs"][5]["required"] is False
    assert convert_signature(None) is None

    tensors = [
        {"type": "tensor", "name": "pixels", "tensor-spec": {"dtype": "uint8", "shape": [-1, 28]}},
        {"type": "tensor", "name": "mask", "tensor-spec": {"dtype": "bool", "shape": [-1]}},
    ]
    converted = convert_signature({"inputs": json.dumps(tensors)})
    assert converted is not None and converted["kind"] == "tensor"
    assert [spec["type"] for spec in converted["inputs"]] == ["integer", "boolean"]
    with pytest.raises(InvalidInput, match="not JSON"):
        convert_signature({"inputs": "[{oops"})


def test_a_file_the_library_cannot_read_gets_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "model.lgb").write_text("not a lightgbm model\n")
    conf = {"data": "model.lgb", "model_class": "lightgbm.basic.Booster", "lgb_version": "4.5.0"}
    write_mlmodel(tmp_path, "lightgbm", conf)
    with pytest.raises(InvalidInput, match=r"lightgbm model .* could not be loaded.*lgb_version"):
        import_mlflow_model(tmp_path)
