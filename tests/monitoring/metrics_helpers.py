"""Metrics test helpers: stored drift and SLO rows, and parsing the Prometheus text format."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from shipyard.project import Project
from shipyard.store.models import DriftResultRecord, SLOEvaluationRecord


def column(
    name: str, statistic: Any, drifted: bool | None, role: str = "feature", method: str = "ks"
) -> dict[str, Any]:
    return {
        "name": name,
        "role": role,
        "kind": "numeric",
        "method": method,
        "statistic": statistic,
        "threshold": 0.1,
        "drifted": drifted,
    }


def store_drift(
    project: Project,
    model: str,
    share: float,
    columns: list[dict[str, Any]],
    *,
    drifted: bool = False,
    alerting: bool = False,
) -> None:
    with project.metadata.write() as session:
        session.add(
            DriftResultRecord(
                model=model,
                version=1,
                reference=f"{model}-train@1",
                reference_rows=400,
                current_rows=200,
                drifted=drifted,
                drifted_share=share,
                alerting=alerting,
                result={"model": model, "columns": columns},
                created_by="test",
            )
        )


def store_slo(
    project: Project,
    model: str,
    slo: str,
    *,
    sli: str = "availability",
    objective: float = 0.999,
    value: float | None = 0.9995,
    budget: float | None = 0.5,
    burn_rates: dict[str, float] | None = None,
) -> None:
    with project.metadata.write() as session:
        session.add(
            SLOEvaluationRecord(
                model=model,
                slo=slo,
                sli=sli,
                objective=objective,
                value=value,
                budget_remaining=budget,
                events=1000,
                detail={"burn_rates": burn_rates or {}},
            )
        )


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition: (name, labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def total(text: str, name: str, **where: str) -> float:
    """The sum of `name`'s samples whose labels include `where`."""
    return sum(
        value
        for (sample, labels), value in samples(text).items()
        if sample == name and set(where.items()) <= labels
    )


def value(text: str, name: str, **labels: str) -> float | None:
    """The one sample of `name` with exactly `labels`, or None."""
    return samples(text).get((name, frozenset(labels.items())))
