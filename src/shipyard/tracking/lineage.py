"""Lineage: from a dataset version, a model version, a run or an artifact, back to what it was
made from (runs, their inputs, code commit and environment) and forward to what was built from it.

Every edge is a row already written on the way: `run_artifacts` (a run read or wrote a value),
`dataset_versions.run_id` (a run created a version), `dataset_versions.parent_id` (a split or
derived version), `model_versions.run_id` (the run a model version came from). A run that read
a model version (batch scoring) records it as an input of kind "model" whose digest is the
version's manifest. Walking both ways is a few indexed queries per node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput, NotFound
from shipyard.project import Project, current
from shipyard.store.models import (
    DatasetRecord,
    DatasetVersionRecord,
    EnvironmentRecord,
    ModelAliasRecord,
    ModelVersionRecord,
    RegisteredModelRecord,
    RunArtifactRecord,
    RunRecord,
)

_HEX = re.compile(r"^[0-9a-f]{4,64}$")
MAX_DEPTH = 12
MODEL_PREFIX = "model:"  # `lineage("model:churn@3")`: a model version as the starting point


@dataclass
class LineageNode:
    """One thing in the graph: a dataset version, a run, an artifact, code or an environment."""

    kind: str
    id: str
    label: str
    relation: str = ""  # how it relates to its parent in the tree ("input", "produced by", ...)
    details: dict[str, Any] = field(default_factory=dict)
    children: list[LineageNode] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "label": self.label,
            "relation": self.relation,
            "details": self.details,
            "children": [child.to_json() for child in self.children],
        }

    def walk(self) -> list[LineageNode]:
        found = [self]
        for child in self.children:
            found.extend(child.walk())
        return found


@dataclass
class Lineage:
    """Where `root` came from (`upstream`) and what was made from it (`downstream`)."""

    root: LineageNode
    upstream: list[LineageNode]
    downstream: list[LineageNode]

    def to_json(self) -> dict[str, Any]:
        return {
            "root": {k: v for k, v in self.root.to_json().items() if k != "children"},
            "upstream": [node.to_json() for node in self.upstream],
            "downstream": [node.to_json() for node in self.downstream],
        }


class _Walker:
    def __init__(self, session: Session, depth: int) -> None:
        self.session = session
        self.depth = depth

    # -- nodes ----------------------------------------------------------------------------

    def dataset_node(self, record: DatasetVersionRecord, relation: str = "") -> LineageNode:
        name = self.session.scalar(
            select(DatasetRecord.name).where(DatasetRecord.id == record.dataset_id)
        )
        ref = f"{name}@{record.version}"
        return LineageNode(
            "dataset", ref, f"dataset {ref}", relation,
            {"content_hash": record.content_hash, "rows": record.num_rows,
             "source": record.source, "artifact": record.artifact},
        )  # fmt: skip

    def run_node(self, record: RunRecord, relation: str = "") -> LineageNode:
        label = f"run {record.id[:12]}"
        if record.pipeline:
            label += f" (pipeline {record.pipeline})"
        elif record.name:
            label += f" ({record.name})"
        return LineageNode(
            "run", record.id, label, relation,
            {"status": record.status, "started_at": record.started_at.isoformat(),
             "user": record.user, "seed": record.seed},
        )  # fmt: skip

    def model_node(self, record: ModelVersionRecord, relation: str = "") -> LineageNode:
        name = self.session.scalar(
            select(RegisteredModelRecord.name).where(RegisteredModelRecord.id == record.model_id)
        )
        ref = f"{name}@{record.version}"
        return LineageNode(
            "model", ref, f"model {ref} ({record.flavor})", relation,
            {"artifact": record.artifact, "flavor": record.flavor, "run_id": record.run_id,
             "datasets": list(record.datasets.get("refs", []))},
        )  # fmt: skip

    def artifact_node(self, row: RunArtifactRecord, relation: str = "") -> LineageNode:
        if row.kind == "dataset" and row.meta.get("ref"):
            record = self._dataset_by_artifact(row.digest)
            if record is not None:
                return self.dataset_node(record, relation)
        if row.kind == "model" and row.meta.get("ref"):
            model = self._model_by_artifact(row.digest, str(row.meta["ref"]))
            if model is not None:
                return self.model_node(model, relation)
        return LineageNode(
            "artifact", row.digest, f"{row.kind} {row.name} sha256:{row.digest[:12]}", relation,
            {"kind": row.kind, "size": row.size, "name": row.name},
        )  # fmt: skip

    def _model_by_artifact(self, digest: str, ref: str) -> ModelVersionRecord | None:
        name = ref.partition("@")[0]
        return self.session.scalar(
            select(ModelVersionRecord)
            .join(RegisteredModelRecord, RegisteredModelRecord.id == ModelVersionRecord.model_id)
            .where(ModelVersionRecord.artifact == digest, RegisteredModelRecord.name == name)
            .limit(1)
        )

    def _dataset_by_artifact(self, digest: str) -> DatasetVersionRecord | None:
        return self.session.scalar(
            select(DatasetVersionRecord).where(DatasetVersionRecord.artifact == digest).limit(1)
        )

    # -- upstream -------------------------------------------------------------------------

    def upstream_of(self, node: LineageNode, depth: int, seen: set[str]) -> list[LineageNode]:
        key = f"{node.kind}:{node.id}"  # a dataset and a model may share a NAME@N
        if depth >= self.depth or key in seen:
            return []
        seen = seen | {key}
        if node.kind == "run":
            found = self._run_upstream(node.id)
        elif node.kind == "dataset":
            found = self._dataset_upstream(node)
        elif node.kind == "model":
            found = self._model_upstream(node)
        elif node.kind == "artifact":
            found = self._producers(node.id)
        else:
            return []
        for child in found:
            child.children = self.upstream_of(child, depth + 1, seen)
        return found

    def _run_upstream(self, run_id: str) -> list[LineageNode]:
        record = self.session.get(RunRecord, run_id)
        assert record is not None
        inputs = self.session.scalars(
            select(RunArtifactRecord)
            .where(RunArtifactRecord.run_id == run_id, RunArtifactRecord.direction == "input")
            .order_by(RunArtifactRecord.name)
        )
        found = [self.artifact_node(row, "input") for row in inputs]
        # Only a commit is shortened: "not under git" was cut to "not under gi".
        commit = record.code_commit[:12] if record.code_commit else "not under git"
        dirty = " + uncommitted changes" if record.code_dirty else ""
        found.append(
            LineageNode(
                "code", record.code_commit or "", f"code {commit}{dirty}", "code",
                {"commit": record.code_commit, "dirty": record.code_dirty,
                 "root": record.code_root, "source": record.source},
            )
        )  # fmt: skip
        environment = self.session.get(EnvironmentRecord, record.environment_id)
        if environment is not None:
            found.append(
                LineageNode(
                    "environment", environment.id,
                    f"python {environment.python}, {len(environment.packages)} packages",
                    "environment",
                    {"platform": environment.platform, "lock_file": environment.lock_file,
                     "lock_hash": environment.lock_hash},
                )
            )  # fmt: skip
        return found

    def _dataset_upstream(self, node: LineageNode) -> list[LineageNode]:
        record = self._dataset_record(node.id)
        found = []
        if record.run_id:
            run = self.session.get(RunRecord, record.run_id)
            if run is not None:
                found.append(self.run_node(run, "produced by"))
        if record.parent_id:
            parent = self.session.get(DatasetVersionRecord, record.parent_id)
            if parent is not None:
                found.append(self.dataset_node(parent, "derived from"))
        if not found:
            found.append(
                LineageNode("source", record.source, f"source {record.source}", "added from")
            )
        return found

    def _model_upstream(self, node: LineageNode) -> list[LineageNode]:
        run_id = node.details.get("run_id")
        run = self.session.get(RunRecord, run_id) if run_id else None
        if run is not None:
            return [self.run_node(run, "produced by")]
        found = []
        for ref in node.details.get("datasets", []):
            name, _, version = str(ref).rpartition("@")
            record = self.session.scalar(
                select(DatasetVersionRecord)
                .join(DatasetRecord)
                .where(DatasetRecord.name == name, DatasetVersionRecord.version == int(version))
            )
            if record is not None:
                found.append(self.dataset_node(record, "trained on"))
        return found

    def _producers(self, digest: str) -> list[LineageNode]:
        rows = self.session.scalars(
            select(RunRecord)
            .join(RunArtifactRecord, RunArtifactRecord.run_id == RunRecord.id)
            .where(RunArtifactRecord.digest == digest, RunArtifactRecord.direction == "output")
            .order_by(RunRecord.started_at)
            .limit(1)  # the first run that wrote it made it; later ones reused it from the cache
        )
        return [self.run_node(run, "produced by") for run in rows]

    def _dataset_record(self, ref: str) -> DatasetVersionRecord:
        name, _, version = ref.rpartition("@")
        record = self.session.scalar(
            select(DatasetVersionRecord)
            .join(DatasetRecord)
            .where(DatasetRecord.name == name, DatasetVersionRecord.version == int(version))
        )
        if record is None:
            raise NotFound(f"no dataset version {ref}")
        return record

    # -- downstream -----------------------------------------------------------------------

    def downstream_of(self, node: LineageNode, depth: int, seen: set[str]) -> list[LineageNode]:
        key = f"{node.kind}:{node.id}"
        if depth >= self.depth or key in seen:
            return []
        seen = seen | {key}
        if node.kind == "run":
            found = self._run_outputs(node.id)
        elif node.kind == "dataset":
            record = self._dataset_record(node.id)
            found = self._consumers(record.artifact) + [
                self.dataset_node(child, "derived")
                for child in self.session.scalars(
                    select(DatasetVersionRecord).where(DatasetVersionRecord.parent_id == record.id)
                )
            ]
        elif node.kind == "artifact":
            found = self._consumers(node.id)
        elif node.kind == "model":
            found = self._consumers(str(node.details["artifact"]))
        else:
            return []
        for child in found:
            child.children = self.downstream_of(child, depth + 1, seen)
        return found

    def _run_outputs(self, run_id: str) -> list[LineageNode]:
        rows = self.session.scalars(
            select(RunArtifactRecord)
            .where(RunArtifactRecord.run_id == run_id, RunArtifactRecord.direction == "output")
            .order_by(RunArtifactRecord.name)
        )
        found = [self.artifact_node(row, "output") for row in rows]
        created = self.session.scalars(
            select(DatasetVersionRecord).where(DatasetVersionRecord.run_id == run_id)
        )
        known = {node.id for node in found}
        for record in created:
            node = self.dataset_node(record, "created")
            if node.id not in known:
                found.append(node)
        return found

    def _consumers(self, digest: str) -> list[LineageNode]:
        runs = self.session.scalars(
            select(RunRecord)
            .join(RunArtifactRecord, RunArtifactRecord.run_id == RunRecord.id)
            .where(RunArtifactRecord.digest == digest, RunArtifactRecord.direction == "input")
            .order_by(RunRecord.started_at)
            .distinct()
        )
        return [self.run_node(run, "used by") for run in runs]

    # -- the starting point ---------------------------------------------------------------

    def resolve(self, ref: str) -> LineageNode:
        if ref.startswith(MODEL_PREFIX):
            return self.model_node(self._model_record(ref.removeprefix(MODEL_PREFIX)))
        if "@" in ref:
            return self.dataset_node(self._dataset_record(ref))
        text = ref.lower().removeprefix("sha256:")
        if not _HEX.match(text):
            raise InvalidInput(
                "expected a dataset version (name@N), a model version (model:NAME@N), a run id "
                f"or an artifact digest; got {ref!r}"
            )
        runs = self.session.scalars(
            select(RunRecord).where(RunRecord.id.startswith(text)).limit(2)
        ).all()
        if len(runs) == 1 and len(text) <= 32:
            return self.run_node(runs[0])
        rows = self.session.scalars(
            select(RunArtifactRecord).where(RunArtifactRecord.digest.startswith(text)).limit(1)
        ).all()
        if rows:
            return self.artifact_node(rows[0])
        dataset = self._dataset_by_artifact_prefix(text)
        if dataset is not None:
            return self.dataset_node(dataset)
        if len(runs) > 1:
            raise InvalidInput(f"{ref!r} matches several runs; give more of the id")
        raise NotFound(f"no run, artifact or dataset version matches {ref!r}")

    def _model_record(self, ref: str) -> ModelVersionRecord:
        """`NAME`, `NAME@N` or `NAME@ALIAS` (the registry's references) from the store."""
        name, _, selector = ref.partition("@")
        model = self.session.scalar(
            select(RegisteredModelRecord).where(RegisteredModelRecord.name == name)
        )
        if model is None:
            raise NotFound(f"no registered model {name!r}")
        query = select(ModelVersionRecord).where(ModelVersionRecord.model_id == model.id)
        if not selector:
            record = self.session.scalar(query.order_by(ModelVersionRecord.version.desc()))
        elif selector.isdigit():
            record = self.session.scalar(query.where(ModelVersionRecord.version == int(selector)))
        else:
            alias = self.session.get(ModelAliasRecord, (model.id, selector))
            record = (
                None if alias is None else self.session.get(ModelVersionRecord, alias.version_id)
            )
        if record is None:
            raise NotFound(f"model {name} has no version {selector or '(none yet)'}")
        return record

    def _dataset_by_artifact_prefix(self, text: str) -> DatasetVersionRecord | None:
        return self.session.scalar(
            select(DatasetVersionRecord)
            .where(DatasetVersionRecord.artifact.startswith(text))
            .limit(1)
        )


def lineage(ref: str, *, project: Project | None = None, depth: int = MAX_DEPTH) -> Lineage:
    """The lineage of a dataset version (`name@N`), a model version (`model:NAME@N` or
    `model:NAME@ALIAS`), a run (id or prefix) or an artifact digest."""
    project = project or current()
    if depth < 1:
        raise InvalidInput(f"depth must be at least 1; got {depth}")
    with project.metadata.read() as session:
        walker = _Walker(session, depth)
        if "@" in ref and not ref.startswith(MODEL_PREFIX):
            from shipyard.data.versions import get as get_version

            ref = get_version(ref, project=project).ref
        root = walker.resolve(ref)
        return Lineage(
            root,
            walker.upstream_of(root, 0, set()),
            walker.downstream_of(root, 0, set()),
        )
