"""A model version: signature, metrics, gate reports, its lineage as a graph, the diff against
the champion."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from shipyard.errors import NotFound
from shipyard.gates.records import APPROVAL_PREFIX, latest_report
from shipyard.gates.report import describe_check, fmt
from shipyard.project import Project
from shipyard.registry.diff import diff
from shipyard.registry.versions import ModelVersion, get, version_record, versions
from shipyard.release import rollouts
from shipyard.store.models import GateResultRecord
from shipyard.ui.pages.charts import Graph, Node, lineage_graph
from shipyard.ui.pages.common import Pager, number, slice_page, when
from shipyard.ui.pages.overview import split_text


def model_versions(project: Project, name: str, page: int) -> tuple[list[ModelVersion], Pager]:
    """The versions of a model, newest first, one page."""
    found = list(reversed(versions(name, project=project)))
    return slice_page(found, page)


def _signature(version: ModelVersion) -> dict[str, Any] | None:
    signature = version.signature
    if signature is None:
        return None
    return {
        "kind": signature.kind,
        "inputs": [(c.name, c.describe()) for c in signature.inputs],
        "outputs": [(c.name, c.describe()) for c in signature.outputs],
    }


def _policies(project: Project, ref: str) -> list[str]:
    """The policies this version has a stored gate report for (approvals are not reports)."""
    with project.metadata.read() as session:
        record, _ = version_record(session, ref)
        found = session.scalars(
            select(GateResultRecord.policy)
            .where(GateResultRecord.version_id == record.id)
            .distinct()
        ).all()
    return sorted(p for p in found if not p.startswith(APPROVAL_PREFIX))


def _gate_reports(project: Project, ref: str) -> list[dict[str, Any]]:
    reports = []
    for policy in _policies(project, ref):
        report = latest_report(ref, policy, project=project)
        reports.append(
            {
                "policy": policy,
                "passed": report.passed,
                "created": when(report.created_at),
                "created_by": report.created_by,
                "results": [
                    {
                        "name": r.name,
                        "kind": r.kind,
                        "required": r.required,
                        "verdict": r.verdict,
                        "passed": r.passed,
                        "checks": [describe_check(c) for c in r.checks],
                        "reasons": r.reasons,
                    }
                    for r in report.results
                ],
            }
        )
    return reports


def _rollouts_of(project: Project, version: ModelVersion) -> list[rollouts.Rollout]:
    return [
        r
        for r in rollouts.list_rollouts(project=project)
        if r.model == version.name and version.version in (r.champion, *r.candidates)
    ]


def _lineage(version: ModelVersion, involved: list[rollouts.Rollout]) -> Graph:
    datasets = [
        Node(f"d:{ref}", "dataset", ref, "dataset version", None) for ref in version.datasets
    ]
    run = (
        [
            Node(
                f"r:{version.run_id}",
                "run",
                f"run {version.run_id[:8]}",
                "training run",
                f"/runs/compare?ids={version.run_id}",
            )
        ]
        if version.run_id
        else []
    )
    this = Node("v", "version", version.ref, version.flavor, None, current=True)
    deployed = [
        Node(f"o:{r.id}", "rollout", r.name, f"{r.strategy}, {r.status}", f"/rollouts/{r.id}")
        for r in involved
    ]
    links = [(d.key, run[0].key if run else "v") for d in datasets]
    links += [(run[0].key, "v")] if run else []
    links += [("v", o.key) for o in deployed]
    return lineage_graph([datasets, run, [this], deployed], links)


def _diff(project: Project, version: ModelVersion, champion: int | None) -> dict[str, Any] | None:
    if champion is None or champion == version.version:
        return None
    found = diff(f"{version.name}@{champion}", version.ref, project=project)
    return {
        "a": found.a,
        "b": found.b,
        "same": found.same,
        "flavor": found.flavor,
        "signature": found.signature,
        "params": [(c.key, fmt(c.before), fmt(c.after)) for c in found.params],
        "metrics": [(c.key, fmt(c.before), fmt(c.after)) for c in found.metrics],
        "datasets": found.datasets,
        "dependencies": [(c.key, fmt(c.before), fmt(c.after)) for c in found.dependencies],
    }


def model_version(project: Project, name: str, number_text: str) -> dict[str, Any]:
    if not number_text.isdigit():
        raise NotFound(f"model versions are numbered: /ui/models/{name}/3; got {number_text!r}")
    version = get(f"{name}@{int(number_text)}", project=project)
    champion = rollouts.champion_of(name, project=project)
    involved = _rollouts_of(project, version)
    return {
        "version": version,
        "created": when(version.created_at),
        "signature": _signature(version),
        "metrics": [(k, number(v)) for k, v in sorted(version.metrics.items())],
        "params": [(k, fmt(v)) for k, v in sorted(version.params.items())],
        "gates": _gate_reports(project, version.ref),
        "champion": champion,
        "diff": _diff(project, version, champion),
        "graph": _lineage(version, involved),
        "rollouts": [
            {"id": r.id, "name": r.name, "status": r.status, "split": split_text(r.weights)}
            for r in involved
        ],
    }
