"""Drift of one model: per feature the reference and current histograms overlaid, the statistic
and verdict, and the trend over the last windows. The views and the SVG come from the drift
report (`shipyard.monitoring.report`), so the page and the HTML report always agree."""

from __future__ import annotations

from typing import Any

from shipyard.errors import InvalidInput, NotFound
from shipyard.monitoring import drift
from shipyard.monitoring.report import (
    CURRENT_COLOUR,
    REFERENCE_COLOUR,
    column_view,
    header_view,
    trend_windows,
)
from shipyard.project import Project
from shipyard.ui.pages.common import when

DEFAULT_WINDOWS = 10
MAX_WINDOWS = 200


def window_count(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_WINDOWS
    if not value.isdigit() or not 1 <= int(value) <= MAX_WINDOWS:
        raise InvalidInput(f"windows must be a whole number from 1 to {MAX_WINDOWS}; got {value!r}")
    return int(value)


def drift_page(project: Project, model: str, windows: int) -> dict[str, Any]:
    results = drift.history(model, limit=windows, project=project)  # newest first
    if not results:
        raise NotFound(
            f"no drift result for model {model!r} yet; run `shipyard drift check {model}`"
        )
    latest = results[0].to_dict()
    history = [r.to_dict() for r in results]
    trend = trend_windows(latest, history)
    features = [column_view(i, c, trend) for i, c in enumerate(latest["columns"])]
    features.sort(key=lambda c: (c.css == "clean", c.css != "alerting"))  # drifted first
    return {
        "model": model,
        "drift_header": header_view(latest, len(trend)),
        "features": features,
        "reference_colour": REFERENCE_COLOUR,
        "current_colour": CURRENT_COLOUR,
        "results": [
            {
                "id": r.id,
                "window": f"{when(r.window_start)} to {when(r.window_end)}",
                "rows": r.current_rows,
                "drifted": r.drifted,
                "alerting": r.alerting,
                "share": f"{r.drifted_share:.0%}",
                "created": when(r.created_at),
            }
            for r in results
        ],
    }


def drift_index(project: Project) -> dict[str, Any]:
    """Each model with its latest drift verdict (one indexed lookup per model)."""
    from shipyard.registry.versions import list_models

    rows = []
    for summary in list_models(project=project):
        latest = drift.latest(summary.name, project=project)
        rows.append(
            {
                "model": summary.name,
                "checked": latest is not None,
                "drifted": bool(latest and latest.drifted),
                "alerting": bool(latest and latest.alerting),
                "share": f"{latest.drifted_share:.0%}" if latest else "",
                "created": when(latest.created_at) if latest else "",
            }
        )
    return {"models": rows}
