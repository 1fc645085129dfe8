"""Tracking: runs, their parameters, metrics, artifacts, code and environment.

Names resolve on first use: a pipeline file that imports `shipyard.tracking` should not pay for
SQLAlchemy when every step of it comes from the cache.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.tracking.active import (
        log_metric,
        log_metrics,
        log_param,
        log_params,
        set_tag,
    )
    from shipyard.tracking.runs import (
        Run,
        RunInfo,
        active_run,
        get_run,
        list_runs,
        metric_history,
        start_run,
    )
    from shipyard.tracking.search import search_runs

_EXPORTS = {
    "log_metric": "shipyard.tracking.active",
    "log_metrics": "shipyard.tracking.active",
    "log_param": "shipyard.tracking.active",
    "log_params": "shipyard.tracking.active",
    "set_tag": "shipyard.tracking.active",
    "Run": "shipyard.tracking.runs",
    "RunInfo": "shipyard.tracking.runs",
    "active_run": "shipyard.tracking.runs",
    "get_run": "shipyard.tracking.runs",
    "list_runs": "shipyard.tracking.runs",
    "metric_history": "shipyard.tracking.runs",
    "start_run": "shipyard.tracking.runs",
    "search_runs": "shipyard.tracking.search",
}
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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'shipyard.tracking' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
