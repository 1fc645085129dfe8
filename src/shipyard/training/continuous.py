"""Continuous training: one pass over the triggers, the loop, what follows a firing, history.

A pass looks at every configured model. When one of its triggers is due (the first, in the
order declared; the others' verdicts are kept in the firing's detail), the model fires:

1. a firing is recorded with status "running" (committed, so others see it);
2. the pipeline runs in this process on the newest version of the dataset;
3. the version it registered is judged by the gates policy;
4. passed and `auto_rollout`: the rollout starts from the template ("rolling_out"); passed
   otherwise: "awaiting_approval" until `approve()`; failed: "gates_failed"; an error at any
   stage: "failed" with the stage and the error; a version equal to the champion: "unchanged".

A model never fires while a firing of it is still running or a rollout of it is live: the
trigger is recorded once as "skipped" with the reason (not again while the same firing or
rollout blocks it), and fires on a later pass if it is still due. Within `cooldown` of its last
firing a model does not fire at all (that is the cooldown's point, so nothing is recorded).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput, NotFound, ShipyardError, StoreError
from shipyard.project import Project, current
from shipyard.store.models import (
    ModelAliasRecord,
    ModelVersionRecord,
    RegisteredModelRecord,
    RolloutRecord,
    TriggerFiringRecord,
)
from shipyard.training.plans import TrainingPlan, load_plans
from shipyard.training.triggers import (
    ModelState,
    Trigger,
    Verdict,
    evaluate,
    newest_version,
)

log = logging.getLogger("shipyard.training")

# status -> what it means (docs/continuous-training.md lists the same)
STATUSES: dict[str, str] = {
    "running": "the pipeline, the gates or the rollout start are under way",
    "failed": "a stage failed (detail.stage, detail.error); nothing was released",
    "gates_failed": "the new version failed its required gates; nothing was released",
    "awaiting_approval": "the new version passed its gates; `shipyard ct approve ID` rolls it out",
    "rolling_out": "the new version passed its gates and its rollout started",
    "unchanged": "the pipeline gave back the champion itself; nothing to release",
    "skipped": "a trigger was due while a firing or a rollout of the model was under way",
}
ENDED = tuple(status for status in STATUSES if status not in ("running", "skipped"))

Listener = Callable[["Firing"], None]


@dataclass(frozen=True)
class Firing:
    """A trigger that fired, and what followed."""

    id: int
    model: str
    trigger: str
    kind: str
    reason: str
    status: str
    run_id: str | None
    version: int | None
    rollout: str | None
    detail: dict[str, Any]
    fired_at: datetime
    finished_at: datetime | None
    fired_by: str
    # Where the firing's rollout stands now (running, promoted, rolled_back, ...), read from the
    # release state: a "rolling_out" firing's story ends with its rollout's.
    rollout_status: str | None = None

    @property
    def ref(self) -> str | None:
        return None if self.version is None else f"{self.model}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for key in ("fired_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] is not None else None
        return data

    def describe(self) -> str:
        """One line saying what happened."""
        head = f"{self.model}: firing {self.id} ({self.trigger}, {self.kind})"
        run = f" in run {self.run_id[:12]}" if self.run_id else ""
        gates = self.detail.get("gates", {})
        if self.status == "running":
            data = self.detail.get("dataset_ref")
            on = f" on {data}" if data else ""
            return f"{head} fired: {self.reason}; training{on}"
        if self.status == "skipped":
            return f"{self.model}: trigger {self.trigger} ({self.kind}) is due but skipped: " + str(
                self.detail.get("blocker", "")
            )
        if self.status == "failed":
            stage = self.detail.get("stage", "?")
            return f"{head} failed at the {stage} stage{run}: {self.detail.get('error', '')}"
        if self.status == "unchanged":
            return f"{head} trained {self.ref}{run}, the champion already; nothing to release"
        if self.status == "gates_failed":
            failed = ", ".join(gates.get("failed", [])) or "?"
            return (
                f"{head} trained {self.ref}{run}; it failed the gates {failed} of policy "
                f"{gates.get('policy')!r}; nothing was released"
            )
        if self.status == "awaiting_approval":
            return (
                f"{head} trained {self.ref}{run}; it passed the gates of policy "
                f"{gates.get('policy')!r} and awaits approval: `shipyard ct approve {self.id}`"
            )
        if self.status == "rolling_out":
            approved = self.detail.get("approved_by")
            by = f" (approved by {approved})" if approved else ""
            now = f"; the rollout is {self.rollout_status}" if self.rollout_status else ""
            return (
                f"{head} trained {self.ref}{run}; it passed the gates of policy "
                f"{gates.get('policy')!r} and its rollout {self.rollout} started{by}{now}"
            )
        return f"{head}: {self.status}"


def _to_firing(row: TriggerFiringRecord, rollout_status: str | None = None) -> Firing:
    return Firing(
        id=row.id,
        model=row.model,
        trigger=row.trigger,
        kind=row.kind,
        reason=row.reason,
        status=row.status,
        run_id=row.run_id,
        version=row.version,
        rollout=row.rollout,
        detail=dict(row.detail),
        fired_at=row.fired_at,
        finished_at=row.finished_at,
        fired_by=row.fired_by,
        rollout_status=rollout_status,
    )


def _read_firings(session: Session, rows: list[TriggerFiringRecord]) -> list[Firing]:
    """Firings with their rollouts' current status (the newest rollout of each name)."""
    names = {row.rollout for row in rows if row.rollout}
    statuses: dict[str, str] = {}
    if names:
        found = session.execute(
            select(RolloutRecord.name, RolloutRecord.status)
            .where(RolloutRecord.name.in_(names))
            .order_by(RolloutRecord.created_at)
        )
        statuses = {name: status for name, status in found}
    return [_to_firing(row, statuses.get(row.rollout or "")) for row in rows]


def _now() -> datetime:
    return datetime.now(UTC)


# -- the state of a model ---------------------------------------------------------------------


@dataclass(frozen=True)
class TriggerState:
    """A trigger's verdict now, and what would keep the model from firing."""

    model: str
    trigger: Trigger
    verdict: Verdict
    blocked: str | None = None  # why the model would not fire now (a cooldown, a rollout...)

    @property
    def fires(self) -> bool:
        return self.verdict.due and self.blocked is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "trigger": self.trigger.name,
            "kind": self.trigger.kind,
            "due": self.verdict.due,
            "reason": self.verdict.reason,
            "blocked": self.blocked,
            "next_at": self.verdict.next_at.isoformat() if self.verdict.next_at else None,
            "evidence": self.verdict.evidence,
        }


@dataclass
class _Blocker:
    key: str  # what blocks: "firing:ID" or "rollout:ID" (a skip is recorded once per key)
    reason: str
    record_skip: bool = True


@dataclass
class _Assessment:
    plan: TrainingPlan
    state: ModelState
    verdicts: list[tuple[Trigger, Verdict]] = field(default_factory=list)
    blocker: _Blocker | None = None

    @property
    def due(self) -> list[tuple[Trigger, Verdict]]:
        return [(trigger, verdict) for trigger, verdict in self.verdicts if verdict.due]


def _model_state(session: Session, model: str) -> ModelState:
    """Last firings (skips aside: a skip did nothing) and the champion's facts."""
    state = ModelState()
    rows = session.scalars(
        select(TriggerFiringRecord)
        .where(TriggerFiringRecord.model == model, TriggerFiringRecord.status != "skipped")
        .order_by(TriggerFiringRecord.fired_at.desc(), TriggerFiringRecord.id.desc())
    ).all()
    for row in rows:
        state.last_fired_at = state.last_fired_at or row.fired_at
        state.last_by_trigger.setdefault(row.trigger, row.fired_at)
        if not state.trained_on and row.detail.get("datasets"):
            state.trained_on = {str(k): int(v) for k, v in row.detail["datasets"].items()}
    champion = session.scalar(
        select(ModelVersionRecord)
        .join(ModelAliasRecord, ModelAliasRecord.version_id == ModelVersionRecord.id)
        .join(RegisteredModelRecord, RegisteredModelRecord.id == ModelAliasRecord.model_id)
        .where(RegisteredModelRecord.name == model, ModelAliasRecord.alias == "champion")
    )
    if champion is not None:
        state.champion = champion.version
        state.champion_created_at = champion.created_at
        state.champion_datasets = list(champion.datasets.get("refs", []))
    return state


def _blocker(
    session: Session, plan: TrainingPlan, state: ModelState, now: datetime
) -> _Blocker | None:
    running = session.scalar(
        select(TriggerFiringRecord)
        .where(TriggerFiringRecord.model == plan.model, TriggerFiringRecord.status == "running")
        .limit(1)
    )
    if running is not None:
        return _Blocker(
            f"firing:{running.id}",
            f"firing {running.id} ({running.trigger}) of {plan.model} is still running since "
            f"{running.fired_at:%Y-%m-%d %H:%M:%S}",
        )
    live = session.scalar(select(RolloutRecord).where(RolloutRecord.active_model == plan.model))
    if live is not None:
        return _Blocker(
            f"rollout:{live.id}",
            f"rollout {live.name!r} of {plan.model} is live ({live.status}); it must end first",
        )
    if state.last_fired_at is not None:
        until = state.last_fired_at + timedelta(seconds=plan.cooldown_s)
        if now < until:
            return _Blocker(
                "cooldown",
                f"cooling down until {until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC (cooldown "
                f"{plan.cooldown_s:g}s after the firing at {state.last_fired_at:%H:%M:%S})",
                record_skip=False,
            )
    return None


def _assess(session: Session, plan: TrainingPlan, now: datetime) -> _Assessment:
    state = _model_state(session, plan.model)
    assessment = _Assessment(plan, state)
    for trigger in plan.triggers:
        assessment.verdicts.append((trigger, evaluate(trigger, plan.model, state, session, now)))
    assessment.blocker = _blocker(session, plan, state, now)
    return assessment


def trigger_states(
    *, project: Project | None = None, now: datetime | None = None, model: str | None = None
) -> list[TriggerState]:
    """Every trigger of every configured model (or of `model`): due now or not, and why."""
    project = project or current()
    at = now or _now()
    plans = load_plans(project, model)
    states: list[TriggerState] = []
    with project.metadata.read() as session:
        for plan in plans:
            assessment = _assess(session, plan, at)
            blocked = assessment.blocker.reason if assessment.blocker else None
            states += [
                TriggerState(plan.model, trigger, verdict, blocked)
                for trigger, verdict in assessment.verdicts
            ]
    return states


# -- one pass ---------------------------------------------------------------------------------


def run_once(
    *,
    project: Project | None = None,
    now: datetime | None = None,
    model: str | None = None,
    on_event: Listener | None = None,
) -> list[Firing]:
    """One pass: fire each model with a due trigger (at most one firing per model).

    Returns the firings recorded in this pass (skips included), each in its final state;
    `on_event` is told of each firing when it starts and again when it ends.
    """
    project = project or current()
    at = now or _now()
    plans = load_plans(project, model)  # every table checked before anything is recorded
    fired: list[Firing] = []
    for plan in plans:
        _give_up_stale(project, plan, at)
        with project.metadata.read() as session:
            assessment = _assess(session, plan, at)
        due = assessment.due
        if not due:
            continue
        if assessment.blocker is not None:
            skipped = _record_skip(project, assessment, at)
            if skipped is not None:
                _tell(on_event, skipped)
                fired.append(skipped)
            continue
        firing = _fire(project, assessment, at, on_event)
        if firing is not None:
            fired.append(firing)
    return fired


def _tell(on_event: Listener | None, firing: Firing) -> None:
    log.info("%s", firing.describe())
    if on_event is not None:
        on_event(firing)


def _verdicts(assessment: _Assessment) -> dict[str, dict[str, Any]]:
    return {
        trigger.name: {"kind": trigger.kind, "due": verdict.due, "reason": verdict.reason}
        for trigger, verdict in assessment.verdicts
    }


def _record_skip(project: Project, assessment: _Assessment, at: datetime) -> Firing | None:
    """Record "skipped" once per blocker (not on every pass while it lasts)."""
    blocker = assessment.blocker
    assert blocker is not None
    if not blocker.record_skip:
        return None
    trigger, verdict = assessment.due[0]
    model = assessment.plan.model

    def write(session: Session) -> Firing | None:
        latest = session.scalar(
            select(TriggerFiringRecord)
            .where(TriggerFiringRecord.model == model, TriggerFiringRecord.status == "skipped")
            .order_by(TriggerFiringRecord.id.desc())
            .limit(1)
        )
        if latest is not None and latest.detail.get("blocked_by") == blocker.key:
            return None
        row = TriggerFiringRecord(
            model=model,
            trigger=trigger.name,
            kind=trigger.kind,
            reason=verdict.reason,
            status="skipped",
            detail={
                "blocked_by": blocker.key,
                "blocker": blocker.reason,
                "triggers": _verdicts(assessment),
            },
            fired_at=at,
            finished_at=at,
            fired_by=project.user,
        )
        session.add(row)
        session.flush()
        return _to_firing(row)

    return project.metadata.write_with_retry(write)


def _give_up_stale(project: Project, plan: TrainingPlan, at: datetime) -> None:
    """A firing "running" for longer than `stale_after` lost its process: mark it failed, so
    it stops blocking the model."""
    cutoff = at - timedelta(seconds=plan.stale_after_s)
    stale = (
        select(TriggerFiringRecord)
        .where(
            TriggerFiringRecord.model == plan.model,
            TriggerFiringRecord.status == "running",
            TriggerFiringRecord.fired_at < cutoff,
        )
        .order_by(TriggerFiringRecord.id)
    )
    with project.metadata.read() as session:
        if session.scalar(stale.limit(1)) is None:
            return  # the usual case: no write transaction on every pass

    def write(session: Session) -> None:
        for row in session.scalars(stale).all():
            row.status = "failed"
            row.finished_at = at
            row.detail = {
                **row.detail,
                "stage": row.detail.get("stage", "pipeline"),
                "error": f"abandoned: still running after stale_after ({plan.stale_after_s:g}s); "
                "the process running it most likely stopped",
            }
            log.warning(
                "firing %s of %s abandoned after %gs", row.id, plan.model, plan.stale_after_s
            )

    project.metadata.write_with_retry(write)


# -- a firing ---------------------------------------------------------------------------------


class _Stop(Exception):
    """A stage ended the firing: the status, and the detail to add."""

    def __init__(self, status: str, **detail: Any) -> None:
        super().__init__(status)
        self.status = status
        self.detail = detail


@dataclass
class _Outcome:
    status: str = "running"
    run_id: str | None = None
    version: int | None = None
    rollout: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _start(project: Project, assessment: _Assessment, at: datetime) -> Firing:
    """Record the firing as running, unless another process got there first."""
    plan = assessment.plan
    trigger, verdict = assessment.due[0]
    datasets: dict[str, int] = {}

    def write(session: Session) -> Firing:
        # Two loops must not both fire the model: SQLite's write transaction is exclusive;
        # on PostgreSQL the model's row is locked until this one commits.
        session.scalar(
            select(RegisteredModelRecord.id)
            .where(RegisteredModelRecord.name == plan.model)
            .with_for_update()
        )
        if _blocker(session, plan, _model_state(session, plan.model), at) is not None:
            raise _Stop("raced")
        names = {t.dataset for t in plan.triggers if t.dataset} | ({plan.dataset} - {None})
        for name in sorted(n for n in names if n):
            newest = newest_version(session, name)
            if newest is not None:
                datasets[name] = newest
        detail: dict[str, Any] = {
            "triggers": _verdicts(assessment),
            "evidence": verdict.evidence,
            "datasets": datasets,
            "params": plan.params,
            "policy": plan.policy,
        }
        if plan.dataset is not None and plan.dataset in datasets:
            detail["dataset_ref"] = f"{plan.dataset}@{datasets[plan.dataset]}"
        row = TriggerFiringRecord(
            model=plan.model,
            trigger=trigger.name,
            kind=trigger.kind,
            reason=verdict.reason,
            status="running",
            detail=detail,
            fired_at=at,
            fired_by=project.user,
        )
        session.add(row)
        session.flush()
        return _to_firing(row)

    return project.metadata.write_with_retry(write)


def _fire(
    project: Project, assessment: _Assessment, at: datetime, on_event: Listener | None
) -> Firing | None:
    try:
        firing = _start(project, assessment, at)
    except _Stop:  # another process fired the model between our look and our write
        return None
    _tell(on_event, firing)
    plan = assessment.plan
    outcome = _Outcome(detail=dict(firing.detail))
    started = time.perf_counter()
    try:
        _train_judge_release(project, plan, firing, outcome)
    except _Stop as stop:
        outcome.status = stop.status
        outcome.detail.update(stop.detail)
    except BaseException as exc:  # an interrupted or crashed firing is not left "running"
        outcome.status = "failed"
        outcome.detail.update(stage=outcome.detail.get("stage", "pipeline"), error=_text(exc))
        _finish(project, firing.id, outcome, at, time.perf_counter() - started)
        raise
    final = _finish(project, firing.id, outcome, at, time.perf_counter() - started)
    _tell(on_event, final)
    return final


def _text(exc: BaseException) -> str:
    if isinstance(exc, ShipyardError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"


def _timed(outcome: _Outcome, name: str, started: float) -> None:
    outcome.detail.setdefault("timings", {})[name] = round(time.perf_counter() - started, 3)


def _train_judge_release(
    project: Project, plan: TrainingPlan, firing: Firing, outcome: _Outcome
) -> None:
    outcome.detail["stage"] = "pipeline"
    clock = time.perf_counter()
    run_id = _run_pipeline(project, plan, firing, outcome)
    _timed(outcome, "pipeline_s", clock)
    outcome.detail["stage"] = "registration"
    outcome.version = _registered_version(project, plan.model, run_id, outcome)
    with project.metadata.read() as session:
        champion = _model_state(session, plan.model).champion
    if champion == outcome.version:
        raise _Stop("unchanged")
    outcome.detail["stage"] = "gates"
    clock = time.perf_counter()
    passed = _judge(project, plan, outcome)
    _timed(outcome, "gates_s", clock)
    if not passed:
        raise _Stop("gates_failed")
    if not plan.auto_rollout:
        raise _Stop("awaiting_approval")
    outcome.detail["stage"] = "rollout"
    clock = time.perf_counter()
    outcome.rollout = _start_rollout(project, plan, outcome.version, actor=f"ct:{firing.trigger}")
    _timed(outcome, "rollout_s", clock)
    raise _Stop("rolling_out")


def _run_pipeline(project: Project, plan: TrainingPlan, firing: Firing, outcome: _Outcome) -> str:
    from shipyard.pipelines.execution import StepFailed, run_pipeline
    from shipyard.pipelines.loading import load_pipeline

    params = dict(plan.params)
    if plan.data_param is not None:
        if "dataset_ref" not in firing.detail:
            raise _Stop(
                "failed",
                error=f"dataset {plan.dataset!r} has no version to train on; add one "
                f"(`shipyard data add FILE --name {plan.dataset}`)",
            )
        params[plan.data_param] = firing.detail["dataset_ref"]
    try:
        pipeline, _ = load_pipeline(plan.pipeline_target)
        result = run_pipeline(pipeline, params, project=project, progress=False)
    except StepFailed as exc:
        outcome.run_id = exc.run_id
        raise _Stop("failed", error=exc.message.splitlines()[0]) from None
    except Exception as exc:
        raise _Stop("failed", error=f"pipeline {plan.pipeline}: {_text(exc)}") from None
    if result.run_id is None:
        raise _Stop("failed", error=f"pipeline {plan.pipeline} recorded no run")
    outcome.run_id = result.run_id
    return result.run_id


def _registered_version(project: Project, model: str, run_id: str, outcome: _Outcome) -> int:
    """The version of `model` the run registered: recorded with the run's id, or (when the
    files were registered before, so the version keeps its first run) named by the output of
    the run's `registering` step."""
    from shipyard.store.models import StepRunRecord

    with project.metadata.read() as session:
        number = session.scalar(
            select(ModelVersionRecord.version)
            .join(RegisteredModelRecord, RegisteredModelRecord.id == ModelVersionRecord.model_id)
            .where(RegisteredModelRecord.name == model, ModelVersionRecord.run_id == run_id)
            .order_by(ModelVersionRecord.version.desc())
            .limit(1)
        )
        if number is not None:
            return int(number)
        step = f"register_{model.replace('.', '_')}"
        record = session.scalar(
            select(StepRunRecord).where(StepRunRecord.run_id == run_id, StepRunRecord.step == step)
        )
    if record is not None:
        from shipyard.tracking.values import StoredValue, load_value

        for document in record.outputs.get("values", {}).values():
            ref = load_value(StoredValue.from_json(document), project)
            if isinstance(ref, str) and ref.partition("@")[0] == model:
                return int(ref.partition("@")[2])
    raise _Stop(
        "failed",
        error=f"run {run_id} registered no version of {model}: the pipeline needs a "
        f'step made with shipyard.registry.registering("{model}")',
    )


def _judge(project: Project, plan: TrainingPlan, outcome: _Outcome) -> bool:
    from shipyard.gates import run_gates

    ref = f"{plan.model}@{outcome.version}"
    try:
        report = run_gates(ref, plan.policy, project=project)
    except Exception as exc:
        raise _Stop(
            "failed",
            error=f"the gates of policy {plan.policy!r} could not run on {ref}: {_text(exc)}",
        ) from None
    outcome.detail["gates"] = {
        "policy": plan.policy,
        "report": report.report_id,
        "passed": report.passed,
        "failed": [result.name for result in report.failed],
        "results": [
            {
                "gate": result.name,
                "kind": result.kind,
                "required": result.required,
                "passed": result.passed,
                "reasons": list(result.reasons),
            }
            for result in report.results
        ],
    }
    return bool(report.passed)


def _start_rollout(project: Project, plan: TrainingPlan, version: int | None, *, actor: str) -> str:
    from shipyard.release import rollouts

    assert version is not None
    try:
        started = rollouts.start(plan.rollout_spec(version), project=project, actor=actor)
    except Exception as exc:
        raise _Stop("failed", error=f"the rollout could not start: {_text(exc)}") from None
    return started.name


def _finish(
    project: Project, firing_id: int, outcome: _Outcome, at: datetime, seconds: float
) -> Firing:
    outcome.detail.setdefault("timings", {})["total_s"] = round(seconds, 3)
    if outcome.status not in ("failed",):
        outcome.detail.pop("stage", None)  # the stage matters only where it failed

    def write(session: Session) -> Firing:
        row = session.get(TriggerFiringRecord, firing_id)
        assert row is not None
        row.status = outcome.status
        row.run_id = outcome.run_id
        row.version = outcome.version
        row.rollout = outcome.rollout
        row.detail = outcome.detail
        # On the pass's clock, so a pass run with `now=` keeps fired_at <= finished_at.
        row.finished_at = at + timedelta(seconds=seconds)
        return _to_firing(row)

    return project.metadata.write_with_retry(write)


# -- the loop, history, approval --------------------------------------------------------------


def run(
    *,
    poll: float = 60,
    project: Project | None = None,
    stop: threading.Event | None = None,
    model: str | None = None,
    on_event: Listener | None = None,
) -> int:
    """Pass after pass, `poll` seconds apart, until `stop` is set; returns the passes made.

    A bad setting stops the loop (it would fail every pass); a metadata store that cannot be
    reached is logged and tried again on the next pass.
    """
    project = project or current()
    stop = stop or threading.Event()
    passes = 0
    while not stop.is_set():
        try:
            run_once(project=project, model=model, on_event=on_event)
        except StoreError as exc:
            log.warning("continuous-training pass failed, retrying in %gs: %s", poll, exc)
        passes += 1
        stop.wait(poll)
    return passes


def history(
    model: str | None = None, *, limit: int = 50, project: Project | None = None
) -> list[Firing]:
    """The latest firings, newest first (of `model` when given)."""
    project = project or current()
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput(f"limit must be a whole number >= 1; got {limit!r}")
    query = select(TriggerFiringRecord)
    if model is not None:
        query = query.where(TriggerFiringRecord.model == model)
    query = query.order_by(TriggerFiringRecord.fired_at.desc(), TriggerFiringRecord.id.desc())
    with project.metadata.read() as session:
        return _read_firings(session, list(session.scalars(query.limit(limit))))


def get_firing(firing_id: int, *, project: Project | None = None) -> Firing:
    project = project or current()
    with project.metadata.read() as session:
        row = session.get(TriggerFiringRecord, firing_id)
        if row is None:
            raise NotFound(f"no firing {firing_id}; `shipyard ct history` lists them")
        return _read_firings(session, [row])[0]


def approve(firing_id: int, *, note: str = "", project: Project | None = None) -> Firing:
    """Roll out the version a firing left awaiting approval (the rollout from the template)."""
    project = project or current()
    firing = get_firing(firing_id, project=project)
    if firing.status != "awaiting_approval":
        raise InvalidInput(
            f"firing {firing.id} of {firing.model} is {firing.status}, not awaiting_approval; "
            "only a version that passed its gates and waits for approval can be approved"
        )
    (plan,) = load_plans(project, firing.model)
    name = _start_rollout_for_approval(project, plan, firing)
    approved_at = _now()

    def write(session: Session) -> Firing:
        row = session.get(TriggerFiringRecord, firing.id)
        assert row is not None
        row.status = "rolling_out"
        row.rollout = name
        row.detail = {
            **row.detail,
            "approved_by": project.user,
            "approved_at": approved_at.isoformat(),
            "approval_note": note,
        }
        return _to_firing(row)

    approved = project.metadata.write_with_retry(write)
    log.info("%s", approved.describe())
    return approved


def _start_rollout_for_approval(project: Project, plan: TrainingPlan, firing: Firing) -> str:
    from shipyard.release import rollouts

    assert firing.version is not None
    return rollouts.start(
        plan.rollout_spec(firing.version), project=project, actor=project.user
    ).name
