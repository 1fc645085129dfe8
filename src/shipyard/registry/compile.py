"""Compiling a model version to ONNX, kept only when it predicts what the original predicts.

>>> check = compile_onnx("churn@3", "churn-holdout@1")     # raises EquivalenceFailed if not
>>> shipyard.registry.get("churn@3").load().flavor.name      # "onnx" from now on
'onnx'

scikit-learn estimators and pipelines go through skl2onnx, XGBoost and LightGBM models
through onnxmltools. The ONNX graph takes one float tensor: the signature's input columns,
in order, as float32; so only models whose inputs are all numeric (or boolean) compile, and
a model with a string or categorical input is refused, naming those columns.

Both the original (through its own flavor) and the compiled graph (through the `onnx` flavor,
as serving will run it) predict the held-out rows; classifiers must give the same labels and
probabilities within `atol + rtol * |original|`, regressors the same values within it. Only
then is the `.onnx` file stored (by sha256, with a manifest, like a version's own files) and
the version's `onnx` column set, in one transaction; a version whose check fails keeps
whatever it had before, and `EquivalenceFailed` carries the failed check.
"""

from __future__ import annotations

import copy
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput, ShipyardError
from shipyard.project import Project, current

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sqlalchemy.orm import Session

    from shipyard.data.versions import DatasetVersion
    from shipyard.registry.flavors.base import Flavor
    from shipyard.registry.loaded import LoadedModel
    from shipyard.registry.versions import ModelVersion

INPUT_NAME = "float_input"
_NUMERIC_TYPES = {"integer", "float", "boolean"}  # signature input types a float tensor holds


@dataclass(frozen=True)
class OnnxCheck:
    """How the compiled model compared with the original on the held-out rows."""

    rows: int
    max_abs_diff: float  # over probabilities (classifiers) or predictions (regressors)
    label_mismatches: int  # classifiers: rows whose label differs; 0 for regressors
    rtol: float
    atol: float
    passed: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class EquivalenceFailed(ShipyardError):
    """The compiled model does not predict what the original does; `check` says by how much."""

    exit_code = 1

    def __init__(self, message: str, check: OnnxCheck) -> None:
        super().__init__(message)
        self.check = check


def compile_onnx(
    ref: str,
    data: DatasetVersion | pd.DataFrame | str,
    *,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    project: Project | None = None,
) -> OnnxCheck:
    """Compile version `ref` to ONNX and keep it if it matches the original on `data`.

    `data` is held-out rows: a dataset version, its reference (`holdout@2`), a CSV or Parquet
    path, or a DataFrame; columns beyond the signature's inputs (the target) are ignored.
    Returns the passed check; raises `EquivalenceFailed` (nothing stored) when it fails.
    """
    from shipyard.registry.flavors import get_flavor
    from shipyard.registry.versions import MANIFEST_FORMAT, get

    if not (rtol >= 0 and atol >= 0):
        raise InvalidInput(f"rtol and atol must be >= 0; got rtol={rtol!r}, atol={atol!r}")
    project = project or current()
    version = get(ref, project=project)
    columns = _numeric_inputs(version)
    original = version.load(project=project, onnx=False)
    frame = _checked_rows(original, _held_out(data, project), columns)
    task = _task(original)
    classes = _classes(original)
    onnx_model = _convert(original.model, version, _input_name(columns), len(columns), task)
    onnx_flavor = get_flavor("onnx")
    with tempfile.TemporaryDirectory(prefix="shipyard-onnx-") as folder:
        root = Path(folder)
        meta = _onnx_meta(onnx_flavor, onnx_model, root, version, columns, task, classes)
        check = _compare(original, onnx_flavor, root, meta, frame, task, rtol=rtol, atol=atol)
        if not check.passed:
            raise EquivalenceFailed(
                f"{version.ref} compiled to ONNX does not match the original on {check.rows} "
                f"held-out rows: {check.detail}; nothing was stored",
                check,
            )
        files = {
            path.relative_to(root).as_posix(): project.artifacts.put_file(path).digest
            for path in sorted(root.rglob("*"))
            if path.is_file()
        }
    manifest = json.dumps(
        {"format": MANIFEST_FORMAT, "flavor": "onnx", "files": files}, sort_keys=True
    )
    artifact = project.artifacts.put_bytes(manifest.encode()).digest
    document = {"files": files, "artifact": artifact, "meta": meta, "check": check.to_json()}
    _record(project, version, document)
    return check


# -- inputs -----------------------------------------------------------------------------------


def _numeric_inputs(version: ModelVersion) -> list[str]:
    """The signature's input columns, in order, once each is known to fit a float tensor."""
    signature = version.signature
    if signature is None:
        raise InvalidInput(
            f"{version.ref} has no signature, so its input columns are unknown; register it "
            "with training_data= (or signature=) to compile it to ONNX"
        )
    if signature.kind != "table":
        raise InvalidInput(
            f"{version.ref} takes tensors, not table columns; only models with a table "
            "signature of numeric columns compile to ONNX here"
        )
    specs = list(signature.inputs)
    others = [
        f"{spec.name} ({spec.type.value})" for spec in specs if spec.type not in _NUMERIC_TYPES
    ]
    if others:
        raise InvalidInput(
            f"only models whose inputs are all numeric compile to ONNX (one float tensor); "
            f"{version.ref} has non-numeric inputs: {', '.join(others)}. Encode them inside "
            "the model's own pipeline before it is compiled, or serve the original"
        )
    if not specs:
        raise InvalidInput(f"{version.ref}'s signature has no input columns")
    return [spec.name for spec in specs]


def _held_out(data: Any, project: Project) -> pd.DataFrame:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, str | Path):
        path = Path(data)
        if path.is_file():
            suffix = path.suffix.lower()
            if suffix == ".parquet":
                return pd.read_parquet(path)
            if suffix in (".csv", ".tsv"):
                return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
            raise InvalidInput(f"held-out data {path} is neither .csv, .tsv nor .parquet")
        from shipyard.data.versions import get

        data = get(str(data), project=project)
    to_pandas = getattr(data, "to_pandas", None)
    if to_pandas is None:
        raise InvalidInput(
            "held-out data is a dataset version, its reference (name@N), a CSV or Parquet "
            f"path, or a DataFrame; got {type(data).__name__}"
        )
    frame: pd.DataFrame = to_pandas()
    return frame


def _checked_rows(original: LoadedModel, frame: pd.DataFrame, columns: list[str]) -> Any:
    """The held-out rows as the signature lets them through, target and extras dropped."""
    if len(frame) == 0:
        raise InvalidInput("the held-out data has no rows to compare the two models on")
    if all(column in frame.columns for column in columns):
        frame = frame[columns]
    return original.check(frame)  # an error naming what is missing or wrong


# -- conversion -------------------------------------------------------------------------------


def _task(original: LoadedModel) -> str:
    task = original.meta.get("task")
    if task in ("classifier", "regressor"):
        return str(task)
    return "classifier" if hasattr(original.model, "predict_proba") else "regressor"


def _classes(original: LoadedModel) -> list[Any] | None:
    classes = original.meta.get("classes")
    if classes is None:
        found = getattr(original.model, "classes_", None)
        classes = None if found is None else [_plain(c) for c in found]
    return None if classes is None else list(classes)


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _library(model: Any) -> str:
    module = type(model).__module__.split(".")[0]
    return {"xgboost": "xgboost", "lightgbm": "lightgbm"}.get(module, "sklearn")


def _input_name(columns: list[str]) -> str:
    """The graph input's name: one no column has, since the onnx flavor feeds inputs by name
    when the frame has a column of that name."""
    name = INPUT_NAME
    while name in columns:
        name = f"_{name}"
    return name


def _convert(model: Any, version: ModelVersion, input_name: str, n_columns: int, task: str) -> Any:
    """The ONNX graph of `model`, taking one float tensor of `n_columns`."""
    library = _library(model)
    try:
        if library in ("xgboost", "lightgbm"):
            import onnxmltools  # type: ignore[import-untyped]
            from onnxmltools.convert.common.data_types import (  # type: ignore[import-untyped]
                FloatTensorType,
            )

            types = [(input_name, FloatTensorType([None, n_columns]))]
            if library == "xgboost":
                return onnxmltools.convert_xgboost(_xgboost_unnamed(model), initial_types=types)
            return onnxmltools.convert_lightgbm(model, initial_types=types, zipmap=False)
        from skl2onnx import convert_sklearn  # type: ignore[import-untyped]
        from skl2onnx.common.data_types import (  # type: ignore[import-untyped]
            FloatTensorType as SklFloatTensorType,
        )

        options = {id(model): {"zipmap": False}} if task == "classifier" else None
        return convert_sklearn(
            model,
            initial_types=[(input_name, SklFloatTensorType([None, n_columns]))],
            options=options,
        )
    except ImportError as error:
        raise InvalidInput(
            f"compiling to ONNX needs the onnx extra (pip install 'shipyard[onnx]'): {error}"
        ) from None
    except Exception as error:  # the converters raise many kinds; all mean "cannot convert"
        kind = type(model)
        raise InvalidInput(
            f"{version.ref} ({kind.__module__}.{kind.__qualname__}) could not be compiled to "
            f"ONNX: {type(error).__name__}: {str(error)[:500]}"
        ) from None


def _xgboost_unnamed(model: Any) -> Any:
    """A copy whose booster has no feature names: onnxmltools reads only `f0, f1, ...`."""
    unnamed = copy.deepcopy(model)
    booster = unnamed.get_booster() if hasattr(unnamed, "get_booster") else unnamed
    booster.feature_names = None
    return unnamed


def _onnx_meta(
    onnx_flavor: Flavor,
    onnx_model: Any,
    folder: Path,
    version: ModelVersion,
    columns: list[str],
    task: str,
    classes: list[Any] | None,
) -> dict[str, Any]:
    """The `onnx` flavor's own metadata (it writes the file), with the original's facts."""
    meta = onnx_flavor.save(onnx_model, folder)
    meta.update(
        task=task,
        classes=classes if classes is not None else meta.get("classes"),
        feature_names=columns,
        n_features=len(columns),
        compiled_from={"flavor": version.flavor, "artifact": version.artifact},
    )
    return meta


# -- the equivalence check --------------------------------------------------------------------


def _compare(
    original: LoadedModel,
    onnx_flavor: Flavor,
    folder: Path,
    meta: dict[str, Any],
    frame: Any,
    task: str,
    *,
    rtol: float,
    atol: float,
) -> OnnxCheck:
    """Run both on the checked rows, as serving would, and compare."""
    import numpy as np

    compiled = onnx_flavor.load(folder, meta)
    rows = len(frame)
    if task == "classifier":
        want = original.flavor.predict_proba(original.model, frame, original.meta)
        got = onnx_flavor.predict_proba(compiled, frame, meta)
        if want is None or got is None:
            raise InvalidInput("the classifier gave no probabilities to compare")
        labels_want = np.asarray(original.flavor.predict(original.model, frame, original.meta))
        labels_got = np.asarray(onnx_flavor.predict(compiled, frame, meta))
        mismatches = int(np.sum(_as_labels(labels_want) != _as_labels(labels_got)))
        what = "probabilities"
    else:
        want = original.flavor.predict(original.model, frame, original.meta)
        got = onnx_flavor.predict(compiled, frame, meta)
        mismatches = 0
        what = "predictions"
    return _verdict(np.asarray(want), np.asarray(got), rows, mismatches, what, rtol, atol)


def _as_labels(labels: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Labels comparable across libraries: int64 vs int32 or object vs str compare as text."""
    import numpy as np

    return np.asarray([str(_plain(label)) for label in labels.reshape(-1)])


def _verdict(
    want: np.ndarray[Any, Any],
    got: np.ndarray[Any, Any],
    rows: int,
    mismatches: int,
    what: str,
    rtol: float,
    atol: float,
) -> OnnxCheck:
    import numpy as np

    want = want.astype(np.float64)
    got = got.astype(np.float64)
    if want.size != got.size:
        shapes = f"the {what} have different shapes: original {want.shape}, ONNX {got.shape}"
        return OnnxCheck(rows, float("inf"), mismatches, rtol, atol, False, shapes)
    got = got.reshape(want.shape)
    diff = np.abs(want - got)
    max_diff = float(np.nanmax(diff)) if diff.size else 0.0
    nan_mismatch = int(np.sum(np.isnan(want) != np.isnan(got)))
    outside = int(np.sum(diff > atol + rtol * np.abs(want))) + nan_mismatch
    passed = outside == 0 and mismatches == 0
    detail = (
        f"max |difference| of {what} {max_diff:.3g} (tolerance atol {atol:g} + rtol {rtol:g} "
        f"x |original|); {outside} value(s) outside it"
    )
    if what == "probabilities":
        detail += f"; {mismatches} of {rows} labels differ"
    return OnnxCheck(rows, max_diff, mismatches, rtol, atol, passed, detail)


# -- recording --------------------------------------------------------------------------------


def _record(project: Project, version: ModelVersion, document: dict[str, Any]) -> None:
    from shipyard.registry.versions import version_record

    def update(session: Session) -> None:
        record, _ = version_record(session, version.ref)
        if record.artifact != version.artifact:  # never: versions are immutable
            raise InvalidInput(f"{version.ref} changed while it was being compiled; compile again")
        record.onnx = document

    project.metadata.write_with_retry(update)
