"""Copying one model version into a fresh project: same name and number, its aliases, its blobs
checked by sha256, lineage kept as references; refused, with nothing written, when it cannot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sqlalchemy import func, select

import shipyard.data as data
from shipyard.errors import ArtifactCorrupted, InvalidInput, NotFound
from shipyard.project import Project
from shipyard.registry.aliases import history, set_alias
from shipyard.registry.transfer import blobs_of, copy_version
from shipyard.registry.versions import get, register, version_record, versions
from shipyard.store.models import ModelVersionRecord, RegisteredModelRecord, RunRecord
from shipyard.tracking.runs import start_run

FEATURES = ["age", "income", "tenure"]


def churn_frame(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows),
            "income": rng.lognormal(10, 0.5, rows).round(2),
            "tenure": rng.integers(0, 120, rows),
        }
    )
    frame["churned"] = rng.random(rows) < 1 / (1 + np.exp(0.04 * (frame["age"] - 45)))
    return frame


def fitted(c: float) -> LogisticRegression:
    frame = churn_frame()
    return LogisticRegression(C=c, max_iter=500).fit(frame[FEATURES], frame["churned"])


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Project]:
    created = Project.init(tmp_path / "image" / ".shipyard")
    yield created
    created.close()


@pytest.fixture
def source(project: Project) -> Project:
    """churn@1, and churn@2 made in a run that read the training data; champion on 2."""
    train = data.add(churn_frame(), "churn-train", project=project)
    register(fitted(1.0), "churn", training_data=train, target="churned", project=project)
    with start_run("fit", params={"C": 0.05}, project=project) as run:
        run.log_input("train", train)
        run.log_metric("auc", 0.8)
        register(
            fitted(0.05),
            "churn",
            training_data=train,
            target="churned",
            description="smaller C",
            tags={"team": "retention"},
            project=project,
        )
    set_alias("churn", "champion", 2, reason="better AUC", project=project)
    set_alias("churn", "challenger", 1, project=project)
    return project


def _count(project: Project, model: type) -> int:
    with project.metadata.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_the_version_arrives_whole_under_its_own_name_and_number(
    source: Project, target: Project
) -> None:
    transfer = copy_version("churn@champion", source=source, target=target)
    original = get("churn@2", project=source)
    copied = transfer.version

    assert transfer.created
    assert copied.ref == "churn@2"
    assert copied.aliases == ["champion"]  # challenger points at version 1, which stays behind
    for field in (
        "flavor", "artifact", "files", "flavor_meta", "signature_json", "run_id", "datasets",
        "dependencies", "metrics", "params", "source", "description", "tags", "created_at",
        "created_by", "onnx",
    ):  # fmt: skip
        assert getattr(copied, field) == getattr(original, field), field
    assert [v.version for v in versions("churn", project=target)] == [2]
    assert transfer.source.home == str(source.home.resolve())
    assert "password" not in transfer.source.metadata

    # Lineage stays as references: the run id is kept, the run itself is not copied.
    assert copied.run_id is not None
    assert _count(target, RunRecord) == 0
    assert copied.datasets == ["churn-train@1"]

    # The alias arrives with who set it and when, and one event saying it was copied.
    (event,) = history("churn", project=target)
    (source_event,) = [e for e in history("churn", project=source) if e.alias == "champion"]
    assert (event.alias, event.version, event.user) == ("champion", 2, source_event.user)
    assert "copied" in event.reason

    frame = churn_frame(40, seed=5)[FEATURES]
    np.testing.assert_array_equal(
        copied.load(project=target).predict(frame), original.load(project=source).predict(frame)
    )


def test_only_the_versions_blobs_are_copied_each_verified(source: Project, target: Project) -> None:
    transfer = copy_version("churn@2", source=source, target=target)
    with source.metadata.read() as session:
        record, _ = version_record(session, "churn@2")
        needed = set(blobs_of(record))
    assert set(target.artifacts.digests()) == needed
    assert transfer.blobs == len(needed) == 2  # the pickle and its manifest
    for digest in needed:
        target.artifacts.read_bytes(digest)  # hashes again; raises if a byte differs


def test_copying_again_is_a_no_op(source: Project, target: Project) -> None:
    copy_version("churn@champion", source=source, target=target)
    again = copy_version("churn@2", source=source, target=target)
    assert not again.created
    assert _count(target, ModelVersionRecord) == 1
    assert len(history("churn", project=target)) == 1


def test_a_different_version_under_the_same_number_is_refused(
    source: Project, target: Project
) -> None:
    register(fitted(3.0), "churn", project=target)  # the target's own churn@1
    before = get("churn@1", project=target)
    with pytest.raises(InvalidInput, match=r"already has a different churn@1"):
        copy_version("churn@1", source=source, target=target)
    assert get("churn@1", project=target) == before
    assert _count(target, ModelVersionRecord) == 1


def test_a_corrupted_blob_stops_the_copy_before_any_row(source: Project, target: Project) -> None:
    version = get("churn@champion", project=source)
    (digest,) = version.files.values()
    blob = Path(source.artifacts.key(digest))
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b"tampered")
    with pytest.raises(ArtifactCorrupted, match=digest):
        copy_version("churn@champion", source=source, target=target)
    assert _count(target, RegisteredModelRecord) == 0
    assert not target.artifacts.exists(digest)


@pytest.mark.parametrize(
    ("ref", "error"),
    [
        ("nope@1", r"no registered model 'nope' \(models: churn\)"),
        ("churn@7", "model churn has no version 7"),
        ("churn@prod", r"no alias 'prod' \(aliases: challenger, champion\)"),
        ("bad name", "model name 'bad name' is not valid"),
    ],
)
def test_an_unknown_reference_is_refused(
    source: Project, target: Project, ref: str, error: str
) -> None:
    with pytest.raises((NotFound, InvalidInput), match=error):
        copy_version(ref, source=source, target=target)
    assert _count(target, RegisteredModelRecord) == 0


def test_the_onnx_sibling_comes_along_and_is_what_serves(tmp_path: Path, target: Project) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    from shipyard.registry.compile import compile_onnx

    source = Project.init(tmp_path / "source" / ".shipyard")
    try:
        frame = churn_frame().astype({"churned": int})
        train = data.add(frame, "train", project=source)
        register(fitted(1.0), "churn", training_data=train, target="churned", project=source)
        compile_onnx("churn@1", churn_frame(80, seed=9), project=source)
        original = get("churn@1", project=source)
        assert original.onnx is not None

        copied = copy_version("churn@1", source=source, target=target).version
        assert copied.onnx == original.onnx
        assert set(original.onnx["files"].values()) <= set(target.artifacts.digests())
        loaded = copied.load(project=target)
        assert loaded.flavor.name == "onnx"
        rows = churn_frame(30, seed=4)[FEATURES]
        np.testing.assert_array_equal(
            loaded.predict(rows), original.load(project=source).predict(rows)
        )
    finally:
        source.close()
