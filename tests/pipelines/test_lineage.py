"""Lineage: a dataset version fed to a pipeline step, walked back from the model the run made
(run, dataset version, code, environment) and forward from the dataset (runs, their outputs)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import shipyard.data as data
from shipyard.data import DatasetVersion
from shipyard.errors import InvalidInput, NotFound
from shipyard.pipelines import pipeline, step
from shipyard.pipelines.execution import PipelineResult
from shipyard.project import Project
from shipyard.tracking import get_run
from shipyard.tracking.lineage import LineageNode, lineage


@step
def fit(dataset: DatasetVersion, depth: int) -> dict[str, float]:
    frame = dataset.to_pandas()
    return {"weight": float(frame["x"].mean()) * depth}


@step
def evaluate(model: dict[str, float]) -> float:
    return model["weight"] / 2


@dataclass
class Built:
    project: Project
    version: DatasetVersion
    first: PipelineResult
    second: PipelineResult


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    project = Project.init(tmp_path_factory.mktemp("lineage") / ".shipyard")
    version = data.add(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}), "people", project=project)

    @pipeline
    def train(depth: int = 2) -> None:
        evaluate(fit(version, depth=depth))

    first = train.run(project=project, progress=False)
    second = train.run(project=project, progress=False, record=True)  # all from the cache
    yield Built(project, version, first, second)
    project.close()


def _by_kind(nodes: list[LineageNode]) -> dict[str, list[LineageNode]]:
    found: dict[str, list[LineageNode]] = {}
    for node in nodes:
        for item in node.walk():
            found.setdefault(item.kind, []).append(item)
    return found


def test_a_model_walks_back_to_its_run_dataset_code_and_environment(built: Built) -> None:
    digest = built.first.steps["fit"].outputs["output"].digest
    graph = lineage(digest, project=built.project)

    assert graph.root.kind == "artifact"
    assert graph.root.id == digest
    assert graph.root.label.startswith("json fit.output sha256:")
    (producer,) = graph.upstream
    # The run that made it, not the later one that took it from the cache.
    assert producer.kind == "run"
    assert producer.id == built.first.run_id
    assert producer.relation == "produced by"
    assert producer.label == f"run {built.first.run_id[:12]} (pipeline train)"
    children = {child.kind: child for child in producer.children}
    assert set(children) == {"dataset", "code", "environment"}
    assert children["dataset"].id == "people@1"
    assert children["dataset"].relation == "input"
    assert children["dataset"].details["content_hash"] == built.version.content_hash
    info = get_run(built.first.run_id, project=built.project)
    assert children["code"].details["commit"] == info.code_commit
    commit = info.code_commit[:12] if info.code_commit else "not under git"
    assert children["code"].label.startswith(f"code {commit}")
    assert children["code"].details["source"] == info.source
    assert children["environment"].id == info.environment_id
    assert children["environment"].label.startswith("python ")
    # The dataset goes on back to where it was added from.
    (source,) = children["dataset"].children
    assert source.kind == "source"
    assert source.relation == "added from"

    # Forward: the model was the input of nothing recorded as an input (it flowed in-run).
    assert graph.downstream == []


def test_a_dataset_walks_forward_to_the_runs_and_their_outputs(built: Built) -> None:
    graph = lineage("people@1", project=built.project)
    assert graph.root.kind == "dataset"
    assert graph.root.id == "people@1"
    runs = {node.id: node for node in graph.downstream}
    assert set(runs) == {built.first.run_id, built.second.run_id}
    for node in runs.values():
        assert node.kind == "run"
        assert node.relation == "used by"
        outputs = {child.label.split()[1] for child in node.children if child.kind == "artifact"}
        assert outputs == {"fit.output", "evaluate.output"}


def test_a_run_id_prefix_is_enough(built: Built) -> None:
    graph = lineage(built.first.run_id[:8], project=built.project)
    assert graph.root.kind == "run"
    assert graph.root.id == built.first.run_id
    kinds = _by_kind(graph.upstream)
    assert [node.id for node in kinds["dataset"]] == ["people@1"]
    downstream = {node.label.split()[1] for node in graph.downstream}
    assert downstream == {"fit.output", "evaluate.output"}
    assert graph.to_json()["root"]["id"] == built.first.run_id


def test_depth_bounds_the_walk(built: Built) -> None:
    digest = built.first.steps["fit"].outputs["output"].digest
    graph = lineage(digest, project=built.project, depth=1)
    (producer,) = graph.upstream
    assert producer.children == []
    with pytest.raises(InvalidInput, match="depth must be at least 1; got 0"):
        lineage(digest, project=built.project, depth=0)


@pytest.mark.parametrize("ref", ["deadbeef0000", "sha256:" + "ab" * 32])
def test_an_unknown_ref_is_not_found(built: Built, ref: str) -> None:
    with pytest.raises(NotFound, match="matches"):
        lineage(ref, project=built.project)


@pytest.mark.parametrize("ref", ["people@9", "nobody@1"])
def test_an_unknown_dataset_version_is_not_found(built: Built, ref: str) -> None:
    with pytest.raises(NotFound):
        lineage(ref, project=built.project)


@pytest.mark.parametrize("ref", ["not a ref!", "xyz", "12", ""])
def test_a_bad_ref_is_invalid(built: Built, ref: str) -> None:
    with pytest.raises(InvalidInput, match="expected a dataset version"):
        lineage(ref, project=built.project)


def test_to_json_is_plain_data(built: Built, tmp_path: Path) -> None:
    import json

    document: dict[str, Any] = lineage("people@1", project=built.project).to_json()
    assert json.loads(json.dumps(document, default=str))["root"]["kind"] == "dataset"
