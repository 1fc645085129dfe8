"""Aliases (`champion`, `challenger`, any name) and the recorded history of every move.

An alias guarded by a promotion policy (one configured under `[policies.ALIAS]` in
`shipyard.toml`, or any policy of that name that has judged a version of the model) only moves to
a version whose latest gate report for that policy passed every required gate. `force=True`
moves it anyway, and the move is recorded as forced, with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput, NotFound, ShipyardError
from shipyard.project import Project, current
from shipyard.registry.versions import (
    ModelVersion,
    _model,
    check_alias,
    check_model_name,
    get,
)
from shipyard.store.models import (
    AliasEventRecord,
    GateResultRecord,
    ModelAliasRecord,
    ModelVersionRecord,
    utcnow,
)


class GatesNotPassed(ShipyardError):
    """The version has not passed the gates the alias's policy requires."""

    exit_code = 1


@dataclass(frozen=True)
class AliasEvent:
    """One move of an alias: to `version` (None when unset) from `previous`."""

    alias: str
    version: int | None
    previous: int | None
    user: str
    at: datetime
    reason: str
    forced: bool


def _version_row(session: Session, model_id: int, number: int) -> ModelVersionRecord:
    row = session.scalar(
        select(ModelVersionRecord).where(
            ModelVersionRecord.model_id == model_id, ModelVersionRecord.version == number
        )
    )
    if row is None:
        raise NotFound(f"no version {number} of this model")
    return row


def guarded(session: Session, project: Project, model_id: int, alias: str) -> bool:
    """Whether a promotion policy guards `alias` for this model."""
    if alias in project.settings.policies:
        return True
    judged = session.scalar(
        select(GateResultRecord.id)
        .join(ModelVersionRecord, ModelVersionRecord.id == GateResultRecord.version_id)
        .where(ModelVersionRecord.model_id == model_id, GateResultRecord.policy == alias)
        .limit(1)
    )
    return judged is not None


def gate_refusal(session: Session, version_id: int, policy: str) -> str | None:
    """Why the version may not take the alias, or None when its latest report passed."""
    latest = session.scalar(
        select(GateResultRecord.report_id)
        .where(GateResultRecord.version_id == version_id, GateResultRecord.policy == policy)
        .order_by(GateResultRecord.created_at.desc(), GateResultRecord.id.desc())
        .limit(1)
    )
    if latest is None:
        return f"it has not been through the gates of policy {policy!r}"
    failed = session.scalars(
        select(GateResultRecord.gate).where(
            GateResultRecord.report_id == latest,
            GateResultRecord.required.is_(True),
            GateResultRecord.passed.is_(False),
        )
    ).all()
    if failed:
        return f"it failed the required gates {', '.join(sorted(failed))} of policy {policy!r}"
    return None


def set_alias(
    name: str,
    alias: str,
    version: int,
    *,
    reason: str = "",
    force: bool = False,
    project: Project | None = None,
) -> ModelVersion:
    """Point `alias` at `version` of model `name`, recording who, when and why."""
    project = project or current()
    check_model_name(name)
    check_alias(alias)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidInput(f"a model version is a positive integer; got {version!r}")
    if force and not reason.strip():
        raise InvalidInput("a forced alias move needs a reason (--reason '...'): it is recorded")

    def move(session: Session) -> None:
        move_alias(session, project, name, alias, version, reason=reason, force=force)

    project.metadata.write_with_retry(move)
    return get(f"{name}@{version}", project=project)


def move_alias(
    session: Session,
    project: Project,
    name: str,
    alias: str,
    version: int,
    *,
    reason: str,
    force: bool = False,
) -> None:
    """Move `alias` within the caller's transaction (a rollout's promotion moves the alias
    and ends the rollout in one commit), recording the move."""
    model = _model(session, name)
    row = _version_row(session, model.id, version)
    if not force and guarded(session, project, model.id, alias):
        refusal = gate_refusal(session, row.id, alias)
        if refusal is not None:
            raise GatesNotPassed(
                f"{name}@{version} may not become {alias!r}: {refusal}; run "
                f"`shipyard gate {name}@{version} --policy {alias}`, or move it anyway with "
                "--force --reason '...' (recorded)"
            )
    current_row = session.get(ModelAliasRecord, (model.id, alias))
    previous = None
    if current_row is not None:
        previous_row = session.get(ModelVersionRecord, current_row.version_id)
        previous = previous_row.version if previous_row is not None else None
        current_row.version_id = row.id
        current_row.set_at = utcnow()
        current_row.set_by = project.user
    else:
        session.add(
            ModelAliasRecord(model_id=model.id, alias=alias, version_id=row.id, set_by=project.user)
        )
    session.add(
        AliasEventRecord(
            model_id=model.id,
            alias=alias,
            version=version,
            previous=previous,
            user=project.user,
            reason=reason,
            forced=force,
        )
    )


def unset_alias(name: str, alias: str, *, reason: str = "", project: Project | None = None) -> None:
    """Remove `alias` from model `name`, recording it."""
    project = project or current()
    check_model_name(name)
    check_alias(alias)

    def remove(session: Session) -> None:
        model = _model(session, name)
        row = session.get(ModelAliasRecord, (model.id, alias))
        if row is None:
            raise NotFound(f"model {name} has no alias {alias!r}")
        previous = session.get(ModelVersionRecord, row.version_id)
        session.delete(row)
        session.add(
            AliasEventRecord(
                model_id=model.id,
                alias=alias,
                version=None,
                previous=previous.version if previous is not None else None,
                user=project.user,
                reason=reason,
                forced=False,
            )
        )

    project.metadata.write_with_retry(remove)


def history(name: str, *, project: Project | None = None) -> list[AliasEvent]:
    """Every alias move of model `name`, oldest first."""
    project = project or current()
    with project.metadata.read() as session:
        model = _model(session, check_model_name(name))
        rows = session.scalars(
            select(AliasEventRecord)
            .where(AliasEventRecord.model_id == model.id)
            .order_by(AliasEventRecord.at, AliasEventRecord.id)
        ).all()
        return [
            AliasEvent(r.alias, r.version, r.previous, r.user, r.at, r.reason, r.forced)
            for r in rows
        ]
