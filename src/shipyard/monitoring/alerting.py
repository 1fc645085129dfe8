"""Incidents: an alert opens once when its condition first holds and resolves when it clears.

    raise_alert("slo:churn:availability:page", kind="slo", model="churn", severity="page",
                summary="availability burns its budget 20x", evidence={...})
    clear_alert("slo:churn:availability:page")

A condition is named by a key. While it holds, its incident row carries the key in `open_key`,
a unique column, so there is never more than one open incident per key on SQLite or
PostgreSQL, even when two evaluators (two `shipyard slo check` crons, two replicas) race: the
loser's insert fails on the unique index and it sends nothing. Only the process that opened an
incident notifies that it fires, and only the one whose update closed it notifies that it
resolved, so a receiver hears of each incident exactly twice: once firing, once resolved.

Notifications go to the log always and to `alert_webhook_url` when set, as JSON shaped like
an Alertmanager webhook alert (see docs/slos.md). Whether each was delivered is recorded in
the incident's `notified`. Sending happens after the incident is committed and never undoes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from shipyard.errors import InvalidInput
from shipyard.release import alerts as delivery
from shipyard.store.models import AlertRecord

if TYPE_CHECKING:
    from shipyard.project import Project

# The widths of the alerts table's columns.
MAX_KEY = 300
MAX_KIND = 32
MAX_MODEL = 128
MAX_SEVERITY = 16


@dataclass(frozen=True)
class Incident:
    """One alert incident: open while `resolved_at` is None."""

    id: int
    key: str
    kind: str
    model: str
    severity: str
    summary: str
    evidence: dict[str, Any]
    opened_at: datetime
    resolved_at: datetime | None
    notified: dict[str, Any]

    @property
    def open(self) -> bool:
        return self.resolved_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "kind": self.kind,
            "model": self.model,
            "severity": self.severity,
            "summary": self.summary,
            "evidence": self.evidence,
            "opened_at": self.opened_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "open": self.open,
            "notified": self.notified,
        }


def raise_alert(
    key: str,
    *,
    kind: str,
    model: str,
    severity: str,
    summary: str,
    evidence: Mapping[str, Any],
    project: Project | None = None,
    now: datetime | None = None,
) -> Incident | None:
    """Open an incident for `key` and notify that it fires; None when one is already open
    (nothing is sent again)."""
    _check_text("key", key, MAX_KEY)
    _check_text("kind", kind, MAX_KIND)
    _check_text("model", model, MAX_MODEL)
    _check_text("severity", severity, MAX_SEVERITY)
    if not isinstance(summary, str):
        raise InvalidInput(f"an alert's summary is text; got {summary!r}")
    if not isinstance(evidence, Mapping):
        raise InvalidInput(f"an alert's evidence is a mapping; got {type(evidence).__name__}")
    project = _project(project)
    at = _aware(now)
    row = AlertRecord(
        key=key,
        open_key=key,
        kind=kind,
        model=model,
        severity=severity,
        summary=summary,
        evidence=_json_safe(dict(evidence)),
        opened_at=at,
        resolved_at=None,
        notified={},
    )
    try:
        with project.metadata.write() as session:
            already = session.scalar(select(AlertRecord.id).where(AlertRecord.open_key == key))
            if already is not None:
                return None
            session.add(row)
            session.flush()
            incident = _incident(row)
    except IntegrityError:  # another evaluator opened it between our check and our insert
        return None
    delivered = _notify(project, incident, "firing", at)
    return _record_delivery(project, incident, "firing", delivered, at)


def clear_alert(
    key: str,
    *,
    project: Project | None = None,
    now: datetime | None = None,
    summary: str | None = None,
) -> Incident | None:
    """Resolve the open incident for `key` and notify that it resolved; None when none is open.

    `summary` (why it cleared) goes into the resolved notification and the incident's
    evidence as `resolution`; the firing summary is kept."""
    _check_text("key", key, MAX_KEY)
    project = _project(project)
    at = _aware(now)
    with project.metadata.write() as session:
        row = session.scalar(select(AlertRecord).where(AlertRecord.open_key == key))
        if row is None:
            return None
        evidence = dict(row.evidence or {})
        if summary:
            evidence["resolution"] = summary
        # Conditional on still being open: of two clearers racing, one updates one row.
        result = session.execute(
            update(AlertRecord)
            .where(AlertRecord.id == row.id, AlertRecord.open_key == key)
            .values(open_key=None, resolved_at=at, evidence=evidence)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 1) != 1:
            return None
        session.refresh(row)
        incident = _incident(row)
    delivered = _notify(project, incident, "resolved", at, summary)
    return _record_delivery(project, incident, "resolved", delivered, at)


def open_alerts(
    model: str | None = None, *, kind: str | None = None, project: Project | None = None
) -> list[Incident]:
    """The incidents firing now (of one model, of one kind), oldest first."""
    project = _project(project)
    statement = select(AlertRecord).where(AlertRecord.open_key.is_not(None))
    if model is not None:
        statement = statement.where(AlertRecord.model == model)
    if kind is not None:
        statement = statement.where(AlertRecord.kind == kind)
    with project.metadata.read() as session:
        rows = session.scalars(statement.order_by(AlertRecord.opened_at, AlertRecord.id)).all()
        return [_incident(row) for row in rows]


def alerts(
    model: str | None = None, *, limit: int = 50, project: Project | None = None
) -> list[Incident]:
    """Every incident, open or resolved, newest first (at most `limit`)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput(f"limit must be an integer >= 1; got {limit!r}")
    project = _project(project)
    statement = select(AlertRecord)
    if model is not None:
        statement = statement.where(AlertRecord.model == model)
    statement = statement.order_by(AlertRecord.opened_at.desc(), AlertRecord.id.desc())
    with project.metadata.read() as session:
        return [_incident(row) for row in session.scalars(statement.limit(limit)).all()]


# -- notifications ----------------------------------------------------------------------------


def payload(incident: Incident, status: str, summary: str | None = None) -> dict[str, Any]:
    """The webhook body for one incident: shipyard's fields plus Alertmanager's shape
    (status, labels, annotations, startsAt, endsAt)."""
    annotations = {"summary": incident.summary}
    if summary:
        annotations["resolution"] = summary
    return {
        "alert": f"{incident.kind}_alert",
        "status": status,
        "key": incident.key,
        "incident": incident.id,
        "kind": incident.kind,
        "model": incident.model,
        "severity": incident.severity,
        "summary": summary if status == "resolved" and summary else incident.summary,
        "labels": {
            "alertname": incident.key,
            "kind": incident.kind,
            "model": incident.model,
            "severity": incident.severity,
        },
        "annotations": annotations,
        "startsAt": incident.opened_at.isoformat(),
        "endsAt": incident.resolved_at.isoformat() if incident.resolved_at else None,
        "evidence": incident.evidence,
    }


def _notify(
    project: Project, incident: Incident, status: str, at: datetime, summary: str | None = None
) -> bool:
    body = payload(incident, status, summary)
    return delivery.send(project.settings.alert_webhook_url, body)


def _record_delivery(
    project: Project, incident: Incident, status: str, delivered: bool, at: datetime
) -> Incident:
    """Note in the incident whether its `status` notification reached the webhook."""
    entry = {
        "delivered": delivered,
        "webhook": bool(project.settings.alert_webhook_url),
        "at": at.isoformat(),
    }
    with project.metadata.write() as session:
        row = session.get(AlertRecord, incident.id)
        if row is None:  # pragma: no cover - incidents are never deleted
            return incident
        row.notified = {**(row.notified or {}), status: entry}
        session.flush()
        return _incident(row)


# -- helpers ----------------------------------------------------------------------------------


def _incident(row: AlertRecord) -> Incident:
    return Incident(
        id=row.id,
        key=row.key,
        kind=row.kind,
        model=row.model,
        severity=row.severity,
        summary=row.summary,
        evidence=dict(row.evidence or {}),
        opened_at=row.opened_at,
        resolved_at=row.resolved_at,
        notified=dict(row.notified or {}),
    )


def _check_text(name: str, value: Any, width: int) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"an alert's {name} is a non-empty string; got {value!r}")
    if len(value) > width:
        raise InvalidInput(
            f"an alert's {name} is at most {width} characters; got {len(value)}: {value[:40]!r}..."
        )


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise InvalidInput(f"now must be an aware UTC datetime; got the naive {now}")
    return now.astimezone(UTC)


def _json_safe(value: Any) -> Any:
    """Evidence as JSON the metadata store keeps as it is (datetimes as ISO text, NaN as None)."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):  # JSON has no NaN nor infinity
        return None
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    return str(value)


def _project(project: Project | None) -> Project:
    if project is not None:
        return project
    from shipyard.project import current

    return current()
