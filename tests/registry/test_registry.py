"""The registry: registering (objects, files, MLflow folders, from a pipeline step), versions,
loading with verified files, aliases guarded by gate reports, history and diff."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sqlalchemy import func, select

import shipyard.data as data
from shipyard.errors import ArtifactCorrupted, InvalidInput, NotFound
from shipyard.pipelines import pipeline, step
from shipyard.project import Project
from shipyard.registry.aliases import GatesNotPassed, history, set_alias, unset_alias
from shipyard.registry.diff import diff
from shipyard.registry.steps import registering
from shipyard.registry.versions import get, list_models, register, register_path, versions
from shipyard.store.models import GateResultRecord, ModelVersionRecord, RegisteredModelRecord
from shipyard.tracking.runs import start_run

FEATURES = ["age", "income", "tenure"]


def churn_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows),
            "income": rng.lognormal(10, 0.5, rows).round(2),
            "tenure": rng.integers(0, 120, rows),
        }
    )
    score = -0.04 * (frame["age"] - 45) - 0.02 * (frame["tenure"] - 60)
    frame["churned"] = rng.random(rows) < 1 / (1 + np.exp(-score))
    return frame


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    created = Project.init(tmp_path / ".shipyard")
    yield created
    created.close()


@pytest.fixture
def train(project: Project) -> data.DatasetVersion:
    return data.add(churn_frame(), "churn-train", project=project)


def fitted(c: float = 1.0) -> LogisticRegression:
    frame = churn_frame()
    return LogisticRegression(C=c, max_iter=500).fit(frame[FEATURES], frame["churned"])


def _count(project: Project, model: type) -> int:
    with project.metadata.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_register_records_an_immutable_version_with_its_signature(
    project: Project, train: data.DatasetVersion
) -> None:
    model = fitted()
    version = register(model, "churn", training_data=train, target="churned", project=project)

    assert version.ref == "churn@1"
    assert version.flavor == "sklearn"
    assert version.datasets == [train.ref]
    assert version.created_by == project.user
    assert version.dependencies["python"]
    assert "scikit-learn" in version.dependencies
    signature = version.signature
    assert signature is not None
    assert [spec.name for spec in signature.inputs] == FEATURES
    for digest in version.files.values():
        assert project.artifacts.exists(digest)
    # The same files again: the same version, nothing new.
    again = register(model, "churn", training_data=train, target="churned", project=project)
    assert again.ref == "churn@1"
    assert _count(project, ModelVersionRecord) == 1
    assert register(fitted(0.1), "churn", project=project).ref == "churn@2"
    assert [v.version for v in versions("churn", project=project)] == [1, 2]
    (summary,) = list_models(project=project)
    assert (summary.name, summary.versions, summary.latest) == ("churn", 2, 2)


def test_a_loaded_version_predicts_like_the_model_and_enforces_its_signature(
    project: Project, train: data.DatasetVersion
) -> None:
    model = fitted()
    register(model, "churn", training_data=train, target="churned", project=project)
    loaded = get("churn@1", project=project).load(project=project)
    frame = churn_frame(50, seed=3)[FEATURES]
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    with pytest.raises(InvalidInput, match="tenure"):
        loaded.predict(frame.drop(columns=["tenure"]))


def test_a_tampered_file_is_never_loaded(project: Project, train: data.DatasetVersion) -> None:
    version = register(fitted(), "churn", training_data=train, target="churned", project=project)
    (digest,) = version.files.values()
    blob = Path(project.artifacts.key(digest))
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b"tampered")
    with pytest.raises(ArtifactCorrupted):
        version.load(project=project)


def test_the_active_run_gives_its_id_metrics_params_and_data(
    project: Project, train: data.DatasetVersion
) -> None:
    with start_run("fit", params={"C": 1.0}, project=project) as run:
        run.log_input("train", train)
        run.log_metric("auc", 0.81)
        version = register(fitted(), "churn", project=project)
    assert version.run_id == run.id
    assert version.metrics == {"auc": 0.81}
    assert version.params == {"C": 1.0}
    assert version.datasets == [train.ref]


def test_a_pipeline_step_registers_its_output(project: Project, train: data.DatasetVersion) -> None:
    register_churn = registering("churn", target="churned")

    @step
    def fit(version: data.DatasetVersion) -> LogisticRegression:
        from shipyard.tracking import log_metric

        log_metric("train_rows", 400)  # logged by an earlier step: on the version too
        frame = version.to_pandas()
        return LogisticRegression(max_iter=500).fit(frame[FEATURES], frame["churned"])

    @step
    def evaluate(model: LogisticRegression) -> dict[str, float]:
        return {"auc": 0.75}

    @pipeline
    def train_and_register(ref: str = train.ref) -> None:
        version = load(ref)
        model = fit(version)
        register_churn(model, training_data=version, evaluation=evaluate(model))

    result = train_and_register.run(project=project, progress=False)
    ref = result.output("register_churn")
    assert ref == "churn@1"
    version = get(ref, project=project)
    assert version.run_id == result.run_id
    assert version.source == "pipeline"
    assert version.metrics == {"train_rows": 400.0, "auc": 0.75}
    assert train.ref in version.datasets
    assert version.signature is not None


@step(cache=False)
def load(ref: str) -> data.DatasetVersion:
    return data.get(ref)


def test_unsupported_objects_register_nothing(project: Project) -> None:
    with pytest.raises(InvalidInput, match="dict"):
        register({"weights": [1, 2]}, "churn", project=project)
    assert _count(project, RegisteredModelRecord) == 0
    with pytest.raises(InvalidInput, match="model name"):
        register(fitted(), "../escape", project=project)


def test_references_and_their_errors(project: Project) -> None:
    register(fitted(), "churn", project=project)
    assert get("churn", project=project).version == 1
    with pytest.raises(NotFound, match="no registered model 'other'"):
        get("other@1", project=project)
    with pytest.raises(NotFound, match="no version 7"):
        get("churn@7", project=project)
    with pytest.raises(NotFound, match="alias set churn champion"):
        get("churn@champion", project=project)
    with pytest.raises(InvalidInput):
        get("", project=project)


def test_aliases_move_with_a_recorded_history(project: Project) -> None:
    register(fitted(1.0), "churn", project=project)
    register(fitted(0.1), "churn", project=project)
    set_alias("churn", "champion", 1, reason="first", project=project)
    assert get("churn@champion", project=project).version == 1
    set_alias("churn", "champion", 2, reason="better auc", project=project)
    unset_alias("churn", "champion", reason="rollback drill", project=project)
    events = history("churn", project=project)
    assert [(e.alias, e.version, e.previous, e.reason) for e in events] == [
        ("champion", 1, None, "first"),
        ("champion", 2, 1, "better auc"),
        ("champion", None, 2, "rollback drill"),
    ]
    assert all(e.user == project.user for e in events)
    with pytest.raises(NotFound):
        set_alias("churn", "champion", 9, project=project)
    with pytest.raises(InvalidInput, match="alias"):
        set_alias("churn", "9lives", 1, project=project)


def test_a_guarded_alias_needs_passed_gates_or_a_recorded_force(tmp_path: Path) -> None:
    policy = {"holdout": "churn-test@1", "target": "churned", "gates": [{"kind": "evaluation"}]}
    project = Project.init(tmp_path / ".shipyard", policies={"champion": policy})
    version = register(fitted(), "churn", project=project)
    with pytest.raises(GatesNotPassed, match="shipyard gate churn@1 --policy champion"):
        set_alias("churn", "champion", 1, project=project)
    with pytest.raises(InvalidInput, match="reason"):
        set_alias("churn", "champion", 1, force=True, project=project)

    def report(passed: bool) -> None:
        with project.metadata.write() as session:
            row = session.scalar(
                select(ModelVersionRecord).where(ModelVersionRecord.artifact == version.artifact)
            )
            assert row is not None
            session.add(
                GateResultRecord(
                    version_id=row.id, report_id=uuid.uuid4().hex, policy="champion",
                    gate="evaluation", kind="evaluation", required=True, passed=passed,
                    details={}, created_by="test",
                )
            )  # fmt: skip

    report(passed=False)
    with pytest.raises(GatesNotPassed, match="failed the required gates evaluation"):
        set_alias("churn", "champion", 1, project=project)
    set_alias("churn", "champion", 1, force=True, reason="hotfix", project=project)
    assert history("churn", project=project)[-1].forced
    unset_alias("churn", "champion", project=project)
    report(passed=True)
    set_alias("churn", "champion", 1, project=project)  # the latest report passed
    assert not history("churn", project=project)[-1].forced
    project.close()


def test_diff_names_what_changed(project: Project, train: data.DatasetVersion) -> None:
    with start_run("a", params={"C": 1.0}, project=project) as run:
        run.log_metric("auc", 0.8)
        register(fitted(1.0), "churn", training_data=train, target="churned", project=project)
    with start_run("b", params={"C": 0.1}, project=project) as run:
        run.log_metric("auc", 0.7)
        register(fitted(0.1), "churn", project=project)
    changes = diff("churn@1", "churn@2", project=project)
    assert not changes.same
    assert [(c.key, c.before, c.after) for c in changes.params] == [("C", 1.0, 0.1)]
    assert [(c.key, c.before, c.after) for c in changes.metrics] == [("auc", 0.8, 0.7)]
    assert changes.signature == ["signature removed"]
    assert changes.datasets == ([train.ref], [])
    assert diff("churn@1", "churn@1", project=project).same


def test_register_path_reads_library_files_and_refuses_pickles(
    project: Project, tmp_path: Path
) -> None:
    import lightgbm
    import xgboost

    frame = churn_frame()
    booster = xgboost.train(
        {"objective": "binary:logistic"},
        xgboost.DMatrix(frame[FEATURES], label=frame["churned"]),
        num_boost_round=5,
    )
    booster.save_model(str(tmp_path / "model.json"))
    assert register_path(tmp_path / "model.json", "xgb", project=project).flavor == "xgboost"
    gbm = lightgbm.train(
        {"objective": "binary", "verbose": -1},
        lightgbm.Dataset(frame[FEATURES], label=frame["churned"]),
        num_boost_round=5,
    )
    gbm.save_model(str(tmp_path / "model.txt"))
    assert register_path(tmp_path / "model.txt", "lgb", project=project).flavor == "lightgbm"
    import pickle

    (tmp_path / "model.pkl").write_bytes(pickle.dumps(fitted()))
    with pytest.raises(InvalidInput, match="--trust-pickle"):
        register_path(tmp_path / "model.pkl", "pkl", project=project)
    trusted = register_path(tmp_path / "model.pkl", "pkl", trust_pickle=True, project=project)
    assert trusted.flavor == "sklearn"
    with pytest.raises(NotFound):
        register_path(tmp_path / "missing.onnx", "x", project=project)
    with pytest.raises(InvalidInput, match="MLmodel"):
        register_path(tmp_path, "folder", project=project)


def test_register_path_imports_an_mlflow_model_folder(project: Project, tmp_path: Path) -> None:
    import pickle

    import sklearn
    import yaml

    folder = tmp_path / "mlflow-model"
    folder.mkdir()
    model = GradientBoostingClassifier(n_estimators=5).fit(
        churn_frame()[FEATURES], churn_frame()["churned"]
    )
    (folder / "model.pkl").write_bytes(pickle.dumps(model))
    inputs = '[{"type": "long", "name": "age"}, {"type": "double", "name": "income"}, ' \
        '{"type": "long", "name": "tenure"}]'  # fmt: skip
    (folder / "MLmodel").write_text(
        yaml.safe_dump(
            {
                "artifact_path": "model",
                "run_id": "0123456789abcdef",
                "flavors": {
                    "python_function": {
                        "loader_module": "mlflow.sklearn",
                        "model_path": "model.pkl",
                    },
                    "sklearn": {
                        "pickled_model": "model.pkl",
                        "serialization_format": "pickle",
                        "sklearn_version": sklearn.__version__,
                    },
                },
                "signature": {"inputs": inputs, "outputs": '[{"type": "long"}]'},
            }
        )
    )
    with pytest.raises(InvalidInput, match="is a pickle"):
        register_path(folder, "imported", project=project)
    version = register_path(folder, "imported", trust_pickle=True, project=project)
    assert version.flavor == "sklearn"
    assert version.source == "mlflow"
    assert version.tags["mlflow.run_id"] == "0123456789abcdef"
    signature = version.signature
    assert signature is not None
    assert [spec.name for spec in signature.inputs] == FEATURES
    loaded = version.load(project=project)
    frame = churn_frame(20, seed=5)[FEATURES]
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
