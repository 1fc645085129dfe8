"""The metadata schema: SQLAlchemy 2 models. Every change here ships with an Alembic migration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

JSONDocument = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the metadata store; use an aware UTC time")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# The newest Alembic revision; a test checks it against the migrations folder.
SCHEMA_REVISION = "0006_access"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONDocument, datetime: UTCDateTime}


class DatasetRecord(Base):
    """A named dataset: the home of its immutable versions."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))

    versions: Mapped[list[DatasetVersionRecord]] = relationship(
        back_populates="dataset", order_by="DatasetVersionRecord.version"
    )


class DatasetVersionRecord(Base):
    """One immutable version of a dataset: its content hash, schema, profile and lineage."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "version", name="uq_dataset_versions_number"),
        UniqueConstraint("dataset_id", "content_hash", name="uq_dataset_versions_content"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    artifact: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    num_rows: Mapped[int] = mapped_column(BigInteger)
    num_columns: Mapped[int] = mapped_column(Integer)
    source_format: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(Text)
    schema: Mapped[dict[str, Any]]
    profile: Mapped[dict[str, Any]] = mapped_column(JSONDocument, deferred=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    split: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))

    dataset: Mapped[DatasetRecord] = relationship(back_populates="versions")


# -- runs (tracking) and step executions (pipelines) ------------------------------------------

# SQLite keeps 64-bit integers in an INTEGER PRIMARY KEY only under that exact type name.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class EnvironmentRecord(Base):
    """A Python environment, stored once and shared by every run made in it (id = its hash)."""

    __tablename__ = "environments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    python: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(Text)
    packages: Mapped[dict[str, Any]]
    lock_file: Mapped[str | None] = mapped_column(Text, nullable=True)
    lock_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunRecord(Base):
    """One tracked run: who ran what code, in which environment, with what seed, how it went."""

    __tablename__ = "runs"
    # The dashboard's runs list: newest first, optionally by pipeline or status, a page at a time.
    __table_args__ = (
        Index("ix_runs_started_id", "started_at", "id"),
        Index("ix_runs_pipeline_started", "pipeline", "started_at"),
        Index("ix_runs_status_started", "status", "started_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    kind: Mapped[str] = mapped_column(String(16), default="run")
    pipeline: Mapped[str | None] = mapped_column(String(256), nullable=True, index=True)
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    user: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    seed: Mapped[int] = mapped_column(BigInteger)
    code_root: Mapped[str | None] = mapped_column(Text, nullable=True)
    code_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    code_dirty: Mapped[bool | None] = mapped_column(nullable=True)
    code_patch: Mapped[str | None] = mapped_column(String(64), nullable=True)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id"))
    resumed_from: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reproduces: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class RunParamRecord(Base):
    __tablename__ = "run_params"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    value: Mapped[str] = mapped_column(Text)  # JSON, so a reproduction gets the same types back


class RunTagRecord(Base):
    __tablename__ = "run_tags"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunMetricRecord(Base):
    """One point of a metric series (a single value is a series of one, at step 0)."""

    __tablename__ = "run_metrics"
    __table_args__ = (Index("ix_run_metrics_run_key_step", "run_id", "key", "step"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    key: Mapped[str] = mapped_column(String(256))
    step: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Float(precision=53), nullable=True)  # NULL = NaN
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)


class RunArtifactRecord(Base):
    """A value a run read (input) or wrote (output): the edges that lineage walks."""

    __tablename__ = "run_artifacts"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    direction: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(512), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    meta: Mapped[dict[str, Any]]
    step: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StepRunRecord(Base):
    """One step of a pipeline run: its cache key and the parts it was made of, and its outputs."""

    __tablename__ = "step_runs"
    __table_args__ = (UniqueConstraint("run_id", "step", name="uq_step_runs_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    step: Mapped[str] = mapped_column(String(256))
    cache_key: Mapped[str] = mapped_column(String(64), index=True)
    key_parts: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    cached_from: Mapped[str | None] = mapped_column(String(32), nullable=True)
    outputs: Mapped[dict[str, Any]]
    seed: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


# -- the model registry and gate reports ------------------------------------------------------


class RegisteredModelRecord(Base):
    """A named model: the home of its immutable versions and its aliases."""

    __tablename__ = "registered_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))


class ModelVersionRecord(Base):
    """One immutable version: its files (by sha256), flavor, signature and where it came from."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_model_versions_number"),
        UniqueConstraint("model_id", "artifact", name="uq_model_versions_artifact"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    flavor: Mapped[str] = mapped_column(String(32))
    artifact: Mapped[str] = mapped_column(String(64), index=True)  # sha256 of the file manifest
    files: Mapped[dict[str, Any]]
    flavor_meta: Mapped[dict[str, Any]]
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    datasets: Mapped[dict[str, Any]]
    dependencies: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    params: Mapped[dict[str, Any]]
    onnx: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)
    source: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))


class ModelAliasRecord(Base):
    """Which version an alias (champion, challenger, ...) points at now."""

    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    set_at: Mapped[datetime] = mapped_column(default=utcnow)
    set_by: Mapped[str] = mapped_column(String(128))


class AliasEventRecord(Base):
    """Every move of an alias, so the history of what served is complete: who, when, why."""

    __tablename__ = "alias_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: unset
    previous: Mapped[int | None] = mapped_column(Integer, nullable=True)
    user: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(Text, default="")
    forced: Mapped[bool] = mapped_column(default=False)


class GateResultRecord(Base):
    """One gate's result for a version, within one gate report (one `shipyard gate` run)."""

    __tablename__ = "gate_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    report_id: Mapped[str] = mapped_column(String(32), index=True)
    policy: Mapped[str] = mapped_column(String(128))
    gate: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    required: Mapped[bool] = mapped_column(default=True)
    passed: Mapped[bool]
    details: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))


class RolloutRecord(Base):
    """One progressive release of a candidate version against the champion, and its live split.

    `active_model` holds the model's name while the rollout is live and NULL once it ended: a
    unique column that allows many NULLs, so two live rollouts on one model cannot exist on
    any backend, whichever process tries.
    """

    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # also the routing salt
    name: Mapped[str] = mapped_column(String(128), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"), index=True)
    active_model: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)
    strategy: Mapped[str] = mapped_column(String(16))
    champion: Mapped[int] = mapped_column(Integer)
    candidates: Mapped[list[int]] = mapped_column(JSONDocument)
    spec: Mapped[dict[str, Any]]
    spec_hash: Mapped[str] = mapped_column(String(64))
    hash_version: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(24), index=True)
    step: Mapped[int] = mapped_column(Integer, default=0)
    step_started_at: Mapped[datetime] = mapped_column(default=utcnow)
    weights: Mapped[dict[str, Any]]  # arm ("v3") -> percent of traffic, the live split
    switched: Mapped[bool] = mapped_column(default=False)  # blue/green: green answers
    failures: Mapped[int] = mapped_column(Integer, default=0)  # failed analyses so far
    approved_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    outcome: Mapped[str] = mapped_column(Text, default="")


class RolloutDecisionRecord(Base):
    """An append-only record of one decision about a rollout: never updated, never expired."""

    __tablename__ = "rollout_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))  # "controller" or the user
    action: Mapped[str] = mapped_column(String(24))
    verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)
    step_before: Mapped[int] = mapped_column(Integer)
    step_after: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    before: Mapped[dict[str, Any]]  # the split (and champion) before
    after: Mapped[dict[str, Any]]
    evidence: Mapped[dict[str, Any]]  # samples, metric values, thresholds, test statistics
    spec_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")


class FlagRecord(Base):
    """A feature flag: its rules (JSON, as `release.flags.Flag.to_dict` writes them)."""

    __tablename__ = "flags"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    definition: Mapped[dict[str, Any]]
    enabled: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(128))


class FlagEventRecord(Base):
    """Every change of a flag (set, kill, revive, delete): who, when, and the definition."""

    __tablename__ = "flag_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(16))
    definition: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    user: Mapped[str] = mapped_column(String(128))


class ReleaseRevisionRecord(Base):
    """One row whose number grows with every change to a split or a flag: serving workers
    poll it (one indexed read) and reload the release state only when it moved."""

    __tablename__ = "release_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class FeedbackRecord(Base):
    """A delayed outcome for a logged prediction: its label and/or reward, by request id."""

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_model_at", "model", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(128))
    label: Mapped[Any] = mapped_column(JSONDocument, nullable=True)
    reward: Mapped[float | None] = mapped_column(Float, nullable=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(128))


class DriftReferenceRecord(Base):
    """The binned drift profile of a dataset version, computed once (a streaming pass) and kept."""

    __tablename__ = "drift_references"
    __table_args__ = (
        UniqueConstraint("dataset_version_id", "binning", name="uq_drift_references_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    binning: Mapped[str] = mapped_column(String(32))  # the binned profile's format version
    profile: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DriftResultRecord(Base):
    """One drift run: a model's current window against its reference, column by column."""

    __tablename__ = "drift_results"
    __table_args__ = (Index("ix_drift_results_model_at", "model", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reference: Mapped[str] = mapped_column(String(300))  # dataset version ref, e.g. weather@3
    window_start: Mapped[datetime | None] = mapped_column(nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(nullable=True)
    reference_rows: Mapped[int] = mapped_column(BigInteger)
    current_rows: Mapped[int] = mapped_column(BigInteger)
    drifted: Mapped[bool]  # the dataset-level verdict for this window
    drifted_share: Mapped[float] = mapped_column(Float)
    alerting: Mapped[bool]  # drifted for `persistence` windows in a row
    result: Mapped[dict[str, Any]]  # per column: method, statistic, threshold, verdict, bins
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))


class SLOEvaluationRecord(Base):
    """One evaluation of one SLO: its value, budget left and burn rate per alert window."""

    __tablename__ = "slo_evaluations"
    __table_args__ = (Index("ix_slo_evaluations_model_slo_at", "model", "slo", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    slo: Mapped[str] = mapped_column(String(128))
    sli: Mapped[str] = mapped_column(String(32))
    objective: Mapped[float] = mapped_column(Float)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    budget_remaining: Mapped[float | None] = mapped_column(Float, nullable=True)
    events: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[dict[str, Any]]  # burn rates by window, the rules that fire
    at: Mapped[datetime] = mapped_column(default=utcnow)


class AlertRecord(Base):
    """An incident: opened once when its condition first holds, resolved when it clears.

    `open_key` is the key while the alert fires and NULL once resolved, so a unique index keeps
    one open incident per condition on every backend, whichever process evaluates it."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(300), index=True)
    open_key: Mapped[str | None] = mapped_column(String(300), nullable=True, unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # slo, drift, quality, rollout, ct
    model: Mapped[str] = mapped_column(String(128), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]]
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    notified: Mapped[dict[str, Any]]  # delivery of the firing and resolved notifications


class QualityEstimateRecord(Base):
    """A performance estimate made before labels arrived (CBPE), checked later against them."""

    __tablename__ = "quality_estimates"
    __table_args__ = (Index("ix_quality_estimates_model_at", "model", "window_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(32))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    predictions: Mapped[int] = mapped_column(BigInteger)
    estimate: Mapped[float] = mapped_column(Float)
    detail: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TriggerFiringRecord(Base):
    """A continuous-training trigger that fired, and what followed: run, version, gates, rollout."""

    __tablename__ = "trigger_firings"
    __table_args__ = (Index("ix_trigger_firings_model_at", "model", "fired_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    trigger: Mapped[str] = mapped_column(String(128))  # the trigger's name in the settings
    kind: Mapped[str] = mapped_column(String(32))  # schedule, dataset, drift, slo, quality
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), index=True)
    run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rollout: Mapped[str | None] = mapped_column(String(128), nullable=True)
    detail: Mapped[dict[str, Any]]
    fired_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    fired_by: Mapped[str] = mapped_column(String(128))


class APITokenRecord(Base):
    """An API token: only its sha256 is kept; `public_id` finds the row without the secret."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(128), index=True)
    role: Mapped[str] = mapped_column(String(16))  # viewer, operator, admin
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class AuditEventRecord(Base):
    """One state change made through the control API or the dashboard, and who made it."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128), index=True)  # the token's owner
    token_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    role: Mapped[str] = mapped_column(String(16))
    via: Mapped[str] = mapped_column(String(16))  # api, dashboard, cli
    action: Mapped[str] = mapped_column(String(64))  # e.g. rollout.promote
    target: Mapped[str] = mapped_column(String(300))  # e.g. rollout:churn-v2
    outcome: Mapped[str] = mapped_column(String(16))  # done, refused, failed
    detail: Mapped[dict[str, Any]]
