"""Quality gates: what a model version must pass before it may take an alias.

>>> from shipyard.gates import run_gates, approve, latest_report
>>> report = run_gates("churn@3", "champion")      # the [policies.champion] in shipyard.toml
>>> report.passed; print(report.to_markdown())

Gate kinds: evaluation (thresholds on a holdout), blessing (beat the champion), differential
(prediction changes vs the champion), benchmark (latency vs the champion), data validation
(training data meets expectations), slice (metric per group), approval (a person said yes).
See docs/gates.md.
"""

from shipyard.gates.metrics import METRICS, known_metrics
from shipyard.gates.policy import (
    Approval,
    Benchmark,
    Blessing,
    DataValidation,
    Differential,
    Evaluation,
    Gate,
    Policy,
    Slice,
    Threshold,
    load_policy,
)
from shipyard.gates.records import approve, latest_report
from shipyard.gates.report import GateReport, GateResult
from shipyard.gates.runner import resolve_policy, run_gates

__all__ = [
    "METRICS",
    "Approval",
    "Benchmark",
    "Blessing",
    "DataValidation",
    "Differential",
    "Evaluation",
    "Gate",
    "GateReport",
    "GateResult",
    "Policy",
    "Slice",
    "Threshold",
    "approve",
    "known_metrics",
    "latest_report",
    "load_policy",
    "resolve_policy",
    "run_gates",
]
