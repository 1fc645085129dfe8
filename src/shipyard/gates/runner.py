"""`run_gates`: judge a model version by a promotion policy and store the gate report.

>>> report = run_gates("churn@3", "champion")
>>> report.passed, [r.verdict for r in report.results]

The champion is the version that holds the policy's alias now. Nothing is stored when a gate
cannot run (a bad policy, a missing dataset, a champion with other inputs): the error says
what to fix. Otherwise every result is stored in one transaction under one new report id.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput, NotFound
from shipyard.gates.comparison import run_benchmark, run_differential
from shipyard.gates.context import GateContext, Subject
from shipyard.gates.evaluation import run_blessing, run_evaluation, run_slice
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
    load_policy,
)
from shipyard.gates.records import (
    add_report,
    clean_result,
    latest_approval,
    new_report_id,
)
from shipyard.gates.report import GateReport, GateResult
from shipyard.gates.training_data import run_data_validation
from shipyard.project import Project, current
from shipyard.registry.versions import ModelVersion, get, version_record
from shipyard.store.models import utcnow

if TYPE_CHECKING:
    import pandas as pd

CHAMPION_RELATIVE = (Blessing, Differential, Benchmark)
_RUNNERS: dict[type[Gate], Callable[[Any, GateContext], GateResult]] = {
    Evaluation: run_evaluation,
    Blessing: run_blessing,
    Differential: run_differential,
    Benchmark: run_benchmark,
    DataValidation: run_data_validation,
    Slice: run_slice,
}


def resolve_policy(policy: str | Policy, project: Project) -> Policy:
    """A `Policy` as given, or the one configured under `[policies.NAME]`."""
    if isinstance(policy, Policy):
        return policy
    if not isinstance(policy, str):
        raise InvalidInput(f"policy must be a name or a Policy; got {policy!r}")
    return load_policy(policy, project.settings.policies)


def _champion(candidate: ModelVersion, policy: Policy, project: Project) -> ModelVersion | None:
    try:
        found = get(f"{candidate.name}@{policy.name}", project=project)
    except NotFound:
        return None
    return None if found.version == candidate.version else found


def check_same_inputs(candidate: ModelVersion, champion: ModelVersion) -> None:
    """Refuse to compare models that do not take the same inputs: the comparison would be
    of different questions."""
    mine, theirs = candidate.signature, champion.signature
    if mine is None or theirs is None:
        differences = (
            []
            if mine is theirs
            else [f"{(champion if mine is None else candidate).ref} has no signature"]
        )
    else:
        differences = [line for line in theirs.describe_differences(mine) if _changes_inputs(line)]
    if differences:
        raise InvalidInput(
            f"cannot compare {candidate.ref} with champion {champion.ref}: their inputs differ "
            f"({'; '.join(differences)}); retrain the candidate on the champion's inputs, or "
            "drop the blessing, differential and benchmark gates from the policy while the "
            "inputs change"
        )


def _changes_inputs(line: str) -> bool:
    """Whether a signature difference changes what the model takes. New ranges, levels or
    nullability come with every retraining on new data; they do not make rows incomparable."""
    if line.startswith("kind:"):
        return True
    if not line.startswith("input "):
        return False
    if re.match(r"input '.*?' (removed|added)", line):
        return True
    change = line.partition("': ")[2]
    return change.startswith(("type ", "dtype ", "shape "))


def _frame(ref: str, project: Project, policy: Policy, role: str) -> pd.DataFrame:
    from shipyard.data.versions import get as get_dataset

    try:
        return get_dataset(ref, project=project).to_pandas()
    except NotFound as exc:
        raise NotFound(f"policy {policy.name!r}, field {role!r}: {exc}") from None


def _context(candidate: ModelVersion, policy: Policy, project: Project) -> GateContext:
    champion = _champion(candidate, policy, project)
    if champion is not None and any(isinstance(g, CHAMPION_RELATIVE) for g in policy.gates):
        check_same_inputs(candidate, champion)
    ctx = GateContext(
        policy,
        project,
        Subject(candidate, candidate.load(project=project)),
        None if champion is None else Subject(champion, champion.load(project=project)),
    )
    if policy.holdout is not None and any(g.needs_holdout for g in policy.gates):
        holdout = _frame(policy.holdout, project, policy, "holdout")
        target = policy.target
        if target not in holdout.columns:
            raise InvalidInput(
                f"policy {policy.name!r}, field 'target': the holdout {policy.holdout} has no "
                f"column {target!r} (columns: {', '.join(map(str, holdout.columns))})"
            )
        labelled = holdout[target].notna().to_numpy()
        ctx.dropped_unlabelled = int((~labelled).sum())
        ctx.holdout = holdout[labelled].reset_index(drop=True)
    if any(isinstance(g, (Differential, Benchmark)) for g in policy.gates):
        rows = policy.standard_rows
        if rows is None:
            raise InvalidInput(
                f"policy {policy.name!r}: the differential and benchmark gates need rows: set "
                f'standard = "NAME@VERSION" (or holdout) in [policies.{policy.name}]'
            )
        ctx.standard = _frame(rows, project, policy, "standard" if policy.standard else "holdout")
    return ctx


def _approval_result(
    gate: Approval, session: Session, version_id: int, policy: str, ref: str
) -> GateResult:
    found = latest_approval(session, version_id, policy)
    if found is None:
        reason = (
            f"not approved yet: run `shipyard approve {ref} --policy {policy}`, then the "
            "gates again"
        )
        return GateResult(gate.label, gate.kind, gate.required, False, {"checks": []}, [reason])
    return GateResult(gate.label, gate.kind, gate.required, True, found.details, found.reasons)


def run_gates(
    ref: str, policy: str | Policy = "champion", *, project: Project | None = None
) -> GateReport:
    """Run every gate of `policy` on version `ref`; store and return the report."""
    project = project or current()
    chosen = resolve_policy(policy, project)
    candidate = get(ref, project=project)  # `name@alias` resolved once, here
    ctx = _context(candidate, chosen, project)
    results: dict[str, GateResult] = {}
    for gate in chosen.gates:
        runner = next((run for kind, run in _RUNNERS.items() if isinstance(gate, kind)), None)
        if runner is not None:  # approvals are looked up in the store's transaction below
            results[gate.label] = clean_result(runner(gate, ctx))
    created_at = utcnow()
    report_id = new_report_id()

    def store(session: Session) -> GateReport:
        row, _ = version_record(session, candidate.ref)
        ordered = [
            clean_result(_approval_result(g, session, row.id, chosen.name, candidate.ref))
            if isinstance(g, Approval)
            else results[g.label]
            for g in chosen.gates
        ]
        report = GateReport(
            report_id, candidate.ref, chosen.name, ordered, created_at, project.user
        )
        add_report(session, row.id, report, chosen.name)
        return report

    return project.metadata.write_with_retry(store)
