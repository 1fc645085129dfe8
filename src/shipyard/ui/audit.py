"""The audit trail: every state change tried through the control API or the dashboard, who tried
it (the token's owner), and how it ended (done, refused, failed).

Each event is written in its own transaction, after the action: a failed action still leaves
its trace, and a refused one records that nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from shipyard.errors import InvalidInput
from shipyard.project import Project, current
from shipyard.store.models import AuditEventRecord
from shipyard.ui.tokens import Token

OUTCOMES = ("done", "refused", "failed")
VIAS = ("api", "dashboard", "cli")
# Keys whose values are never kept, whatever an action passes along.
_SECRET_WORDS = ("secret", "password", "authorization", "cookie", "csrf")
_SECRET_KEYS = ("token", "bearer")


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: datetime
    actor: str
    token_id: str | None
    role: str
    via: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["at"] = self.at.isoformat()
        return data


def _scrub(detail: dict[str, Any]) -> dict[str, Any]:
    """The detail without anything that looks like a credential, JSON-safe."""
    clean: dict[str, Any] = {}
    for key, value in detail.items():
        lowered = key.lower()
        if lowered in _SECRET_KEYS or any(word in lowered for word in _SECRET_WORDS):
            continue
        if isinstance(value, dict):
            clean[key] = _scrub(value)
        elif value is None or isinstance(value, (str, int, float, bool, list)):
            clean[key] = value
        else:
            clean[key] = str(value)
    return clean


def record(
    project: Project,
    *,
    token: Token | None,
    via: str,
    action: str,
    target: str,
    outcome: str,
    detail: dict[str, Any] | None = None,
    actor: str | None = None,
) -> None:
    """Append one event; `detail` is scrubbed of anything named like a secret.

    Without a token (a refused anonymous request, or the local CLI) the actor is `actor`, or
    "anonymous"."""
    if outcome not in OUTCOMES:
        raise InvalidInput(f"audit outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    if via not in VIAS:
        raise InvalidInput(f"audit via {via!r} is not one of {', '.join(VIAS)}")
    row = AuditEventRecord(
        at=datetime.now(UTC),
        actor=token.owner if token is not None else (actor or "anonymous"),
        token_id=token.public_id if token is not None else None,
        role=token.role if token is not None else ("local" if via == "cli" else ""),
        via=via,
        action=action[:64],
        target=target[:300],
        outcome=outcome,
        detail=_scrub(detail or {}),
    )
    with project.metadata.write() as session:
        session.add(row)


def _to_event(row: AuditEventRecord) -> AuditEvent:
    return AuditEvent(
        id=row.id,
        at=row.at,
        actor=row.actor,
        token_id=row.token_id,
        role=row.role,
        via=row.via,
        action=row.action,
        target=row.target,
        outcome=row.outcome,
        detail=dict(row.detail or {}),
    )


def events(
    *,
    project: Project | None = None,
    limit: int = 100,
    before_id: int | None = None,
    actor: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
) -> list[AuditEvent]:
    """Events newest first, `limit` at a time; pass the last id seen as `before_id` for more."""
    project = project or current()
    if not 1 <= limit <= 1000:
        raise InvalidInput(f"limit must be between 1 and 1000, got {limit}")
    query = select(AuditEventRecord).order_by(AuditEventRecord.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEventRecord.id < before_id)
    if actor is not None:
        query = query.where(AuditEventRecord.actor == actor)
    if action is not None:
        query = query.where(AuditEventRecord.action == action)
    if outcome is not None:
        query = query.where(AuditEventRecord.outcome == outcome)
    with project.metadata.read() as session:
        return [_to_event(row) for row in session.scalars(query)]
