"""Tracking: runs, their parameters, metrics, artifacts, code and environment."""

from shipyard.tracking.runs import (
    Run,
    RunInfo,
    active_run,
    get_run,
    list_runs,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    metric_history,
    set_tag,
    start_run,
)
from shipyard.tracking.search import search_runs

__all__ = [
    "Run",
    "RunInfo",
    "active_run",
    "get_run",
    "list_runs",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "metric_history",
    "search_runs",
    "set_tag",
    "start_run",
]
