"""Runs: the record of one piece of training work, written while it happens.

>>> with shipyard.start_run("baseline", params={"depth": 3}) as run:
...     for epoch in range(10):
...         run.log_metric("loss", loss, step=epoch)
...     run.log_metric("auc", 0.91)

A run records its parameters, metric series, artifacts, tags, the code commit (and the patch when
the tree was dirty), the environment, the seed it planted in `random`/numpy/torch, who ran it,
when, and how it ended.

Logging is buffered: points are written in one transaction every `FLUSH_POINTS` points or
`FLUSH_SECONDS`, whichever comes first, and when the run ends. Once `end()` (or the `with` block)
returns, everything logged is committed; a process killed mid-run loses at most the points logged
since the last flush. This is what makes one-by-one logging cheap: a `log_metric` call appends to a
list, where MLflow commits one transaction per call.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import operator
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.orm import Session

from shipyard.errors import InvalidInput, NotFound
from shipyard.project import Project, current
from shipyard.store.models import (
    Base,
    EnvironmentRecord,
    RunArtifactRecord,
    RunMetricRecord,
    RunParamRecord,
    RunRecord,
    RunTagRecord,
    utcnow,
)
from shipyard.tracking import active
from shipyard.tracking.environment import Environment, code_state, current_environment
from shipyard.tracking.seeds import new_seed, seed_everything

if TYPE_CHECKING:
    from shipyard.tracking.values import StoredValue

FLUSH_POINTS = 1000
FLUSH_SECONDS = 1.0
MAX_KEY_LENGTH = 256
MAX_NAME_LENGTH = 256  # runs.name
MAX_SEED = 2**63 - 1  # runs.seed is a signed 64-bit integer
STATUSES = ("running", "finished", "failed", "killed")

_open_runs: set[Run] = set()
_stored_environments: set[tuple[str, str]] = set()  # (database, environment id) known stored
_stored_patches: dict[tuple[str, str], str] = {}  # (artifact store, root) -> patch digest


def _check_key(key: object, what: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise InvalidInput(f"a {what} name must be a non-empty string; got {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"{what} name {key[:40]!r}... is {len(key)} characters; at most {MAX_KEY_LENGTH}"
        )
    return key


def encode_param(key: str, value: Any) -> str:
    """A parameter as JSON text, so that a reproduction gets back the same types."""
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        with contextlib.suppress(TypeError, ValueError):  # several items: refused below
            value = value.item()
    if isinstance(value, Path):
        value = str(value)
    try:
        return json.dumps(value, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"parameter {key!r} must be a JSON value (string, number, boolean, null, or a list "
            f"or dict of those); got {type(value).__name__}"
        ) from None


def _metric_value(key: str, value: Any) -> float:
    number = value
    if not isinstance(value, int | float) and hasattr(value, "item") and callable(value.item):
        with contextlib.suppress(TypeError, ValueError):
            number = value.item()  # numpy scalars; numpy's bool_ becomes a bool, refused below
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise InvalidInput(f"metric {key!r} must be a number; got {type(value).__name__} {value!r}")
    return float(number)


def _step(key: str, step: Any) -> int:
    if isinstance(step, bool) or type(step).__name__ == "bool_":
        raise InvalidInput(f"metric {key!r}: step must be an integer; got {step!r}")
    try:
        return operator.index(step)  # numpy integers too: `for epoch in np.arange(10)`
    except TypeError:
        raise InvalidInput(f"metric {key!r}: step must be an integer; got {step!r}") from None


class Run:
    """A run being recorded. Use `start_run()`; end it with `end()` or a `with` block."""

    def __init__(self, project: Project, record: RunRecord, params: dict[str, Any]) -> None:
        self.project = project
        self.id = record.id
        self.name = record.name
        self.seed = record.seed
        self.status = record.status
        self._params: dict[str, str] = {key: encode_param(key, v) for key, v in params.items()}
        self._pending_params: dict[str, str] = {}
        self._pending_tags: dict[str, str] = {}
        self._pending_metrics: list[dict[str, Any]] = []
        self._pending_artifacts: list[dict[str, Any]] = []
        self._next_step: dict[str, int] = {}
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()  # steps may log from worker threads
        self._token: Any = None

    def __repr__(self) -> str:
        return f"Run({self.id!r}, status={self.status!r})"

    @property
    def params(self) -> dict[str, Any]:
        return {key: json.loads(value) for key, value in self._params.items()}

    # -- logging --------------------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        """Record a parameter. Parameters are immutable: logging another value is an error."""
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        encoded = {_check_key(key, "parameter"): encode_param(key, v) for key, v in params.items()}
        with self._lock:
            self._require_running()
            # Every key is checked before any is kept: a refused call records nothing.
            for key, value in encoded.items():
                known = self._params.get(key)
                if known is not None and known != value:
                    raise InvalidInput(
                        f"parameter {key!r} is already {known} in run {self.id}; parameters "
                        f"cannot change within a run (got {value})"
                    )
            for key, value in encoded.items():
                if key not in self._params:
                    self._params[key] = value
                    self._pending_params[key] = value
        self._maybe_flush()

    def log_metric(
        self, key: str, value: float, step: int | None = None, *, timestamp: float | None = None
    ) -> None:
        """Record one point of the series `key`; `step` defaults to the next after the last."""
        number = _metric_value(_check_key(key, "metric"), value)
        if step is not None:
            step = _step(key, step)
        when = int((timestamp if timestamp is not None else time.time()) * 1000)
        with self._lock:
            self._require_running()
            at = self._next_step.get(key, 0) if step is None else step
            self._next_step[key] = max(at + 1, self._next_step.get(key, 0))
            self._pending_metrics.append(
                {
                    "run_id": self.id,
                    "key": key,
                    "step": at,
                    "value": None if math.isnan(number) else number,
                    "timestamp_ms": when,
                }
            )
            due = len(self._pending_metrics) >= FLUSH_POINTS
        if due or time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self.log_metric(key, value, step)

    def set_tag(self, key: str, value: Any) -> None:
        """Tags, unlike parameters, may be changed."""
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        checked = {_check_key(key, "tag"): str(value) for key, value in tags.items()}
        with self._lock:
            self._require_running()
            self._pending_tags.update(checked)
        self._maybe_flush()

    def log_artifact(self, name: str, value: Any, *, step: str | None = None) -> StoredValue:
        """Store `value` (a table, an array, JSON, bytes, a file path, any picklable object) as
        an output of this run."""
        return self._record_value("output", name, value, step)

    def log_input(self, name: str, value: Any, *, step: str | None = None) -> StoredValue:
        """Record what the run read (a dataset version, a table, ...): lineage walks these."""
        return self._record_value("input", name, value, step)

    def _record_value(self, direction: str, name: str, value: Any, step: str | None) -> StoredValue:
        from shipyard.tracking.values import store_value

        _check_key(name, "artifact")
        if isinstance(value, Path):
            if not value.is_file():
                raise InvalidInput(f"artifact {name!r}: {value} is not a file")
            value = value.read_bytes()
        stored = store_value(value, self.project)
        self.record_stored(direction, name, stored, step)
        return stored

    def record_stored(
        self, direction: str, name: str, stored: StoredValue, step: str | None = None
    ) -> None:
        """Record a value already in the artifact store (pipelines store outputs themselves)."""
        with self._lock:
            self._require_running()
            self._pending_artifacts.append(
                {
                    "run_id": self.id,
                    "direction": direction,
                    "name": name,
                    "kind": stored.kind,
                    "digest": stored.digest,
                    "size": stored.size,
                    "meta": stored.meta,
                    "step": step,
                    "created_at": utcnow(),
                }
            )

    def _require_running(self) -> None:
        if self.status != "running":
            raise InvalidInput(f"run {self.id} has ended ({self.status}); start a new run")

    # -- writing --------------------------------------------------------------------------

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write everything logged so far, in one transaction."""
        with self._lock:
            pending = self._take_pending()
        if any(pending):
            try:
                with self.project.metadata.write() as session:
                    _write_pending(session, self.id, *pending)
            except BaseException:
                self._restore_pending(pending)  # kept for the next flush or `end()`
                raise
        self._last_flush = time.monotonic()

    def _take_pending(
        self,
    ) -> tuple[dict[str, str], dict[str, str], list[dict[str, Any]], list[dict[str, Any]]]:
        taken = (
            self._pending_params,
            self._pending_tags,
            self._pending_metrics,
            self._pending_artifacts,
        )
        self._pending_params, self._pending_tags = {}, {}
        self._pending_metrics, self._pending_artifacts = [], []
        return taken

    def _restore_pending(
        self,
        taken: tuple[dict[str, str], dict[str, str], list[dict[str, Any]], list[dict[str, Any]]],
    ) -> None:
        """Put back what a failed write took, before anything logged since."""
        params, tags, metrics, artifacts = taken
        with self._lock:
            self._pending_params = {**params, **self._pending_params}
            self._pending_tags = {**tags, **self._pending_tags}
            self._pending_metrics = metrics + self._pending_metrics
            self._pending_artifacts = artifacts + self._pending_artifacts

    def end(self, status: str = "finished", error: str | None = None) -> None:
        """Write what is pending and the final status together; a second call does nothing."""
        if status not in STATUSES[1:]:
            raise InvalidInput(f"a run ends as one of {', '.join(STATUSES[1:])}; got {status!r}")
        with self._lock:
            if self.status != "running":
                return
            pending = self._take_pending()
            self.status = status
        try:
            with self.project.metadata.write() as session:
                _write_pending(session, self.id, *pending)
                session.execute(
                    update(RunRecord)
                    .where(RunRecord.id == self.id)
                    .values(status=status, ended_at=utcnow(), error=error)
                )
        except BaseException:
            # Still running, with nothing lost: `end()` may be called again (atexit does).
            self.status = "running"
            self._restore_pending(pending)
            raise
        _open_runs.discard(self)
        if self._token is not None:
            active.deactivate(self._token)
            self._token = None

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if error is None:
            self.end("finished")
        elif isinstance(error, KeyboardInterrupt):
            self.end("killed", "interrupted (KeyboardInterrupt)")
        else:
            self.end("failed", "".join(traceback.format_exception(kind, error, trace)))


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _write_pending(
    session: Session,
    run_id: str,
    params: dict[str, str],
    tags: dict[str, str],
    metrics: list[dict[str, Any]],
    artifacts: list[dict[str, Any]],
) -> None:
    if params:
        session.connection().execute(
            insert(_table(RunParamRecord)),
            [{"run_id": run_id, "key": key, "value": value} for key, value in params.items()],
        )
    if tags:
        session.execute(
            delete(RunTagRecord).where(
                RunTagRecord.run_id == run_id, RunTagRecord.key.in_(list(tags))
            )
        )
        session.execute(
            insert(RunTagRecord),
            [{"run_id": run_id, "key": key, "value": value} for key, value in tags.items()],
        )
    if metrics:
        # Core, not the ORM's bulk insert: half the time per point, which is most of a flush.
        session.connection().execute(insert(_table(RunMetricRecord)), metrics)
    # A name logged again replaces the earlier value, in this batch as in the database.
    artifacts = list({(row["direction"], row["name"]): row for row in artifacts}.values())
    for row in artifacts:
        session.execute(
            delete(RunArtifactRecord).where(
                RunArtifactRecord.run_id == run_id,
                RunArtifactRecord.direction == row["direction"],
                RunArtifactRecord.name == row["name"],
            )
        )
    if artifacts:
        session.execute(insert(RunArtifactRecord), artifacts)


# -- starting runs --------------------------------------------------------------------------


@dataclass
class RunOrigin:
    """Where a run comes from, for runs that pipelines and reproductions start."""

    kind: str = "run"
    pipeline: str | None = None
    source: str | None = None
    resumed_from: str | None = None
    reproduces: str | None = None
    code_root: Path | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)
    # Pipelines seed each step with a seed of its own instead, where the step runs.
    seed_process: bool = True


def start_run(
    name: str = "",
    *,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    seed: int | None = None,
    project: Project | None = None,
    origin: RunOrigin | None = None,
) -> Run:
    """Start recording a run, seeding `random`, numpy and torch from one recorded seed.

    Use it as a context manager: the run ends as finished, or as failed with the traceback.
    """
    project = project or current()
    origin = origin or RunOrigin()
    if not isinstance(name, str):
        raise InvalidInput(f"a run name must be a string; got {type(name).__name__}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"run name {name[:40]!r}... is {len(name)} characters; at most {MAX_NAME_LENGTH}"
        )
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED
    ):
        raise InvalidInput(f"seed must be an integer from 0 to 2**63 - 1; got {seed!r}")
    run_seed = new_seed() if seed is None else seed
    given_params = dict(params or {})
    encoded = {_check_key(k, "parameter"): encode_param(k, v) for k, v in given_params.items()}
    checked_tags = {_check_key(k, "tag"): str(v) for k, v in (tags or {}).items()}
    checked_tags.update(origin.extra_tags)

    code = code_state(origin.code_root)
    environment = current_environment(Path(code.root))
    patch = _store_patch(project, code.root, code.patch)
    record = RunRecord(
        id=uuid.uuid4().hex,
        name=name,
        kind=origin.kind,
        pipeline=origin.pipeline,
        source=origin.source,
        status="running",
        user=project.user,
        started_at=utcnow(),
        seed=run_seed,
        code_root=code.root,
        code_commit=code.commit,
        code_dirty=code.dirty,
        code_patch=patch,
        environment_id=environment.id,
        resumed_from=origin.resumed_from,
        reproduces=origin.reproduces,
    )
    with project.metadata.write() as session:
        stored_environment = _ensure_environment(session, project, environment)
        session.add(record)
        session.flush()
        _write_pending(session, record.id, encoded, checked_tags, [], [])
    # Remembered once committed: a rolled-back insert must be tried again by the next run.
    _stored_environments.add(stored_environment)
    run = Run(project, record, given_params)
    if origin.seed_process:
        seed_everything(run_seed)
    run._token = active.activate(run)
    _open_runs.add(run)
    return run


def _ensure_environment(
    session: Session, project: Project, environment: Environment
) -> tuple[str, str]:
    key = (str(project.metadata.url), environment.id)
    if key in _stored_environments:
        return key
    from sqlalchemy.dialects import postgresql, sqlite

    values = {
        "id": environment.id,
        "python": environment.python,
        "platform": environment.platform,
        "packages": environment.packages,
        "lock_file": environment.lock_file,
        "lock_hash": environment.lock_hash,
        "created_at": utcnow(),
    }
    # Identical rows from two processes: whoever comes second has nothing to add.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            postgresql.insert(EnvironmentRecord)
            .values(values)
            .on_conflict_do_nothing(index_elements=["id"])
        )
    else:
        session.execute(
            sqlite.insert(EnvironmentRecord)
            .values(values)
            .on_conflict_do_nothing(index_elements=["id"])
        )
    return key


def _store_patch(project: Project, root: str, patch: bytes | None) -> str | None:
    if patch is None:
        return None
    key = (project.artifacts.url, root)
    if key not in _stored_patches:
        _stored_patches[key] = project.artifacts.put_bytes(patch).digest
    return _stored_patches[key]


def active_run() -> Run | None:
    """The run started last in this context and not yet ended, if any."""
    logger = active.current_logger()
    return logger if isinstance(logger, Run) else None


# Module-level logging (`shipyard.tracking.log_metric`, ...) lives in `active`, re-exported here.
log_metric = active.log_metric
log_metrics = active.log_metrics
log_param = active.log_param
log_params = active.log_params
set_tag = active.set_tag


@atexit.register
def _end_open_runs() -> None:
    # A script that never ended its run still gets its points and a final status, as in MLflow.
    for run in list(_open_runs):
        # The interpreter is going away: there is nobody left to report a failure to.
        with contextlib.suppress(Exception):
            run.end("finished")


# -- reading runs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactInfo:
    name: str
    direction: str
    kind: str
    digest: str
    size: int
    meta: dict[str, Any]
    step: str | None


@dataclass(frozen=True)
class RunInfo:
    """A run as recorded: everything `runs show` prints."""

    id: str
    name: str
    kind: str
    pipeline: str | None
    source: str | None
    status: str
    user: str
    started_at: datetime
    ended_at: datetime | None
    seed: int
    code_root: str | None
    code_commit: str | None
    code_dirty: bool | None
    code_patch: str | None
    environment_id: str
    resumed_from: str | None
    reproduces: str | None
    error: str | None
    params: dict[str, Any]
    tags: dict[str, str]
    metrics: dict[str, float]  # the last value of each series
    artifacts: list[ArtifactInfo]

    @property
    def duration_s(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    def artifact(self, name: str, direction: str = "output") -> ArtifactInfo:
        for item in self.artifacts:
            if item.name == name and item.direction == direction:
                return item
        raise NotFound(f"run {self.id} has no {direction} artifact {name!r}")


def resolve_run_id(session: Session, run_id: str) -> str:
    """A full run id from a unique prefix (at least 4 characters), like git's short hashes."""
    if not isinstance(run_id, str) or not 4 <= len(run_id) <= 32 or not _is_ascii_alnum(run_id):
        raise InvalidInput(f"a run id is 4 to 32 letters and digits; got {run_id!r}")
    found = session.scalars(
        select(RunRecord.id)
        .where(RunRecord.id.startswith(run_id.lower()))
        .order_by(RunRecord.id)
        .limit(3)
    ).all()
    if not found:
        raise NotFound(f"no run {run_id!r}; `shipyard runs list` shows the runs")
    if len(found) > 1:
        raise InvalidInput(f"run id {run_id!r} is ambiguous ({', '.join(found)}, ...): give more")
    return found[0]


def _is_ascii_alnum(text: str) -> bool:
    return text.isascii() and text.isalnum()


def get_run(run_id: str, *, project: Project | None = None) -> RunInfo:
    """One run, by id or unique id prefix."""
    project = project or current()
    with project.metadata.read() as session:
        full = resolve_run_id(session, run_id)
        return load_runs(session, [full], with_artifacts=True)[0]


def load_runs(session: Session, ids: list[str], *, with_artifacts: bool = False) -> list[RunInfo]:
    """Runs with their params, tags and last metric values, in the order of `ids`."""
    if not ids:
        return []
    records = {r.id: r for r in session.scalars(select(RunRecord).where(RunRecord.id.in_(ids)))}
    params: dict[str, dict[str, Any]] = {run_id: {} for run_id in ids}
    for row in session.execute(select(RunParamRecord).where(RunParamRecord.run_id.in_(ids))):
        params[row[0].run_id][row[0].key] = json.loads(row[0].value)
    tags: dict[str, dict[str, str]] = {run_id: {} for run_id in ids}
    for tag in session.scalars(select(RunTagRecord).where(RunTagRecord.run_id.in_(ids))):
        tags[tag.run_id][tag.key] = tag.value
    metrics = _last_metric_values(session, ids)
    artifacts: dict[str, list[ArtifactInfo]] = {run_id: [] for run_id in ids}
    if with_artifacts:
        query = (
            select(RunArtifactRecord)
            .where(RunArtifactRecord.run_id.in_(ids))
            .order_by(RunArtifactRecord.created_at, RunArtifactRecord.name)
        )
        for item in session.scalars(query):
            artifacts[item.run_id].append(
                ArtifactInfo(
                    item.name, item.direction, item.kind, item.digest, item.size, item.meta,
                    item.step,
                )
            )  # fmt: skip
    return [
        _to_info(records[run_id], params[run_id], tags[run_id], metrics.get(run_id, {}),
                 artifacts[run_id])
        for run_id in ids
        if run_id in records
    ]  # fmt: skip


def _last_metric_values(session: Session, ids: list[str]) -> dict[str, dict[str, float]]:
    from sqlalchemy import func

    ranked = (
        select(
            RunMetricRecord.run_id,
            RunMetricRecord.key,
            RunMetricRecord.value,
            func.row_number()
            .over(
                partition_by=(RunMetricRecord.run_id, RunMetricRecord.key),
                order_by=(RunMetricRecord.step.desc(), RunMetricRecord.id.desc()),
            )
            .label("rank"),
        )
        .where(RunMetricRecord.run_id.in_(ids))
        .subquery()
    )
    result: dict[str, dict[str, float]] = {}
    query = select(ranked.c.run_id, ranked.c.key, ranked.c.value).where(ranked.c.rank == 1)
    for run_id, key, value in session.execute(query):
        result.setdefault(run_id, {})[key] = math.nan if value is None else value
    return result


def _to_info(
    record: RunRecord,
    params: dict[str, Any],
    tags: dict[str, str],
    metrics: dict[str, float],
    artifacts: list[ArtifactInfo],
) -> RunInfo:
    return RunInfo(
        id=record.id,
        name=record.name,
        kind=record.kind,
        pipeline=record.pipeline,
        source=record.source,
        status=record.status,
        user=record.user,
        started_at=record.started_at,
        ended_at=record.ended_at,
        seed=record.seed,
        code_root=record.code_root,
        code_commit=record.code_commit,
        code_dirty=record.code_dirty,
        code_patch=record.code_patch,
        environment_id=record.environment_id,
        resumed_from=record.resumed_from,
        reproduces=record.reproduces,
        error=record.error,
        params=dict(sorted(params.items())),
        tags=dict(sorted(tags.items())),
        metrics=dict(sorted(metrics.items())),
        artifacts=artifacts,
    )


def list_runs(
    *,
    project: Project | None = None,
    pipeline: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[RunInfo]:
    """The newest runs first."""
    project = project or current()
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"unknown run status {status!r}; expected one of {', '.join(STATUSES)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput(f"limit must be an integer of at least 1; got {limit!r}")
    query = select(RunRecord.id).order_by(RunRecord.started_at.desc()).limit(limit)
    if pipeline is not None:
        query = query.where(RunRecord.pipeline == pipeline)
    if status is not None:
        query = query.where(RunRecord.status == status)
    with project.metadata.read() as session:
        return load_runs(session, list(session.scalars(query)))


@dataclass(frozen=True)
class MetricPoint:
    step: int
    value: float
    timestamp_ms: int


def metric_history(run_id: str, key: str, *, project: Project | None = None) -> list[MetricPoint]:
    """Every point of one series, in step order."""
    project = project or current()
    with project.metadata.read() as session:
        full = resolve_run_id(session, run_id)
        rows = session.execute(
            select(RunMetricRecord.step, RunMetricRecord.value, RunMetricRecord.timestamp_ms)
            .where(RunMetricRecord.run_id == full, RunMetricRecord.key == key)
            .order_by(RunMetricRecord.step, RunMetricRecord.id)
        ).all()
    if not rows:
        raise NotFound(f"run {full} has no metric {key!r}")
    return [MetricPoint(s, math.nan if v is None else v, t) for s, v, t in rows]


def get_environment(environment_id: str, *, project: Project | None = None) -> EnvironmentRecord:
    project = project or current()
    with project.metadata.read() as session:
        record = session.get(EnvironmentRecord, environment_id)
    if record is None:
        raise NotFound(f"no environment {environment_id}")
    return record
