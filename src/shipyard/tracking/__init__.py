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
    "set_tag",
    "start_run",
]
