"""Continuous training: triggers (a schedule, new data, drift, an SLO or quality breach) that run
the registered training pipeline on the newest data and hand its model to the gates and release.

>>> from shipyard.training import run_once, history, approve
>>> for firing in run_once():          # one pass over every [training.MODEL] of the project
...     print(firing.describe())
>>> history("weather")[0].status       # "rolling_out", "gates_failed", "awaiting_approval", ...

See docs/continuous-training.md.
"""

from shipyard.training.continuous import (
    STATUSES,
    Firing,
    TriggerState,
    approve,
    get_firing,
    history,
    run,
    run_once,
    trigger_states,
)
from shipyard.training.plans import TrainingPlan, load_plans, parse_plans
from shipyard.training.triggers import KINDS, Trigger, Verdict

__all__ = [
    "KINDS",
    "STATUSES",
    "Firing",
    "TrainingPlan",
    "Trigger",
    "TriggerState",
    "Verdict",
    "approve",
    "get_firing",
    "history",
    "load_plans",
    "parse_plans",
    "run",
    "run_once",
    "trigger_states",
]
