"""SLOs: per SLO, its error budget burned down over time and its burn rates per alert window,
from the stored evaluations (`slo.history`)."""

from __future__ import annotations

from typing import Any

from shipyard.monitoring import slo
from shipyard.project import Project
from shipyard.ui.pages.charts import line_chart
from shipyard.ui.pages.overview import slo_rows

HISTORY_POINTS = 500  # the newest evaluations drawn per SLO


def _charts(project: Project, objective: slo.SLO) -> dict[str, Any]:
    evaluations = slo.history(
        objective.model, objective.name, limit=HISTORY_POINTS, project=project
    )
    times = [e.at for e in evaluations]
    burn_down = line_chart(
        times,
        {"budget left": [e.budget_remaining for e in evaluations]},
        title=f"{objective.model} / {objective.name}: error budget left over {objective.window}",
        y_label="error budget left (%)",
        thresholds=[(0.0, "budget spent")],
        percent=True,
        empty="no evaluation stored yet: run `shipyard slo evaluate`",
    )
    windows = [w for w in objective.windows() if any(w in e.burn_rates for e in evaluations)]
    burn_rates = line_chart(
        times,
        {w: [e.burn_rates.get(w) for e in evaluations] for w in windows},
        title=f"{objective.model} / {objective.name}: burn rate per window",
        y_label="burn rate (x budget)",
        thresholds=sorted(
            {
                (rule.burn_rate, f"{rule.severity} {rule.burn_rate:g}x ({rule.long})")
                for rule in objective.alerts
            }
        ),
        empty="no evaluation stored yet: run `shipyard slo evaluate`",
    )
    return {
        "model": objective.model,
        "name": objective.name,
        "anchor": f"slo-{objective.model}-{objective.name}",
        "evaluations": len(evaluations),
        "burn_down": burn_down,
        "burn_rates": burn_rates,
    }


def slos_page(project: Project, model: str | None) -> dict[str, Any]:
    declared = [o for o in slo.declared(project=project) if model is None or o.model == model]
    return {
        "model": model,
        "rows": slo_rows(project, model),
        "charts": [_charts(project, objective) for objective in declared],
    }
