"""Feature flags in the metadata store: set, kill, revive, delete, list, with their history.

Every change bumps the release revision in the same commit, so each serving worker picks it
up on its next poll (0.25 s by default): a flag change reaches every worker within a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput, NotFound
from shipyard.project import Project, current
from shipyard.registry.versions import _model, check_model_name
from shipyard.release.flags import Flag, FlagSet
from shipyard.release.rollouts import bump_revision
from shipyard.store.models import FlagEventRecord, FlagRecord


@dataclass(frozen=True)
class StoredFlag:
    model: str
    flag: Flag
    updated_at: datetime
    updated_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            **self.flag.to_dict(),
            "updated_at": self.updated_at.isoformat(),
            "updated_by": self.updated_by,
        }


def _event(session: Session, name: str, action: str, flag: Flag | None, user: str) -> None:
    session.add(
        FlagEventRecord(
            name=name,
            action=action,
            user=user,
            at=datetime.now(UTC),
            definition=flag.to_dict() if flag else None,
        )
    )


def set_flag(
    model: str, definition: Mapping[str, Any] | Flag, *, project: Project | None = None
) -> StoredFlag:
    """Create or replace the flag (its name is in the definition) on `model`'s requests."""
    project = project or current()
    check_model_name(model)
    flag = definition if isinstance(definition, Flag) else Flag.from_dict(definition)

    def write(session: Session) -> StoredFlag:
        _model(session, model)  # the model must exist
        row = session.get(FlagRecord, flag.name)
        if row is not None and row.model != model:
            raise InvalidInput(
                f"flag {flag.name!r} belongs to model {row.model}; flag names are unique"
            )
        now = datetime.now(UTC)
        if row is None:
            row = FlagRecord(
                name=flag.name,
                model=model,
                definition=flag.to_dict(),
                enabled=flag.enabled,
                updated_at=now,
                updated_by=project.user,
            )
            session.add(row)
        else:
            row.definition, row.enabled = flag.to_dict(), flag.enabled
            row.updated_at, row.updated_by = now, project.user
        _event(session, flag.name, "set", flag, project.user)
        bump_revision(session)
        return StoredFlag(model, flag, now, project.user)

    return project.metadata.write_with_retry(write)


def _toggle(name: str, enabled: bool, project: Project | None) -> StoredFlag:
    project = project or current()

    def write(session: Session) -> StoredFlag:
        row = session.get(FlagRecord, name)
        if row is None:
            raise NotFound(f"no flag named {name!r}; `shipyard flags list` shows them")
        flag = Flag.from_dict({**row.definition, "enabled": enabled})
        row.definition, row.enabled = flag.to_dict(), enabled
        row.updated_at, row.updated_by = datetime.now(UTC), project.user
        _event(session, name, "revive" if enabled else "kill", flag, project.user)
        bump_revision(session)
        return StoredFlag(row.model, flag, row.updated_at, row.updated_by)

    return project.metadata.write_with_retry(write)


def kill(name: str, *, project: Project | None = None) -> StoredFlag:
    """The kill switch: the flag gives its default outcome to everyone, at once."""
    return _toggle(name, False, project)


def revive(name: str, *, project: Project | None = None) -> StoredFlag:
    return _toggle(name, True, project)


def delete(name: str, *, project: Project | None = None) -> None:
    project = project or current()

    def write(session: Session) -> None:
        row = session.get(FlagRecord, name)
        if row is None:
            raise NotFound(f"no flag named {name!r}; `shipyard flags list` shows them")
        session.delete(row)
        _event(session, name, "delete", None, project.user)
        bump_revision(session)

    project.metadata.write_with_retry(write)


def list_flags(model: str | None = None, *, project: Project | None = None) -> list[StoredFlag]:
    project = project or current()
    with project.metadata.read() as session:
        query = select(FlagRecord).order_by(FlagRecord.model, FlagRecord.name)
        if model is not None:
            query = query.where(FlagRecord.model == model)
        return [
            StoredFlag(row.model, Flag.from_dict(row.definition), row.updated_at, row.updated_by)
            for row in session.scalars(query)
        ]


def flag_sets(models: list[str], *, project: Project) -> dict[str, FlagSet]:
    """The flags of each model that has any, as the router evaluates them."""
    by_model: dict[str, list[Flag]] = {}
    with project.metadata.read() as session:
        rows = session.scalars(select(FlagRecord).where(FlagRecord.model.in_(models))).all()
        for row in rows:
            by_model.setdefault(row.model, []).append(Flag.from_dict(row.definition))
    return {model: FlagSet(flags) for model, flags in by_model.items()}
