"""Flavors: each real library's model saved, loaded and run the same way as the original.

Every model is tiny and trained on a seeded frame. After `save` -> `load`, `predict` and
`predict_proba` must give exactly what the original gives. Saving twice gives byte-identical
files for every flavor here: sklearn (pickle protocol 5), XGBoost (UBJSON), LightGBM (model
text), ONNX (deterministic protobuf), PyTorch (torch.save / torch.jit.save archives, same
bytes for the same tensors in torch 2.13) and pyfunc (its own files, or a protocol 5 pickle).
A pyfunc class's own `save` decides for itself.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shipyard.errors import InvalidInput
from shipyard.registry.flavors import (
    UnsupportedModel,
    base,
    flavor_for,
    flavor_names,
    get_flavor,
    register_flavor,
)
from shipyard.registry.flavors.base import Flavor
from shipyard.registry.flavors.pickles import modules_in

COLUMNS = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(rng.normal(size=(60, 4)), columns=COLUMNS)


@pytest.fixture(scope="module")
def binary(frame: pd.DataFrame) -> pd.Series:
    return (frame["a"] + frame["b"] > 0).astype(int)


@pytest.fixture(scope="module")
def target(frame: pd.DataFrame) -> pd.Series:
    return 2.0 * frame["a"] - frame["c"] + 0.5


def round_trip(flavor: Flavor, model: Any, folder: Path) -> tuple[Any, dict[str, Any]]:
    """Save into `folder`, check the listed files are those written, load back."""
    folder.mkdir()
    meta = flavor.save(model, folder)
    written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert meta["files"] == written
    return flavor.load(folder, meta), meta


def assert_same_predictions(
    flavor: Flavor, original: Any, loaded: Any, frame: pd.DataFrame, meta: dict[str, Any]
) -> None:
    np.testing.assert_array_equal(
        flavor.predict(loaded, frame, meta), flavor.predict(original, frame, meta)
    )
    before, after = (
        flavor.predict_proba(original, frame, meta),
        flavor.predict_proba(loaded, frame, meta),
    )
    assert (before is None) == (after is None)
    if before is not None:
        np.testing.assert_array_equal(after, before)


def saved_bytes(flavor: Flavor, model: Any, folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    meta = flavor.save(model, folder)
    return {name: (folder / name).read_bytes() for name in meta["files"]}


def assert_deterministic(flavor: Flavor, model: Any, tmp_path: Path) -> None:
    first = saved_bytes(flavor, model, tmp_path / "first")
    assert first == saved_bytes(flavor, model, tmp_path / "second")


# --- scikit-learn -------------------------------------------------------------------------


def test_sklearn_classifier_round_trip(
    frame: pd.DataFrame, binary: pd.Series, tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(frame, binary)
    flavor = flavor_for(model)
    loaded, meta = round_trip(flavor, model, tmp_path / "model")

    assert flavor.name == "sklearn"
    assert meta["task"] == "classifier" and meta["classes"] == [0, 1]
    assert meta["feature_names"] == COLUMNS and meta["n_features"] == 4
    assert meta["files"] == ["model.pkl"] and meta["pickle_protocol"] == 5
    assert "scikit-learn" in flavor.dependencies(meta)
    assert_same_predictions(flavor, model, loaded, frame, meta)
    np.testing.assert_array_equal(flavor.predict(loaded, frame, meta), model.predict(frame))
    np.testing.assert_array_equal(
        flavor.predict_proba(loaded, frame, meta), model.predict_proba(frame)
    )
    assert_deterministic(flavor, model, tmp_path)


def test_sklearn_regressor_trained_on_an_array(
    frame: pd.DataFrame, target: pd.Series, tmp_path: Path
) -> None:
    from sklearn.tree import DecisionTreeRegressor

    model = DecisionTreeRegressor(max_depth=3, random_state=0).fit(frame.to_numpy(), target)
    flavor = flavor_for(model)
    loaded, meta = round_trip(flavor, model, tmp_path / "model")

    assert meta["task"] == "regressor" and meta["classes"] is None
    assert meta["feature_names"] is None  # columns are then taken by position
    with warnings.catch_warnings(record=True) as recorded:  # no "X has feature names" warning
        warnings.simplefilter("always")
        predictions = flavor.predict(loaded, frame, meta)
    assert not [w for w in recorded if "feature names" in str(w.message)]
    np.testing.assert_array_equal(predictions, model.predict(frame.to_numpy()))
    assert flavor.predict_proba(loaded, frame, meta) is None
    assert_deterministic(flavor, model, tmp_path)


def mixed_frame(frame: pd.DataFrame) -> pd.DataFrame:
    mixed = frame.copy()
    mixed["city"] = np.where(frame["d"] > 0, "oslo", "lima")
    return mixed


def test_sklearn_pipeline_with_column_transformer(
    frame: pd.DataFrame, binary: pd.Series, tmp_path: Path
) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    data = mixed_frame(frame)
    labels = np.where(binary == 1, "yes", "no")
    prepare = ColumnTransformer(
        [("numbers", StandardScaler(), COLUMNS), ("city", OneHotEncoder(), ["city"])]
    )
    model = Pipeline([("prepare", prepare), ("fit", LogisticRegression())]).fit(data, labels)
    flavor = flavor_for(model)
    loaded, meta = round_trip(flavor, model, tmp_path / "model")

    assert flavor.name == "sklearn" and meta["class"] == "sklearn.pipeline.Pipeline"
    assert meta["classes"] == ["no", "yes"] and meta["task"] == "classifier"
    assert meta["feature_names"] == [*COLUMNS, "city"]
    shuffled = data[["city", "d", "c", "b", "a"]]  # columns are put back in the model's order
    assert_same_predictions(flavor, model, loaded, shuffled, meta)
    np.testing.assert_array_equal(flavor.predict(loaded, shuffled, meta), model.predict(data))
    with pytest.raises(InvalidInput, match=r"columns \['city'\], missing"):
        flavor.predict(loaded, frame, meta)
    assert_deterministic(flavor, model, tmp_path)

    transformer = flavor_for(prepare)  # a fitted ColumnTransformer on its own
    loaded_prepare, prepare_meta = round_trip(transformer, prepare, tmp_path / "prepare")
    assert transformer.name == "sklearn" and prepare_meta["task"] is None
    np.testing.assert_array_equal(
        transformer.predict(loaded_prepare, data, prepare_meta), prepare.transform(data)
    )


def test_sklearn_pipeline_depends_on_the_libraries_inside_it(
    frame: pd.DataFrame, binary: pd.Series, tmp_path: Path
) -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier

    model = make_pipeline(StandardScaler(), XGBClassifier(n_estimators=3, max_depth=2))
    model.fit(frame, binary)
    flavor = flavor_for(model)
    meta = flavor.save(model, tmp_path)

    assert flavor.name == "sklearn"
    assert {"scikit-learn", "numpy"} <= set(flavor.dependencies(meta))
    assert any(name.startswith("xgboost") for name in flavor.dependencies(meta))


# --- XGBoost ------------------------------------------------------------------------------


def test_xgboost_classifier_and_regressor(
    frame: pd.DataFrame, binary: pd.Series, target: pd.Series, tmp_path: Path
) -> None:
    from xgboost import XGBClassifier, XGBRegressor

    classifier = XGBClassifier(n_estimators=5, max_depth=2, random_state=0).fit(frame, binary)
    flavor = flavor_for(classifier)
    loaded, meta = round_trip(flavor, classifier, tmp_path / "classifier")

    assert flavor.name == "xgboost" and type(loaded) is XGBClassifier
    assert meta["files"] == ["model.ubj"] and meta["task"] == "classifier"
    assert meta["classes"] == [0, 1] and meta["feature_names"] == COLUMNS
    assert_same_predictions(flavor, classifier, loaded, frame, meta)
    np.testing.assert_array_equal(flavor.predict(loaded, frame, meta), classifier.predict(frame))
    np.testing.assert_array_equal(
        flavor.predict_proba(loaded, frame, meta), classifier.predict_proba(frame)
    )
    assert_deterministic(flavor, classifier, tmp_path / "c")

    regressor = XGBRegressor(n_estimators=5, max_depth=2, random_state=0).fit(frame, target)
    loaded, meta = round_trip(flavor_for(regressor), regressor, tmp_path / "regressor")
    assert type(loaded) is XGBRegressor and meta["task"] == "regressor"
    assert flavor.predict_proba(loaded, frame, meta) is None
    np.testing.assert_array_equal(flavor.predict(loaded, frame, meta), regressor.predict(frame))
    assert_deterministic(flavor, regressor, tmp_path / "r")


def test_xgboost_booster(frame: pd.DataFrame, binary: pd.Series, tmp_path: Path) -> None:
    import xgboost

    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 2},
        xgboost.DMatrix(frame, label=binary),
        num_boost_round=4,
    )
    flavor = flavor_for(booster)
    loaded, meta = round_trip(flavor, booster, tmp_path / "model")

    assert flavor.name == "xgboost" and isinstance(loaded, xgboost.Booster)
    assert meta["task"] == "classifier" and meta["classes"] == [0, 1]
    assert_same_predictions(flavor, booster, loaded, frame, meta)
    positive = booster.predict(xgboost.DMatrix(frame))
    np.testing.assert_array_equal(flavor.predict_proba(loaded, frame, meta)[:, 1], positive)
    np.testing.assert_array_equal(flavor.predict(loaded, frame, meta), positive > 0.5)
    assert_deterministic(flavor, booster, tmp_path)


# --- LightGBM -----------------------------------------------------------------------------

LGBM = {"n_estimators": 5, "num_leaves": 4, "min_child_samples": 5, "verbose": -1}


def test_lightgbm_classifier_with_string_labels(
    frame: pd.DataFrame, binary: pd.Series, tmp_path: Path
) -> None:
    from lightgbm import Booster, LGBMClassifier

    labels = np.where(binary == 1, "churn", "stay")
    model = LGBMClassifier(**LGBM).fit(frame, labels)
    flavor = flavor_for(model)
    loaded, meta = round_trip(flavor, model, tmp_path / "model")

    assert flavor.name == "lightgbm" and isinstance(loaded, Booster)
    assert meta["files"] == ["model.lgb"] and meta["task"] == "classifier"
    assert meta["classes"] == ["churn", "stay"] and meta["feature_names"] == COLUMNS
    assert_same_predictions(flavor, model, loaded, frame, meta)
    np.testing.assert_array_equal(flavor.predict(loaded, frame, meta), model.predict(frame))
    np.testing.assert_array_equal(
        flavor.predict_proba(loaded, frame, meta), model.predict_proba(frame)
    )
    assert_deterministic(flavor, model, tmp_path)


def test_lightgbm_regressor_and_booster(
    frame: pd.DataFrame, binary: pd.Series, target: pd.Series, tmp_path: Path
) -> None:
    import lightgbm
    from lightgbm import LGBMRegressor

    regressor = LGBMRegressor(**LGBM).fit(frame.to_numpy(), target)
    flavor = flavor_for(regressor)
    loaded, meta = round_trip(flavor, regressor, tmp_path / "regressor")
    assert meta["task"] == "regressor" and meta["feature_names"] is None
    assert flavor.predict_proba(loaded, frame, meta) is None
    np.testing.assert_array_equal(
        flavor.predict(loaded, frame, meta), regressor.predict(frame.to_numpy())
    )
    assert_deterministic(flavor, regressor, tmp_path / "r")

    params = {"objective": "binary", "num_leaves": 4, "min_data_in_leaf": 5, "verbose": -1}
    booster = lightgbm.train(params, lightgbm.Dataset(frame, label=binary), num_boost_round=4)
    assert flavor_for(booster).name == "lightgbm"
    loaded, meta = round_trip(flavor, booster, tmp_path / "booster")
    assert meta["task"] == "classifier" and meta["classes"] == [0, 1]
    assert_same_predictions(flavor, booster, loaded, frame, meta)
    np.testing.assert_array_equal(
        flavor.predict_proba(loaded, frame, meta)[:, 1], booster.predict(frame)
    )


# --- ONNX ---------------------------------------------------------------------------------


def to_onnx(model: Any, n_features: int, *, zipmap: bool | None = False) -> Any:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(model): {"zipmap": False}} if zipmap is False else None
    return convert_sklearn(
        model, initial_types=[("input", FloatTensorType([None, n_features]))], options=options
    )


def test_onnx_classifier_from_skl2onnx(
    frame: pd.DataFrame, binary: pd.Series, tmp_path: Path
) -> None:
    import onnxruntime
    from sklearn.linear_model import LogisticRegression

    original = LogisticRegression().fit(frame.to_numpy(), binary)
    model = to_onnx(original, 4)
    flavor = flavor_for(model)
    loaded, meta = round_trip(flavor, model, tmp_path / "model")

    assert flavor.name == "onnx" and isinstance(loaded, onnxruntime.InferenceSession)
    assert meta["task"] == "classifier" and meta["classes"] == [0, 1]
    assert meta["label_output"] == "label" and meta["proba_output"] == "probabilities"
    assert meta["n_features"] == 4 and meta["inputs"][0]["dtype"] == "float32"
    assert_same_predictions(flavor, model, loaded, frame, meta)
    array = frame.to_numpy()
    np.testing.assert_array_equal(flavor.predict(loaded, frame, meta), original.predict(array))
    np.testing.assert_allclose(
        flavor.predict_proba(loaded, frame, meta), original.predict_proba(array), atol=1e-5
    )
    assert_deterministic(flavor, model, tmp_path)
    named = {**meta, "feature_names": COLUMNS}  # as shipyard's ONNX compiler records them
    np.testing.assert_array_equal(
        flavor.predict_proba(loaded, frame[COLUMNS[::-1]], named),
        flavor.predict_proba(loaded, frame, meta),
    )

    zipped = to_onnx(original, 4, zipmap=True)  # probabilities as a list of {label: p}
    zipped_loaded, zipped_meta = round_trip(flavor, zipped, tmp_path / "zipmap")
    np.testing.assert_allclose(
        flavor.predict_proba(zipped_loaded, frame, zipped_meta),
        flavor.predict_proba(loaded, frame, meta),
        atol=1e-6,
    )


def test_onnx_regressor_and_inputs_by_name(
    frame: pd.DataFrame, target: pd.Series, tmp_path: Path
) -> None:
    import onnx
    from onnx import TensorProto, helper
    from sklearn.linear_model import LinearRegression

    original = LinearRegression().fit(frame.to_numpy(), target)
    model = to_onnx(original, 4, zipmap=None)  # a regressor has no zipmap option
    flavor = get_flavor("onnx")
    loaded, meta = round_trip(flavor, model, tmp_path / "regressor")
    predictions = flavor.predict(loaded, frame, meta)
    assert meta["task"] is None and predictions.shape == (len(frame),)
    np.testing.assert_allclose(predictions, original.predict(frame.to_numpy()), rtol=1e-4)
    assert flavor.predict_proba(loaded, frame, meta) is None

    # Two graph inputs: each is fed from the column of its name, whatever the frame's order.
    graph = helper.make_graph(
        [helper.make_node("Sub", ["a", "b"], ["difference"])],
        "difference",
        [helper.make_tensor_value_info(name, TensorProto.DOUBLE, [None, 1]) for name in "ab"],
        [helper.make_tensor_value_info("difference", TensorProto.DOUBLE, [None, 1])],
    )
    two_inputs = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(two_inputs)
    loaded, meta = round_trip(flavor, two_inputs, tmp_path / "two")
    assert meta["feature_names"] == ["a", "b"]
    np.testing.assert_array_equal(
        flavor.predict(loaded, frame[["d", "b", "a"]], meta), (frame["a"] - frame["b"]).to_numpy()
    )
    with pytest.raises(InvalidInput, match="one column per input"):
        flavor.predict(loaded, frame[["c", "d"]], meta)


# --- PyTorch ------------------------------------------------------------------------------

NETS = """
import torch


class TinyNet(torch.nn.Module):
    def __init__(self, n_in, hidden=3):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )

    def forward(self, x):
        return self.layers(x)


class NoArguments(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.linear(x)
"""


@pytest.fixture
def nets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A real, importable module of nn.Module classes, as a user's project would have."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "shipyard_test_nets.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(folder))
    import shipyard_test_nets  # type: ignore[import-not-found]

    yield shipyard_test_nets
    sys.modules.pop("shipyard_test_nets", None)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_pytorch_torchscript(nets: ModuleType, frame: pd.DataFrame, tmp_path: Path) -> None:
    import torch

    model = torch.jit.script(nets.TinyNet(4))
    flavor = flavor_for(model)
    loaded, meta = round_trip(flavor, model, tmp_path / "model")

    assert flavor.name == "pytorch" and meta["format"] == "torchscript"
    assert meta["files"] == ["model.pt"]
    assert_same_predictions(flavor, model, loaded, frame, meta)
    with torch.no_grad():
        expected = model(torch.tensor(frame.to_numpy(), dtype=torch.float32)).numpy().ravel()
    np.testing.assert_array_equal(flavor.predict(loaded, frame, meta), expected)
    assert flavor.predict_proba(loaded, frame, meta) is None
    assert_deterministic(flavor, model, tmp_path)


def test_pytorch_state_dict_with_init_kwargs(
    nets: ModuleType, frame: pd.DataFrame, tmp_path: Path
) -> None:
    from shipyard.registry.flavors import TorchModel

    module = nets.TinyNet(4, hidden=5)
    model = TorchModel(module, init_kwargs={"n_in": 4, "hidden": 5})
    flavor = flavor_for(model)
    loaded, meta = round_trip(flavor, model, tmp_path / "model")

    assert flavor.name == "pytorch" and meta["format"] == "state_dict"
    assert meta["module_class"] == "shipyard_test_nets:TinyNet"
    assert meta["init_kwargs"] == {"n_in": 4, "hidden": 5} and type(loaded) is nets.TinyNet
    assert not loaded.training
    assert_same_predictions(flavor, model, loaded, frame, meta)
    assert "torch" in flavor.dependencies(meta)
    assert_deterministic(flavor, model, tmp_path)

    plain = nets.NoArguments()  # a class built without arguments needs no TorchModel
    loaded, meta = round_trip(flavor_for(plain), plain, tmp_path / "plain")
    assert flavor.predict(loaded, frame, meta).shape == (len(frame), 2)
    assert_same_predictions(flavor, plain, loaded, frame, meta)

    with pytest.raises(InvalidInput, match=r"needs the arguments \['n_in'\].*TorchModel"):
        flavor.save(nets.TinyNet(4), tmp_path)
    with pytest.raises(InvalidInput, match="JSON values"):
        flavor.save(TorchModel(module, {"n_in": 4, "hidden": object()}), tmp_path)


def test_pytorch_class_defined_in_a_function_is_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")

    class Local(torch.nn.Module):  # type: ignore[misc]
        def forward(self, x: Any) -> Any:
            return x

    with pytest.raises(InvalidInput, match=r"defined in a function.*move the class"):
        get_flavor("pytorch").save(Local(), tmp_path)


# --- pyfunc -------------------------------------------------------------------------------


class MeanThreshold:
    """A pyfunc with save/load: says 1 when a row's mean is above what it learned."""

    def __init__(self, threshold: float = 0.0) -> None:
        self.threshold = threshold
        self.task = "classifier"

    def save(self, folder: Path) -> None:
        (folder / "threshold.txt").write_text(repr(self.threshold))

    def load(self, folder: Path) -> None:
        self.threshold = float((folder / "threshold.txt").read_text())

    def predict(self, frame: pd.DataFrame) -> Any:
        return (frame.mean(axis=1) > self.threshold).astype(int).to_numpy()

    def predict_proba(self, frame: pd.DataFrame) -> Any:
        positive = 1 / (1 + np.exp(-(frame.mean(axis=1) - self.threshold)))
        return np.column_stack([1 - positive, positive])


class Pickled:
    """A pyfunc without save: pickled; load() reopens what a pickle cannot hold."""

    def __init__(self, weights: list[float]) -> None:
        self.weights = np.asarray(weights)
        self.opened_from: str | None = None

    def load(self, folder: Path) -> None:
        self.opened_from = folder.name

    def predict(self, frame: pd.DataFrame) -> Any:
        return frame.to_numpy() @ self.weights


class NeedsArguments(MeanThreshold):
    def __init__(self, threshold: float) -> None:
        super().__init__(threshold)


def test_pyfunc_with_save_and_load(frame: pd.DataFrame, tmp_path: Path) -> None:
    model = MeanThreshold(0.1)
    flavor = flavor_for(model)
    loaded, meta = round_trip(flavor, model, tmp_path / "model")

    assert flavor.name == "pyfunc" and meta["storage"] == "save"
    assert meta["python_class"].endswith(":MeanThreshold") and meta["task"] == "classifier"
    assert meta["files"] == ["threshold.txt"] and loaded.threshold == 0.1
    assert meta["has_predict_proba"]
    assert_same_predictions(flavor, model, loaded, frame, meta)
    assert_deterministic(flavor, model, tmp_path)

    with pytest.raises(InvalidInput, match="constructor must not require arguments"):
        flavor.save(NeedsArguments(0.2), tmp_path / "other")


def test_pyfunc_pickled_when_it_has_no_save(frame: pd.DataFrame, tmp_path: Path) -> None:
    model = Pickled([1.0, -1.0, 0.5, 0.0])
    flavor = flavor_for(model)
    loaded, meta = round_trip(flavor, model, tmp_path / "model")

    assert meta["storage"] == "pickle" and meta["files"] == ["model.pkl"]
    assert loaded.opened_from == "model"  # load(folder) was called after unpickling
    assert flavor.predict_proba(loaded, frame, meta) is None
    assert "numpy" in flavor.dependencies(meta)
    assert_same_predictions(flavor, model, loaded, frame, meta)
    assert_deterministic(flavor, model, tmp_path)


def test_pyfunc_class_must_be_importable(tmp_path: Path) -> None:
    class Local:
        def load(self, folder: Path) -> None: ...

        def predict(self, frame: pd.DataFrame) -> Any: ...

    assert flavor_for(Local()).name == "pyfunc"
    with pytest.raises(InvalidInput, match="defined in a function"):
        get_flavor("pyfunc").save(Local(), tmp_path)


# --- choosing a flavor --------------------------------------------------------------------


@pytest.mark.parametrize("model", [{"weights": [1, 2]}, lambda frame: frame, 3, MeanThreshold])
def test_unsupported_models_get_a_clear_error(model: Any) -> None:
    with pytest.raises(UnsupportedModel) as raised:
        flavor_for(model)
    message = str(raised.value)
    assert type(model).__qualname__ in message
    assert "sklearn" in message and "pyfunc" in message and "load(self, folder)" in message
    assert isinstance(raised.value, InvalidInput)


def test_get_flavor_knows_the_builtins_and_names_them_when_asked_for_another() -> None:
    assert set(flavor_names()) >= {"sklearn", "xgboost", "lightgbm", "onnx", "pytorch", "pyfunc"}
    assert get_flavor("xgboost").name == "xgboost"
    with pytest.raises(InvalidInput, match=r"unknown flavor 'tensorflow'.*lightgbm.*sklearn"):
        get_flavor("tensorflow")


class DictFlavor:
    """A plugin-style flavor: takes over dicts of weights."""

    name = "dicts"

    def handles(self, model: Any) -> bool:
        return isinstance(model, dict)

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        return {"files": []}

    def load(self, folder: Path, meta: dict[str, Any]) -> Any:
        return {}

    def predict(self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]) -> Any:
        return np.zeros(len(frame))

    def predict_proba(self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]) -> Any:
        return None

    def dependencies(self, meta: dict[str, Any]) -> dict[str, str]:
        return {}


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_FLAVORS", dict(base._FLAVORS))
    monkeypatch.setattr(base, "_plugins_loaded", True)


@pytest.mark.usefixtures("isolated_registry")
def test_registered_flavor_is_asked_first() -> None:
    register_flavor(DictFlavor())
    assert flavor_for({"w": 1}).name == "dicts" and flavor_names()[0] == "dicts"
    with pytest.raises(InvalidInput, match=r"is not a flavor.*missing: handles"):
        register_flavor(object())  # type: ignore[arg-type]


@pytest.mark.usefixtures("isolated_registry")
def test_entry_point_plugins_load_and_a_broken_one_only_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "shipyard_test_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: shipyard-test-plugin\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""\
            [shipyard.flavors]
            dicts = {DictFlavor.__module__}:DictFlavor
            broken = shipyard_no_such_module:Flavor
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(base, "_plugins_loaded", False)

    with pytest.warns(RuntimeWarning, match="plugin 'broken'.*skipped.*ModuleNotFoundError"):
        assert get_flavor("dicts").name == "dicts"
    assert "broken" not in flavor_names()


def test_importing_the_flavors_imports_no_ml_library() -> None:
    code = (
        "import sys, shipyard.registry.flavors, shipyard.registry.mlflow_import\n"
        "heavy = {'sklearn', 'xgboost', 'lightgbm', 'onnx', 'onnxruntime', 'torch'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_modules_in_reads_a_pickle_without_running_it() -> None:
    import pickle
    from collections import OrderedDict
    from fractions import Fraction

    data = pickle.dumps([OrderedDict(a=Fraction(1, 3)), np.arange(3)], protocol=5)
    assert {"collections", "fractions", "numpy"} <= modules_in(data)
    assert modules_in(pickle.dumps(OrderedDict(), protocol=2)) == {"collections"}


def test_sklearn_models_reading_by_position_answer_the_same_from_an_array() -> None:
    """The sklearn flavor hands positional models a float array instead of the DataFrame (a
    pandas frame costs scikit-learn ~1 ms of validation per call): the answers must not move."""
    import warnings

    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from shipyard.registry.flavors.sklearn import SklearnFlavor, _positional

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=300),
            "b": pd.array(rng.integers(0, 50, 300), dtype="Int64"),
            "c": rng.random(300) > 0.5,
        }
    )
    target = (frame["a"] + frame["b"].astype(float) / 25 > 1).astype(int)
    with_missing = frame.copy()
    with_missing.loc[::7, "b"] = pd.NA
    scaled = ColumnTransformer([("scale", StandardScaler(), ["a"])], remainder="passthrough")
    cases = [
        (LogisticRegression(max_iter=500), frame, True),
        (RandomForestClassifier(n_estimators=20, random_state=0), frame, True),
        (make_pipeline(StandardScaler(), KNeighborsClassifier()), frame, True),
        (HistGradientBoostingClassifier(max_iter=20), with_missing, True),
        (make_pipeline(scaled, LogisticRegression()), frame, False),  # reads "a" by name
    ]
    flavor = SklearnFlavor()
    for model, data, positional in cases:
        model.fit(data, target)
        meta = {"feature_names": list(data.columns)}
        assert _positional(model) is positional, model
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "X does not have valid feature names"
            got = flavor.predict(model, data, meta)
            proba = flavor.predict_proba(model, data, meta)
        assert np.array_equal(got, model.predict(data)), model
        assert proba is not None and np.array_equal(proba, model.predict_proba(data)), model
