"""The data validation gate: the version's training data meets the dataset's expectations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipyard.data.validation import Expectations, expectations_for, validate
from shipyard.data.versions import get as get_dataset
from shipyard.gates.context import GateContext
from shipyard.gates.evaluation import check
from shipyard.gates.policy import DataValidation
from shipyard.gates.report import GateResult


def expectations_path(gate: DataValidation, ctx: GateContext) -> Path:
    """The gate's expectations file; a relative path is read from the project's root folder
    (the one holding `.shipyard/`), so the policy means the same from any working folder."""
    assert gate.expectations is not None
    path = Path(gate.expectations).expanduser()
    return path if path.is_absolute() else ctx.project.home.resolve().parent / path


def run_data_validation(gate: DataValidation, ctx: GateContext) -> GateResult:
    refs = list(ctx.candidate.version.datasets)
    if not refs:
        reasons = [
            f"no training dataset is recorded with {ctx.candidate.ref}: nothing to "
            "validate; register it with training_data=DATASET_VERSION"
        ]
        return GateResult(
            gate.label, gate.kind, gate.required, False, {"datasets": [], "checks": []}, reasons
        )
    if gate.expectations is not None:
        expectations = Expectations.load(expectations_path(gate, ctx))
        source = str(gate.expectations)
    else:
        assert ctx.policy.holdout is not None  # the policy checked it
        expectations = expectations_for(get_dataset(ctx.policy.holdout, project=ctx.project))
        source = f"inferred from {ctx.policy.holdout}"
    failures: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    reasons = [f"expectations: {source}"]
    for ref in refs:
        version = get_dataset(ref, project=ctx.project)
        report = validate(version.path(), expectations, format="parquet")
        bad = report.failures
        checks.append(check(f"{ref} failed checks", float(len(bad)), "<=", 0.0, not bad))
        reasons.append(
            f"{ref}: {len(report.checks) - len(bad)} of {len(report.checks)} checks "
            f"passed on {report.rows} rows"
        )
        for finding in bad:
            failures.append(
                {
                    "dataset": ref,
                    "column": finding.column,
                    "rule": finding.rule,
                    "expected": finding.expected,
                    "observed": finding.observed,
                }
            )
            reasons.append(
                f"{ref}: {finding.column} {finding.rule}: expected "
                f"{finding.expected}, found {finding.observed}"
            )
    details = {"datasets": refs, "expectations": source, "failures": failures, "checks": checks}
    return GateResult(gate.label, gate.kind, gate.required, not failures, details, reasons)
