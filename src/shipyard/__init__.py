"""shipyard: continuous delivery for machine learning, from versioned data to production.

>>> import shipyard
>>> project = shipyard.init()                          # .shipyard/ here
>>> v1 = shipyard.data.add("customers.csv", name="customers")
>>> shipyard.data.validate("new_batch.csv", v1).passed
>>> @shipyard.step
... def fit(frame, depth: int): ...
>>> with shipyard.start_run("baseline", params={"depth": 3}) as run:
...     run.log_metric("auc", 0.91)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "Project",
    "ShipyardError",
    "__version__",
    "data",
    "init",
    "lineage",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "pipeline",
    "register",
    "start_run",
    "step",
]

if TYPE_CHECKING:
    from shipyard import data
    from shipyard.errors import ShipyardError
    from shipyard.pipelines import pipeline, step
    from shipyard.project import Project, init
    from shipyard.registry.versions import register
    from shipyard.tracking.active import log_metric, log_metrics, log_param, log_params
    from shipyard.tracking.lineage import lineage
    from shipyard.tracking.runs import start_run

# Names resolved on first use, so that `shipyard --help` does not pay for pyarrow and SQLAlchemy.
_EXPORTS = {
    "data": ("shipyard.data", None),
    "Project": ("shipyard.project", "Project"),
    "init": ("shipyard.project", "init"),
    "ShipyardError": ("shipyard.errors", "ShipyardError"),
    "step": ("shipyard.pipelines", "step"),
    "pipeline": ("shipyard.pipelines", "pipeline"),
    "start_run": ("shipyard.tracking.runs", "start_run"),
    "log_metric": ("shipyard.tracking.active", "log_metric"),
    "log_metrics": ("shipyard.tracking.active", "log_metrics"),
    "log_param": ("shipyard.tracking.active", "log_param"),
    "log_params": ("shipyard.tracking.active", "log_params"),
    "lineage": ("shipyard.tracking.lineage", "lineage"),
    "register": ("shipyard.registry.versions", "register"),
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'shipyard' has no attribute {name!r}")
    module_name, attribute = _EXPORTS[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)
