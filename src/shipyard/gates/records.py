"""Gate reports in the metadata store: one `gate_results` row per gate, sharing a report id.

`registry.aliases.gate_refusal` reads these rows: the latest report of a version for a policy
decides whether the version may take that alias. Approvals are stored as reports of their own
under the policy key `approval:POLICY` (no alias can contain ':'), so recording one never
stands in for a full run of the gates; `run_gates` copies the approval into each new report.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.errors import NotFound
from shipyard.gates.report import GateReport, GateResult
from shipyard.project import Project, current
from shipyard.registry.versions import version_record
from shipyard.store.models import GateResultRecord, utcnow

APPROVAL_PREFIX = "approval:"


def new_report_id() -> str:
    return uuid.uuid4().hex


def clean(value: Any) -> Any:
    """`value` as JSON holds it on every backend: numpy unwrapped, NaN and infinities as None
    (PostgreSQL's JSONB refuses NaN)."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [clean(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def clean_result(result: GateResult) -> GateResult:
    return GateResult(
        result.name,
        result.kind,
        result.required,
        bool(result.passed),
        clean(result.details),
        [str(r) for r in result.reasons],
    )


def add_report(session: Session, version_id: int, report: GateReport, policy_key: str) -> None:
    """Stage every result of `report` in `session` (the caller's transaction)."""
    for result in report.results:
        session.add(
            GateResultRecord(
                version_id=version_id,
                report_id=report.report_id,
                policy=policy_key,
                gate=result.name,
                kind=result.kind,
                required=result.required,
                passed=result.passed,
                details={**result.details, "reasons": result.reasons},
                created_at=report.created_at,
                created_by=report.created_by,
            )
        )


def _to_report(rows: list[GateResultRecord], ref: str, policy: str) -> GateReport:
    results = []
    for row in rows:
        details = dict(row.details)
        reasons = [str(r) for r in details.pop("reasons", [])]
        results.append(GateResult(row.gate, row.kind, row.required, row.passed, details, reasons))
    return GateReport(
        rows[0].report_id, ref, policy, results, rows[0].created_at, rows[0].created_by
    )


def _latest_rows(session: Session, version_id: int, policy_key: str) -> list[GateResultRecord]:
    latest = session.scalar(
        select(GateResultRecord.report_id)
        .where(GateResultRecord.version_id == version_id, GateResultRecord.policy == policy_key)
        .order_by(GateResultRecord.created_at.desc(), GateResultRecord.id.desc())
        .limit(1)
    )
    if latest is None:
        return []
    return list(
        session.scalars(
            select(GateResultRecord)
            .where(GateResultRecord.report_id == latest)
            .order_by(GateResultRecord.id)
        )
    )


def latest_report(
    ref: str, policy: str = "champion", *, project: Project | None = None
) -> GateReport:
    """The latest stored gate report of version `ref` for `policy`."""
    project = project or current()
    with project.metadata.read() as session:
        record, name = version_record(session, ref)
        rows = _latest_rows(session, record.id, policy)
        resolved = f"{name}@{record.version}"
        if not rows:
            raise NotFound(
                f"{resolved} has no gate report for policy {policy!r}; run "
                f"`shipyard gate {resolved} --policy {policy}`"
            )
        return _to_report(rows, resolved, policy)


def latest_approval(session: Session, version_id: int, policy: str) -> GateResult | None:
    """The latest approval of this version for `policy`, if anyone gave one."""
    rows = _latest_rows(session, version_id, APPROVAL_PREFIX + policy)
    if not rows:
        return None
    return _to_report(rows, "", policy).results[0]


def approve(
    ref: str, policy: str = "champion", *, note: str = "", project: Project | None = None
) -> GateReport:
    """Record that the current user approves version `ref` for `policy` (who, when, note).

    The approval counts from the next `run_gates` of this version and policy on.
    """
    from shipyard.registry.versions import check_alias

    project = project or current()
    check_alias(policy)
    at = utcnow()

    def record(session: Session) -> GateReport:
        row, name = version_record(session, ref)
        details = {"user": project.user, "note": note, "at": at.isoformat()}
        reason = f"approved by {project.user} at {at.isoformat(timespec='seconds')}" + (
            f": {note}" if note else ""
        )
        result = GateResult("approval", "approval", True, True, details, [reason])
        report = GateReport(
            new_report_id(), f"{name}@{row.version}", policy, [result], at, project.user
        )
        add_report(session, row.id, report, APPROVAL_PREFIX + policy)
        return report

    return project.metadata.write_with_retry(record)
