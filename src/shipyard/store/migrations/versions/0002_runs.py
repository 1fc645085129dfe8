"""runs, their params, tags, metrics and artifacts; environments; pipeline step runs

Revision ID: 0002_runs
Revises: 0001_datasets
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shipyard.store.models import BigId, JSONDocument, UTCDateTime

revision = "0002_runs"
down_revision = "0001_datasets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "environments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("python", sa.String(64), nullable=False),
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("packages", JSONDocument, nullable=False),
        sa.Column("lock_file", sa.Text(), nullable=True),
        sa.Column("lock_hash", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("pipeline", sa.String(256), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("user", sa.String(128), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("code_root", sa.Text(), nullable=True),
        sa.Column("code_commit", sa.String(64), nullable=True),
        sa.Column("code_dirty", sa.Boolean(), nullable=True),
        sa.Column("code_patch", sa.String(64), nullable=True),
        sa.Column(
            "environment_id", sa.String(64), sa.ForeignKey("environments.id"), nullable=False
        ),
        sa.Column("resumed_from", sa.String(32), nullable=True),
        sa.Column("reproduces", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_runs_pipeline", "runs", ["pipeline"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_table(
        "run_params",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "run_tags",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "run_metrics",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=True),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_run_metrics_run_key_step", "run_metrics", ["run_id", "key", "step"])
    op.create_table(
        "run_artifacts",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("direction", sa.String(8), primary_key=True),
        sa.Column("name", sa.String(512), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("meta", JSONDocument, nullable=False),
        sa.Column("step", sa.String(256), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_run_artifacts_digest", "run_artifacts", ["digest"])
    op.create_table(
        "step_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("step", sa.String(256), nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=False),
        sa.Column("key_parts", JSONDocument, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cached_from", sa.String(32), nullable=True),
        sa.Column("outputs", JSONDocument, nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.UniqueConstraint("run_id", "step", name="uq_step_runs_step"),
    )
    op.create_index("ix_step_runs_run_id", "step_runs", ["run_id"])
    op.create_index("ix_step_runs_cache_key", "step_runs", ["cache_key"])


def downgrade() -> None:
    for table in ("step_runs", "run_artifacts", "run_metrics", "run_tags", "run_params", "runs"):
        op.drop_table(table)
    op.drop_table("environments")
