"""Rollouts: their state in the metadata store, and every transition with its decision record.

The state (which versions, which split, which step) lives in the `rollouts` table so every
serving worker and replica agrees on it, and a controller killed mid-rollout resumes where it
was. Each transition (start, advance, hold, promote, rollback, abort, pause, resume, approve,
switch) changes the row, appends a `rollout_decisions` record and bumps the release revision in
ONE transaction: a decision is never recorded without its effect, nor the reverse.

Statuses: running, paused, awaiting_approval (every step passed; `approval = true`), and the
ends promoted, rolled_back (the analysis failed), aborted (by a person, or by the deadline).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput, NotFound, ShipyardError
from shipyard.project import Project, current
from shipyard.registry.aliases import GatesNotPassed, gate_refusal, guarded, move_alias
from shipyard.registry.signature import Signature
from shipyard.registry.versions import _model, version_record
from shipyard.release import spec as specs
from shipyard.release.assignment import CURRENT_HASH
from shipyard.release.spec import RolloutSpec
from shipyard.store.models import (
    ModelAliasRecord,
    ModelVersionRecord,
    ReleaseRevisionRecord,
    RolloutDecisionRecord,
    RolloutRecord,
)

log = logging.getLogger("shipyard.release")

ACTIVE = ("running", "paused", "awaiting_approval")
CHAMPION = "champion"


class RolloutConflict(ShipyardError):
    """The transition does not fit the rollout's state (ended, already paused, ...)."""

    exit_code = 1


@dataclass(frozen=True)
class Rollout:
    id: str
    name: str
    model: str
    strategy: str
    champion: int
    candidates: list[int]
    spec: RolloutSpec
    spec_hash: str
    hash_version: str
    status: str
    step: int
    step_started_at: datetime
    weights: dict[str, float]  # "v3" -> percent
    switched: bool
    failures: int
    approved_by: str | None
    created_at: datetime
    created_by: str
    updated_at: datetime
    finished_at: datetime | None
    outcome: str

    @property
    def candidate(self) -> int:
        return self.candidates[0]

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def current_step(self) -> specs.Step:
        return self.spec.steps[min(self.step, len(self.spec.steps) - 1)]

    def arm_of(self, version: int) -> str:
        """The arm a version's answers are logged under."""
        if version == self.champion:
            return "champion"
        if self.strategy == "ab":
            return f"v{version}"
        return "candidate"

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["spec"] = self.spec.to_dict()
        for key in ("step_started_at", "created_at", "updated_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] is not None else None
        return data


@dataclass(frozen=True)
class Decision:
    rollout: str
    at: datetime
    actor: str
    action: str
    verdict: str | None
    step_before: int
    step_after: int
    window_start: datetime | None
    window_end: datetime | None
    before: dict[str, Any]
    after: dict[str, Any]
    evidence: dict[str, Any]
    spec_hash: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for key in ("at", "window_start", "window_end"):
            data[key] = data[key].isoformat() if data[key] is not None else None
        return data


def _now() -> datetime:
    return datetime.now(UTC)


def _to_rollout(row: RolloutRecord, model: str) -> Rollout:
    return Rollout(
        id=row.id,
        name=row.name,
        model=model,
        strategy=row.strategy,
        champion=row.champion,
        candidates=list(row.candidates),
        spec=RolloutSpec.from_dict(row.spec),
        spec_hash=row.spec_hash,
        hash_version=row.hash_version,
        status=row.status,
        step=row.step,
        step_started_at=row.step_started_at,
        weights={str(k): float(v) for k, v in row.weights.items()},
        switched=row.switched,
        failures=row.failures,
        approved_by=row.approved_by,
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        outcome=row.outcome,
    )


def bump_revision(session: Session) -> None:
    """Tell every serving worker that the release state moved (they poll this one row)."""
    row = session.get(ReleaseRevisionRecord, 1)
    if row is None:
        session.add(ReleaseRevisionRecord(id=1, revision=1, changed_at=_now()))
    else:
        row.revision += 1
        row.changed_at = _now()


def revision(project: Project) -> int:
    with project.metadata.read() as session:
        row = session.get(ReleaseRevisionRecord, 1)
        return row.revision if row is not None else 0


# -- the split of each stage ------------------------------------------------------------------


def initial_weights(spec: RolloutSpec, champion: int, candidates: list[int]) -> dict[str, float]:
    if spec.strategy == "canary":
        return canary_weights(champion, candidates[0], spec.steps[0].weight)
    if spec.strategy == "ab":
        return {
            f"v{champion if label == 'champion' else int(label)}": weight
            for label, weight in spec.arms.items()
        }
    return {f"v{champion}": 100.0}  # blue/green before the switch, shadow: champion answers


def canary_weights(champion: int, candidate: int, weight: float) -> dict[str, float]:
    return {f"v{champion}": 100.0 - weight, f"v{candidate}": weight}


# -- start ------------------------------------------------------------------------------------


def start(
    declared: RolloutSpec | str | Path,
    *,
    project: Project | None = None,
    actor: str | None = None,
    now: datetime | None = None,
) -> Rollout:
    """Start a rollout: checks the candidate's gates and compatibility, then sets the first
    split. Refused (nothing written) when the model already has a live rollout."""
    project = project or current()
    file_hash = None
    if isinstance(declared, RolloutSpec):
        spec = declared
    else:
        spec, file_hash = specs.load(declared)
    actor = actor or project.user
    at = now or _now()

    def create(session: Session) -> Rollout:
        model = _model(session, spec.model)
        champion = _alias_version(session, model.id, spec.model, CHAMPION)
        candidates = _candidates(session, spec, champion)
        warnings: list[str] = []
        for number in candidates:
            _check_gates(session, project, model.id, spec.model, number)
            warnings += _check_compatible(session, spec.model, champion, number)
        live = session.scalar(select(RolloutRecord).where(RolloutRecord.active_model == spec.model))
        if live is not None:
            raise RolloutConflict(
                f"model {spec.model} already has a live rollout, {live.name!r} ({live.status}); "
                f"finish it first (`shipyard rollout promote|abort {live.name}`)"
            )
        weights = initial_weights(spec, champion, candidates)
        row = RolloutRecord(
            id=uuid.uuid4().hex,
            name=spec.name,
            model_id=model.id,
            active_model=spec.model,
            strategy=spec.strategy,
            champion=champion,
            candidates=candidates,
            spec=spec.to_dict(),
            spec_hash=spec.hash,
            hash_version=CURRENT_HASH,
            status="running",
            step=0,
            step_started_at=at,
            weights=weights,
            switched=False,
            failures=0,
            created_at=at,
            created_by=actor,
            updated_at=at,
            outcome="",
        )
        session.add(row)
        session.flush()
        _decide(
            session,
            row,
            actor,
            "start",
            at,
            before={f"v{champion}": 100.0},
            evidence={"compatibility_warnings": warnings, "file_sha256": file_hash},
            reason=f"{spec.strategy} of {spec.model}@{candidates} against champion v{champion}",
        )
        for warning in warnings:
            log.warning("rollout %s: %s", spec.name, warning)
        bump_revision(session)
        return _to_rollout(row, spec.model)

    try:
        return project.metadata.write_with_retry(create)
    except IntegrityError:  # another process started one on this model at the same moment
        raise RolloutConflict(
            f"model {spec.model} already has a live rollout; finish it first"
        ) from None


def _alias_version(session: Session, model_id: int, name: str, alias: str) -> int:
    row = session.get(ModelAliasRecord, (model_id, alias))
    if row is None:
        raise NotFound(
            f"model {name} has no {alias!r} version to release against; set one first "
            f"(`shipyard models alias set {name} {alias} VERSION`)"
        )
    version = session.get(ModelVersionRecord, row.version_id)
    assert version is not None
    return version.version


def _candidates(session: Session, spec: RolloutSpec, champion: int) -> list[int]:
    ref = f"{spec.model}@{spec.candidate}"
    record, _ = version_record(session, ref)
    numbers = [record.version]
    for label in spec.arms:
        if label not in ("champion", str(champion)) and int(label) not in numbers:
            other, _ = version_record(session, f"{spec.model}@{int(label)}")
            numbers.append(other.version)
    if record.version == champion:
        raise InvalidInput(
            f"{ref} is the champion already (v{champion}); release a different version"
        )
    if spec.strategy == "ab":
        declared = {champion if k == "champion" else int(k) for k in spec.arms}
        if spec.arms and record.version not in declared:
            raise InvalidInput(
                f"the A/B arms {sorted(spec.arms)} do not include the candidate v{record.version}"
            )
        if not spec.arms:
            raise InvalidInput("an A/B test needs `arms`, e.g. {champion = 50, 2 = 50}")
    return numbers


def _check_gates(session: Session, project: Project, model_id: int, name: str, number: int) -> None:
    record, _ = version_record(session, f"{name}@{number}")
    if guarded(session, project, model_id, CHAMPION):
        refusal = gate_refusal(session, record.id, CHAMPION)
        if refusal is not None:
            raise GatesNotPassed(
                f"{name}@{number} may not be rolled out: {refusal}; run "
                f"`shipyard gate {name}@{number}` first"
            )


def _check_compatible(session: Session, name: str, champion: int, candidate: int) -> list[str]:
    """The candidate must take the champion's inputs and give the same kind of outputs;
    otherwise a request the champion answers would fail on the candidate mid-rollout. Training
    ranges that do not cover the champion's are returned as warnings (recorded with the start):
    traffic the champion knows may be out of range for the candidate."""
    old, _ = version_record(session, f"{name}@{champion}")
    new, _ = version_record(session, f"{name}@{candidate}")
    problems: list[str] = []
    warnings: list[str] = []
    if old.signature is not None and new.signature is not None:
        before, after = Signature.from_json(old.signature), Signature.from_json(new.signature)
        old_inputs = {spec.name: spec for spec in before.inputs}
        for spec in after.inputs:
            previous = old_inputs.get(spec.name)
            if previous is None:
                problems.append(f"it needs the input {spec.name!r}, which the champion does not")
            elif previous.type is not spec.type:
                problems.append(
                    f"input {spec.name!r} is {spec.type.value} where the champion's is "
                    f"{previous.type.value}"
                )
            elif _narrower(previous, spec):
                warnings.append(
                    f"v{candidate} was trained on {spec.name} in [{spec.minimum:g}, "
                    f"{spec.maximum:g}], the champion on [{previous.minimum:g}, "
                    f"{previous.maximum:g}]"
                )
            if (
                previous is not None
                and previous.levels
                and spec.levels
                and set(previous.levels) - set(spec.levels)
            ):
                unknown = sorted(set(previous.levels) - set(spec.levels))
                problems.append(
                    f"input {spec.name!r} does not know the level(s) {unknown} that the "
                    "champion accepts"
                )
    old_classes = (old.flavor_meta or {}).get("classes")
    new_classes = (new.flavor_meta or {}).get("classes")
    if old_classes is not None and new_classes is not None and old_classes != new_classes:
        problems.append(
            f"its output classes {new_classes} differ from the champion's {old_classes}"
        )
    if problems:
        raise InvalidInput(
            f"{name}@{candidate} is not compatible with the champion {name}@{champion}: "
            + "; ".join(problems)
        )
    return warnings


def _narrower(champion: Any, candidate: Any) -> bool:
    ranges = (champion.minimum, champion.maximum, candidate.minimum, candidate.maximum)
    if any(value is None for value in ranges):
        return False
    return bool(candidate.minimum > champion.minimum or candidate.maximum < champion.maximum)


# -- reading ----------------------------------------------------------------------------------


def _row(session: Session, name: str) -> tuple[RolloutRecord, str]:
    """A rollout by id, by name (the newest of that name), or the live one of a model."""
    from shipyard.store.models import RegisteredModelRecord

    row = session.get(RolloutRecord, name)
    if row is None:
        row = session.scalar(
            select(RolloutRecord)
            .where(RolloutRecord.name == name)
            .order_by(RolloutRecord.created_at.desc())
            .limit(1)
        )
    if row is None:
        row = session.scalar(select(RolloutRecord).where(RolloutRecord.active_model == name))
    if row is None:
        raise NotFound(f"no rollout named {name!r} (nor a live rollout of a model {name!r})")
    model = session.get(RegisteredModelRecord, row.model_id)
    assert model is not None
    return row, model.name


def get(name: str, *, project: Project | None = None) -> Rollout:
    project = project or current()
    with project.metadata.read() as session:
        row, model = _row(session, name)
        return _to_rollout(row, model)


def list_rollouts(*, active_only: bool = False, project: Project | None = None) -> list[Rollout]:
    from shipyard.store.models import RegisteredModelRecord

    project = project or current()
    with project.metadata.read() as session:
        query = select(RolloutRecord, RegisteredModelRecord.name).join(
            RegisteredModelRecord, RegisteredModelRecord.id == RolloutRecord.model_id
        )
        if active_only:
            query = query.where(RolloutRecord.status.in_(ACTIVE))
        rows = session.execute(query.order_by(RolloutRecord.created_at)).all()
        return [_to_rollout(row, model) for row, model in rows]


def live(models: list[str], *, project: Project) -> dict[str, Rollout]:
    """The live rollout of each of `models` that has one (what the router follows)."""
    with project.metadata.read() as session:
        rows = session.scalars(
            select(RolloutRecord).where(RolloutRecord.active_model.in_(models))
        ).all()
        return {
            row.active_model: _to_rollout(row, row.active_model) for row in rows if row.active_model
        }


def champion_of(model: str, *, project: Project) -> int | None:
    with project.metadata.read() as session:
        try:
            found = _model(session, model)
        except NotFound:
            return None
        row = session.get(ModelAliasRecord, (found.id, CHAMPION))
        if row is None:
            return None
        version = session.get(ModelVersionRecord, row.version_id)
        return version.version if version is not None else None


def history(name: str, *, project: Project | None = None) -> list[Decision]:
    """Every decision of the rollout, oldest first (append-only; they never expire)."""
    project = project or current()
    with project.metadata.read() as session:
        row, _ = _row(session, name)
        records = session.scalars(
            select(RolloutDecisionRecord)
            .where(RolloutDecisionRecord.rollout_id == row.id)
            .order_by(RolloutDecisionRecord.id)
        ).all()
        return [
            Decision(
                r.rollout_id,
                r.at,
                r.actor,
                r.action,
                r.verdict,
                r.step_before,
                r.step_after,
                r.window_start,
                r.window_end,
                dict(r.before),
                dict(r.after),
                dict(r.evidence),
                r.spec_hash,
                r.reason,
            )
            for r in records
        ]


# -- transitions ------------------------------------------------------------------------------


def _state(row: RolloutRecord) -> dict[str, Any]:
    return {
        "weights": dict(row.weights),
        "step": row.step,
        "status": row.status,
        "champion": row.champion,
        "switched": row.switched,
    }


def _decide(
    session: Session,
    row: RolloutRecord,
    actor: str,
    action: str,
    at: datetime,
    *,
    before: dict[str, Any] | None = None,
    step_before: int | None = None,
    verdict: str | None = None,
    window: tuple[datetime, datetime] | None = None,
    evidence: dict[str, Any] | None = None,
    reason: str = "",
) -> None:
    session.add(
        RolloutDecisionRecord(
            rollout_id=row.id,
            at=at,
            actor=actor,
            action=action,
            verdict=verdict,
            step_before=row.step if step_before is None else step_before,
            step_after=row.step,
            window_start=window[0] if window else None,
            window_end=window[1] if window else None,
            before=before if before is not None else _state(row),
            after=_state(row),
            evidence=evidence or {},
            spec_hash=row.spec_hash,
            reason=reason,
        )
    )


def transition(
    name: str,
    change: Callable[[Session, RolloutRecord, str], tuple[str, str]],
    *,
    project: Project,
    actor: str,
    at: datetime | None = None,
    verdict: str | None = None,
    window: tuple[datetime, datetime] | None = None,
    evidence: dict[str, Any] | None = None,
    expect_step: int | None = None,
) -> Rollout:
    """Apply `change(session, row, model)` -> (action, reason) and record it, in one commit.

    `expect_step`: the step the caller judged; if the row moved on meanwhile (another
    controller, a person), nothing happens, so a step is never repeated or skipped.
    """
    when = at or _now()

    def work(session: Session) -> Rollout:
        row, model = _row(session, name)
        if expect_step is not None and (row.step != expect_step or row.status not in ACTIVE):
            return _to_rollout(row, model)
        before, step_before = _state(row), row.step
        action, reason = change(session, row, model)
        row.updated_at = when
        _decide(
            session,
            row,
            actor,
            action,
            when,
            before=before,
            step_before=step_before,
            verdict=verdict,
            window=window,
            evidence=evidence,
            reason=reason,
        )
        if _state(row) != before:  # a hold changes no route: the workers need not re-read
            bump_revision(session)
        return _to_rollout(row, model)

    return project.metadata.write_with_retry(work)


def _require(row: RolloutRecord, allowed: tuple[str, ...], what: str) -> None:
    if row.status not in allowed:
        raise RolloutConflict(
            f"rollout {row.name!r} is {row.status}; it can be {what} only when "
            + " or ".join(allowed)
        )


def _finish(row: RolloutRecord, status: str, outcome: str, at: datetime) -> None:
    row.status = status
    row.active_model = None
    row.finished_at = at
    row.outcome = outcome


def advance(row: RolloutRecord, at: datetime) -> None:
    """The next step's split (the caller checked there is one)."""
    row.step += 1
    row.step_started_at = at
    step = row.spec["steps"][row.step]
    if row.strategy == "canary":
        row.weights = canary_weights(row.champion, row.candidates[0], float(step["weight"]))


def promote_row(
    session: Session,
    project: Project,
    row: RolloutRecord,
    model: str,
    version: int,
    at: datetime,
    reason: str,
) -> None:
    """Move the champion alias to `version` and end the rollout: one commit, so workers
    never see a promoted rollout with the old champion or the reverse."""
    move_alias(session, project, model, CHAMPION, version, reason=reason)
    row.weights = {f"v{version}": 100.0}
    _finish(row, "promoted", reason, at)


def rollback_row(
    session: Session,
    row: RolloutRecord,
    status: str,
    reason: str,
    at: datetime,
    evidence: dict[str, Any] | None = None,
) -> None:
    """All traffic back to the champion; the candidate is tagged rejected with the why."""
    row.weights = {f"v{row.champion}": 100.0}
    row.switched = False
    _finish(row, status, reason, at)
    if status == "rolled_back":
        for number in row.candidates:
            version = session.scalar(
                select(ModelVersionRecord).where(
                    ModelVersionRecord.model_id == row.model_id,
                    ModelVersionRecord.version == number,
                )
            )
            if version is not None:
                version.tags = {**version.tags, "rejected": f"rollout {row.name}: {reason}"}
    if status != "rolled_back":  # a rollback is alerted by the controller (alerts.py)
        log.warning("rollout %s %s: %s", row.name, status.replace("_", " "), reason)


def pause(name: str, *, reason: str = "", project: Project | None = None) -> Rollout:
    project = project or current()

    def change(session: Session, row: RolloutRecord, model: str) -> tuple[str, str]:
        _require(row, ("running",), "paused")
        row.status = "paused"
        return "pause", reason or "paused by hand"

    return transition(name, change, project=project, actor=project.user)


def resume(name: str, *, reason: str = "", project: Project | None = None) -> Rollout:
    project = project or current()

    def change(session: Session, row: RolloutRecord, model: str) -> tuple[str, str]:
        _require(row, ("paused",), "resumed")
        row.status = "running"
        row.step_started_at = _now()  # the hold counts again from now
        return "resume", reason or "resumed by hand"

    return transition(name, change, project=project, actor=project.user)


def promote(
    name: str, *, version: int | None = None, reason: str = "", project: Project | None = None
) -> Rollout:
    """Promote now (a person's decision, recorded): the candidate (or, in an A/B test, the
    `version` named) becomes champion and takes all traffic."""
    project = project or current()

    def change(session: Session, row: RolloutRecord, model: str) -> tuple[str, str]:
        _require(row, ACTIVE, "promoted")
        chosen = version if version is not None else row.candidates[0]
        if chosen not in row.candidates:
            raise InvalidInput(
                f"v{chosen} is not a candidate of rollout {row.name!r} "
                f"(candidates: {', '.join(f'v{c}' for c in row.candidates)})"
            )
        why = reason or f"promoted by {project.user}"
        promote_row(session, project, row, model, chosen, _now(), why)
        return "promote", why

    return transition(name, change, project=project, actor=project.user)


def approve(name: str, *, reason: str = "", project: Project | None = None) -> Rollout:
    """Record the approval a rollout with `approval = true` waits for; if every step has
    passed already, this promotes it."""
    project = project or current()

    def change(session: Session, row: RolloutRecord, model: str) -> tuple[str, str]:
        _require(row, ACTIVE, "approved")
        why = reason or f"approved by {project.user}"
        if row.status == "awaiting_approval":
            promote_row(session, project, row, model, row.candidates[0], _now(), why)
            return "promote", why
        row.approved_by = project.user
        return "approve", why

    return transition(name, change, project=project, actor=project.user)


def abort(name: str, *, reason: str = "", project: Project | None = None) -> Rollout:
    project = project or current()

    def change(session: Session, row: RolloutRecord, model: str) -> tuple[str, str]:
        _require(row, ACTIVE, "aborted")
        why = reason or f"aborted by {project.user}"
        rollback_row(session, row, "aborted", why, _now())
        return "abort", why

    return transition(name, change, project=project, actor=project.user)


def switch(
    name: str, *, back: bool = False, reason: str = "", project: Project | None = None
) -> Rollout:
    """Blue/green: green answers everyone (or, with `back`, blue again). One row changes, so
    every worker flips at once on its next poll; no request sees a mixed state."""
    project = project or current()

    def change(session: Session, row: RolloutRecord, model: str) -> tuple[str, str]:
        if row.strategy != "bluegreen":
            raise InvalidInput(
                f"rollout {row.name!r} is a {row.strategy}; only blue/green switches"
            )
        _require(row, ACTIVE, "switched")
        row.switched = not back
        green, blue = row.candidates[0], row.champion
        row.weights = {f"v{green}": 100.0} if row.switched else {f"v{blue}": 100.0}
        return ("switch-back" if back else "switch"), reason or (
            f"blue v{blue} answers again" if back else f"green v{green} answers everyone"
        )

    return transition(name, change, project=project, actor=project.user)
