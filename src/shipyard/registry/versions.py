"""Registered models and their immutable versions.

>>> version = shipyard.register(model, name="churn", training_data=train, target="churned")
>>> shipyard.registry.get("churn@champion").load().predict(frame)

A version is its files, each stored by sha256, and a manifest of them whose sha256 is the
version's `artifact`; with it the flavor, the signature, the run and dataset versions it came
from, the packages it needs, and who registered it when. Registering the same files again under
the same name gives back the existing version, as adding the same data does.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput, NotFound
from shipyard.project import Project, current
from shipyard.store.models import (
    ModelAliasRecord,
    ModelVersionRecord,
    RegisteredModelRecord,
    RunArtifactRecord,
    RunRecord,
)

if TYPE_CHECKING:
    from shipyard.registry.loaded import LoadedModel
    from shipyard.registry.signature import Signature

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")
MANIFEST_FORMAT = 1


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"model name {name!r} is not valid: 1-128 letters, digits, '_', '.', '-', starting "
            "with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS.match(alias) or alias.isdigit():
        raise InvalidInput(
            f"alias {alias!r} is not valid: 1-64 letters, digits, '_', '-', starting with a "
            "letter (e.g. champion, challenger)"
        )
    return alias


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version of a registered model."""

    name: str
    version: int
    flavor: str
    artifact: str
    files: dict[str, str]
    flavor_meta: dict[str, Any]
    signature_json: dict[str, Any] | None
    run_id: str | None
    datasets: list[str]
    dependencies: dict[str, str]
    metrics: dict[str, float]
    params: dict[str, Any]
    source: str
    description: str
    tags: dict[str, str]
    created_at: datetime
    created_by: str
    aliases: list[str] = field(default_factory=list)
    onnx: dict[str, Any] | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def __str__(self) -> str:
        return self.ref

    @property
    def signature(self) -> Signature | None:
        from shipyard.registry.signature import Signature

        return None if self.signature_json is None else Signature.from_json(self.signature_json)

    def load(
        self, *, project: Project | None = None, range_policy: str = "flag", onnx: bool = True
    ) -> LoadedModel:
        """The model, its files checked against their sha256, wrapped to enforce the signature."""
        from shipyard.registry.loaded import load_version

        return load_version(self, project or current(), range_policy=range_policy, onnx=onnx)


# -- reading --------------------------------------------------------------------------------


def parse_model_ref(ref: str) -> tuple[str, str | None]:
    """`name@3` -> ("name", "3"); `name@champion` -> ("name", "champion"); `name` -> latest."""
    if not isinstance(ref, str) or not ref:
        raise InvalidInput(f"expected a model reference NAME[@VERSION|@ALIAS]; got {ref!r}")
    name, _, selector = ref.partition("@")
    check_model_name(name)
    return name, selector or None


def _model(session: Session, name: str) -> RegisteredModelRecord:
    model = session.scalar(select(RegisteredModelRecord).where(RegisteredModelRecord.name == name))
    if model is None:
        known = session.scalars(select(RegisteredModelRecord.name).limit(20)).all()
        listed = ", ".join(known) or "none yet"
        raise NotFound(f"no registered model {name!r} (models: {listed})")
    return model


def _aliases_of(session: Session, version_ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {vid: [] for vid in version_ids}
    rows = session.execute(
        select(ModelAliasRecord.version_id, ModelAliasRecord.alias)
        .where(ModelAliasRecord.version_id.in_(version_ids))
        .order_by(ModelAliasRecord.alias)
    )
    for version_id, alias in rows:
        found[version_id].append(alias)
    return found


def _to_version(record: ModelVersionRecord, name: str, aliases: list[str]) -> ModelVersion:
    return ModelVersion(
        name=name,
        version=record.version,
        flavor=record.flavor,
        artifact=record.artifact,
        files=dict(record.files),
        flavor_meta=dict(record.flavor_meta),
        signature_json=record.signature,
        run_id=record.run_id,
        datasets=list(record.datasets.get("refs", [])),
        dependencies=dict(record.dependencies),
        metrics=dict(record.metrics),
        params=dict(record.params),
        source=record.source,
        description=record.description,
        tags=dict(record.tags),
        created_at=record.created_at,
        created_by=record.created_by,
        aliases=aliases,
        onnx=record.onnx,
    )


def version_record(session: Session, ref: str) -> tuple[ModelVersionRecord, str]:
    """The record a reference points at, and the model's name."""
    name, selector = parse_model_ref(ref)
    model = _model(session, name)
    query = select(ModelVersionRecord).where(ModelVersionRecord.model_id == model.id)
    if selector is None:
        record = session.scalar(query.order_by(ModelVersionRecord.version.desc()).limit(1))
        if record is None:
            raise NotFound(f"model {name} has no versions yet")
        return record, name
    if selector.isdigit():
        record = session.scalar(query.where(ModelVersionRecord.version == int(selector)))
        if record is None:
            raise NotFound(f"model {name} has no version {selector}")
        return record, name
    alias = session.get(ModelAliasRecord, (model.id, selector))
    if alias is None:
        known = session.scalars(
            select(ModelAliasRecord.alias).where(ModelAliasRecord.model_id == model.id)
        ).all()
        raise NotFound(
            f"model {name} has no alias {selector!r} (aliases: {', '.join(known) or 'none'}); "
            f"set one with `shipyard models alias set {name} {selector} VERSION`"
        )
    record = session.get(ModelVersionRecord, alias.version_id)
    assert record is not None
    return record, name


def get(ref: str, *, project: Project | None = None) -> ModelVersion:
    """A version by `name@VERSION`, `name@ALIAS` or `name` (the latest)."""
    project = project or current()
    with project.metadata.read() as session:
        record, name = version_record(session, ref)
        return _to_version(record, name, _aliases_of(session, [record.id])[record.id])


def versions(name: str, *, project: Project | None = None) -> list[ModelVersion]:
    """Every version of a model, oldest first."""
    project = project or current()
    with project.metadata.read() as session:
        model = _model(session, check_model_name(name))
        records = session.scalars(
            select(ModelVersionRecord)
            .where(ModelVersionRecord.model_id == model.id)
            .order_by(ModelVersionRecord.version)
        ).all()
        aliases = _aliases_of(session, [r.id for r in records])
        return [_to_version(r, name, aliases[r.id]) for r in records]


@dataclass(frozen=True)
class ModelSummary:
    name: str
    description: str
    versions: int
    latest: int | None
    aliases: dict[str, int]
    created_at: datetime


def list_models(*, project: Project | None = None) -> list[ModelSummary]:
    """Every registered model with its version count and aliases."""
    project = project or current()
    with project.metadata.read() as session:
        counts = dict(
            session.execute(
                select(ModelVersionRecord.model_id, func.max(ModelVersionRecord.version)).group_by(
                    ModelVersionRecord.model_id
                )
            ).all()
        )
        numbers = dict(
            session.execute(
                select(ModelVersionRecord.model_id, func.count()).group_by(
                    ModelVersionRecord.model_id
                )
            ).all()
        )
        aliases: dict[int, dict[str, int]] = {}
        for model_id, alias, version in session.execute(
            select(ModelAliasRecord.model_id, ModelAliasRecord.alias, ModelVersionRecord.version)
            .join(ModelVersionRecord, ModelVersionRecord.id == ModelAliasRecord.version_id)
            .order_by(ModelAliasRecord.alias)
        ):
            aliases.setdefault(model_id, {})[alias] = version
        models = session.scalars(
            select(RegisteredModelRecord).order_by(RegisteredModelRecord.name)
        ).all()
        return [
            ModelSummary(
                m.name,
                m.description,
                numbers.get(m.id, 0),
                counts.get(m.id),
                aliases.get(m.id, {}),
                m.created_at,
            )
            for m in models
        ]


# -- registering ----------------------------------------------------------------------------


@dataclass
class _Saved:
    """A model written by its flavor and stored, file by file, in the artifact store."""

    flavor: str
    meta: dict[str, Any]
    files: dict[str, str]
    artifact: str
    dependencies: dict[str, str]


def _save(model: Any, project: Project, flavor_name: str | None) -> _Saved:
    import platform

    from shipyard.registry.flavors import flavor_for, get_flavor

    flavor = get_flavor(flavor_name) if flavor_name else flavor_for(model)
    with tempfile.TemporaryDirectory(prefix="shipyard-model-") as folder:
        root = Path(folder)
        meta = flavor.save(model, root)
        files = {
            path.relative_to(root).as_posix(): project.artifacts.put_file(path).digest
            for path in sorted(root.rglob("*"))
            if path.is_file()
        }
    if not files:
        raise InvalidInput(f"the {flavor.name} flavor wrote no file for {type(model).__name__}")
    manifest = json.dumps(
        {"format": MANIFEST_FORMAT, "flavor": flavor.name, "files": files}, sort_keys=True
    ).encode()
    artifact = project.artifacts.put_bytes(manifest).digest
    dependencies = {"python": platform.python_version(), **flavor.dependencies(meta)}
    return _Saved(flavor.name, meta, files, artifact, dependencies)


def _run_id(run: Any) -> str | None:
    """A run id from a Run, a RunInfo, an id string, or the active run / pipeline step."""
    if run is not None:
        return str(run if isinstance(run, str) else run.id)
    from shipyard.tracking import active

    logger = active.current_logger()
    found = getattr(logger, "run_id", None) or getattr(logger, "id", None)
    return str(found) if found else None


def _run_facts(
    session: Session, run_id: str | None
) -> tuple[str | None, dict[str, float], dict[str, Any], list[str]]:
    """The run's full id, last metric values, params, and the dataset versions it read."""
    if run_id is None:
        return None, {}, {}, []
    from shipyard.tracking.runs import load_runs, resolve_run_id

    full = resolve_run_id(session, run_id)
    (info,) = load_runs(session, [full])
    refs = [
        str(row.meta["ref"])
        for row in session.scalars(
            select(RunArtifactRecord).where(
                RunArtifactRecord.run_id == full,
                RunArtifactRecord.direction == "input",
                RunArtifactRecord.kind == "dataset",
            )
        )
        if row.meta.get("ref")
    ]
    metrics = {k: v for k, v in info.metrics.items() if v == v}  # NaN is not a usable metric
    return full, metrics, info.params, sorted(set(refs))


def _signature_json(
    signature: Signature | Mapping[str, Any] | None,
    training_data: Any,
    target: str | Sequence[str] | None,
    saved: _Saved,
) -> dict[str, Any] | None:
    from shipyard.registry.signature import Signature, infer_signature

    if isinstance(signature, Signature):
        return signature.to_json()
    if isinstance(signature, Mapping):
        return Signature.from_json(signature).to_json()  # checked
    if training_data is None:
        return None
    inferred = infer_signature(training_data, target=target)
    features = saved.meta.get("feature_names")
    if features:
        by_name = {spec.name: spec for spec in inferred.inputs}
        missing = [name for name in features if name not in by_name]
        if missing:
            raise InvalidInput(
                f"the model was fitted on columns the training data lacks: {', '.join(missing)}; "
                "pass the data it was trained on"
            )
        inferred = Signature(
            tuple(by_name[name] for name in features), inferred.outputs, inferred.kind
        )
    return inferred.to_json()


def register(
    model: Any,
    name: str,
    *,
    run: Any = None,
    signature: Signature | Mapping[str, Any] | None = None,
    training_data: Any = None,
    target: str | Sequence[str] | None = None,
    datasets: Sequence[Any] = (),
    description: str = "",
    tags: Mapping[str, Any] | None = None,
    flavor: str | None = None,
    source: str = "python",
    metrics: Mapping[str, float] | None = None,
    project: Project | None = None,
) -> ModelVersion:
    """Register `model` as the next version of `name` (or return the version with these files).

    The signature is `signature`, or inferred from `training_data` (a dataset version, whose
    stored schema and profile give the types, levels and ranges, or a table) minus `target`.
    The run defaults to the active run or pipeline step; its metrics, params and the dataset
    versions it read are recorded with the version (`metrics` adds to, or overrides, the run's).
    """
    project = project or current()
    check_model_name(name)
    saved = _save(model, project, flavor)
    signature_json = _signature_json(signature, training_data, target, saved)
    refs = [getattr(item, "ref", item) for item in datasets]
    if training_data is not None and hasattr(training_data, "ref"):
        refs.append(training_data.ref)
    tags_text = {str(k): str(v) for k, v in (tags or {}).items()}
    run_id = _run_id(run)
    _flush_active_run(run_id)

    def record(session: Session) -> ModelVersion:
        full_run, run_metrics, params, run_refs = _run_facts(session, run_id)
        all_metrics = {**run_metrics, **{k: float(v) for k, v in (metrics or {}).items()}}
        model_row = session.scalar(
            select(RegisteredModelRecord)
            .where(RegisteredModelRecord.name == name)
            .with_for_update()
        )
        if model_row is None:
            model_row = RegisteredModelRecord(
                name=name, description="", tags={}, created_by=project.user
            )
            session.add(model_row)
            session.flush()
        existing = session.scalar(
            select(ModelVersionRecord).where(
                ModelVersionRecord.model_id == model_row.id,
                ModelVersionRecord.artifact == saved.artifact,
            )
        )
        if existing is not None:
            return _to_version(existing, name, _aliases_of(session, [existing.id])[existing.id])
        number = (
            session.scalar(
                select(func.max(ModelVersionRecord.version)).where(
                    ModelVersionRecord.model_id == model_row.id
                )
            )
            or 0
        ) + 1
        row = ModelVersionRecord(
            model_id=model_row.id,
            version=number,
            flavor=saved.flavor,
            artifact=saved.artifact,
            files=saved.files,
            flavor_meta=saved.meta,
            signature=signature_json,
            run_id=full_run,
            datasets={"refs": sorted(set(refs) | set(run_refs))},
            dependencies=saved.dependencies,
            metrics=all_metrics,
            params=params,
            onnx=None,
            source=source,
            description=description,
            tags=tags_text,
            created_by=project.user,
        )
        session.add(row)
        session.flush()
        return _to_version(row, name, [])

    return project.metadata.write_with_retry(record)


def _flush_active_run(run_id: str | None) -> None:
    """Metrics logged so far by the active run belong with the version: write them first."""
    from shipyard.tracking.runs import active_run

    run = active_run()
    if run is not None and run.id == run_id:
        run.flush()


def run_of(version: ModelVersion, *, project: Project | None = None) -> RunRecord | None:
    project = project or current()
    if version.run_id is None:
        return None
    with project.metadata.read() as session:
        return session.get(RunRecord, version.run_id)


# -- registering files that already exist ---------------------------------------------------

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".sav")


def _refuse_untrusted_pickle(what: str) -> None:
    raise InvalidInput(
        f"{what} is a pickle, and unpickling runs whatever code it holds: shipyard only "
        "unpickles files from outside the project when told to trust them (--trust-pickle, "
        "trust_pickle=True); once registered, the model is only ever loaded from the project's "
        "own store, checked against its sha256"
    )


def _load_model_file(path: Path, trust_pickle: bool) -> tuple[Any, str]:
    """A model file saved by its own library, and the flavor that serves it."""
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        if not trust_pickle:
            _refuse_untrusted_pickle(path.name)
        import pickle

        with path.open("rb") as handle:
            model = pickle.load(handle)
        from shipyard.registry.flavors import flavor_for

        return model, flavor_for(model).name
    if suffix == ".onnx":
        import onnx

        return onnx.load(str(path)), "onnx"
    if suffix in (".ubj", ".json"):
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(path))
        return booster, "xgboost"
    if suffix in (".txt", ".lgb"):
        import lightgbm

        return lightgbm.Booster(model_file=str(path)), "lightgbm"
    if suffix in (".pt", ".pth"):
        import importlib

        torch: Any = importlib.import_module("torch")  # optional, and typed only when installed
        return torch.jit.load(str(path)), "pytorch"
    raise InvalidInput(
        f"don't know how to read {path.name}: expected an MLflow model folder (with an MLmodel "
        "file), .onnx, an XGBoost .json/.ubj, a LightGBM .txt/.lgb, or a TorchScript .pt"
    )


def register_path(
    path: Path | str,
    name: str,
    *,
    training_data: Any = None,
    target: str | Sequence[str] | None = None,
    description: str = "",
    trust_pickle: bool = False,
    project: Project | None = None,
) -> ModelVersion:
    """Register a model that exists on disk: an MLflow model folder (its flavor and signature
    come along) or a file saved by its library (ONNX, XGBoost, LightGBM, TorchScript). Pickled
    models (an MLflow scikit-learn folder, a .pkl) are read only with `trust_pickle=True`."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"no model at {path}")
    if path.is_dir():
        if not (path / "MLmodel").is_file():
            raise InvalidInput(
                f"{path} is a folder without an MLmodel file: give an MLflow model folder or a "
                "model file"
            )
        from shipyard.registry.mlflow_import import import_mlflow_model

        imported = import_mlflow_model(path, allow_pickle=trust_pickle)
        tags = {"mlflow.flavors": ",".join(imported.mlflow_flavors)}
        if imported.run_id:
            tags["mlflow.run_id"] = imported.run_id
        signature = imported.signature if training_data is None else None
        return register(
            imported.model,
            name,
            signature=signature,
            training_data=training_data,
            target=target,
            description=description,
            tags=tags,
            flavor=imported.flavor,
            source="mlflow",
            project=project,
        )
    model, flavor = _load_model_file(path, trust_pickle)
    return register(
        model,
        name,
        training_data=training_data,
        target=target,
        description=description,
        flavor=flavor,
        source="file",
        project=project,
    )
