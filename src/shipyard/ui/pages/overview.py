"""The overview: each model, its champion, live rollouts with their split, SLOs, open alerts.

SLO status is the latest stored evaluation (what `shipyard slo evaluate` or the monitor wrote),
not a fresh count: counting a 28-day window over the prediction log on every page view would
make the front page the slowest one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shipyard.errors import ConfigError
from shipyard.monitoring import alerting, slo
from shipyard.project import Project
from shipyard.registry.versions import list_models
from shipyard.release import rollouts
from shipyard.ui.pages.common import Pager, exact_percent, percent, slice_page, when


@dataclass(frozen=True)
class ModelRow:
    name: str
    versions: int
    latest: int | None
    champion: int | None
    aliases: dict[str, int]
    rollout: dict[str, Any] | None  # the live rollout, if any


@dataclass(frozen=True)
class SLORow:
    model: str
    name: str
    sli: str
    objective: str
    window: str
    value: str
    budget: str
    budget_css: str
    firing: list[str]
    at: str


def split_text(weights: dict[str, float]) -> str:
    """`v1 90% / v2 10%`: a rollout's current split."""
    return " / ".join(f"{arm} {float(share):g}%" for arm, share in sorted(weights.items()))


def rollout_summary(rollout: rollouts.Rollout) -> dict[str, Any]:
    return {
        "id": rollout.id,
        "name": rollout.name,
        "model": rollout.model,
        "strategy": rollout.strategy,
        "status": rollout.status,
        "step": rollout.step + 1,
        "steps": len(rollout.spec.steps),
        "split": split_text(rollout.weights),
        "weights": dict(rollout.weights),
        "champion": rollout.champion,
        "candidates": list(rollout.candidates),
        "started": when(rollout.created_at),
        "finished": when(rollout.finished_at) if rollout.finished_at else "",
        "outcome": rollout.outcome,
    }


def models_page(project: Project, page: int) -> tuple[list[ModelRow], Pager]:
    summaries, pager = slice_page(list_models(project=project), page)
    live = rollouts.live([s.name for s in summaries], project=project) if summaries else {}
    rows = [
        ModelRow(
            s.name,
            s.versions,
            s.latest,
            s.aliases.get(rollouts.CHAMPION),
            s.aliases,
            rollout_summary(live[s.name]) if s.name in live else None,
        )
        for s in summaries
    ]
    return rows, pager


def slo_rows(project: Project, model: str | None = None) -> list[SLORow]:
    """Each declared SLO with its latest stored evaluation."""
    rows = []
    declared = slo.declared(project=project)
    for objective in declared:
        if model is not None and objective.model != model:
            continue
        latest = slo.history(objective.model, objective.name, limit=1, project=project)
        last = latest[-1] if latest else None
        budget = None if last is None else last.budget_remaining
        rows.append(
            SLORow(
                model=objective.model,
                name=objective.name,
                sli=objective.sli,
                objective=exact_percent(objective.objective),
                window=objective.window,
                value=percent(last.value) if last else "not evaluated yet",
                budget=percent(budget) if last else "n/a",
                budget_css=_budget_css(budget),
                firing=list(last.firing) if last else [],
                at=when(last.at) if last else "",
            )
        )
    return rows


def _budget_css(budget: float | None) -> str:
    if budget is None:
        return "unknown"
    if budget <= 0:
        return "bad"
    return "warn" if budget < 0.25 else "good"


def overview(project: Project, page: int) -> dict[str, Any]:
    models, pager = models_page(project, page)
    slo_problem = None
    try:
        slos = slo_rows(project)
    except ConfigError as exc:  # a bad [[slos]] table must not take the whole page down
        slos, slo_problem = [], str(exc)
    return {
        "models": models,
        "pager": pager,
        "slos": slos,
        "slo_problem": slo_problem,
        "alerts": [
            {
                "id": a.id,
                "model": a.model,
                "kind": a.kind,
                "severity": a.severity,
                "summary": a.summary,
                "opened": when(a.opened_at),
            }
            for a in alerting.open_alerts(project=project)
        ],
    }
