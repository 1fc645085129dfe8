"""monitoring: drift references and results, SLO evaluations, alerts, quality estimates,
continuous-training trigger firings

Revision ID: 0005_monitoring
Revises: 0004_release
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shipyard.store.models import JSONDocument, UTCDateTime

revision = "0005_monitoring"
down_revision = "0004_release"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drift_references",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "dataset_version_id",
            sa.Integer(),
            sa.ForeignKey("dataset_versions.id"),
            nullable=False,
            index=True,
        ),
        sa.Column("binning", sa.String(32), nullable=False),
        sa.Column("profile", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("dataset_version_id", "binning", name="uq_drift_references_version"),
    )
    op.create_table(
        "drift_results",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("reference", sa.String(300), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=True),
        sa.Column("window_end", UTCDateTime(), nullable=True),
        sa.Column("reference_rows", sa.BigInteger(), nullable=False),
        sa.Column("current_rows", sa.BigInteger(), nullable=False),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.Column("drifted_share", sa.Float(), nullable=False),
        sa.Column("alerting", sa.Boolean(), nullable=False),
        sa.Column("result", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
    )
    op.create_index("ix_drift_results_model_at", "drift_results", ["model", "created_at"])
    op.create_table(
        "slo_evaluations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("slo", sa.String(128), nullable=False),
        sa.Column("sli", sa.String(32), nullable=False),
        sa.Column("objective", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("budget_remaining", sa.Float(), nullable=True),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("detail", JSONDocument, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_slo_evaluations_model_slo_at", "slo_evaluations", ["model", "slo", "at"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(300), nullable=False, index=True),
        sa.Column("open_key", sa.String(300), nullable=True, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False, index=True),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("evidence", JSONDocument, nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("notified", JSONDocument, nullable=False),
    )
    op.create_table(
        "quality_estimates",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("window_end", UTCDateTime(), nullable=False),
        sa.Column("predictions", sa.BigInteger(), nullable=False),
        sa.Column("estimate", sa.Float(), nullable=False),
        sa.Column("detail", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_quality_estimates_model_at", "quality_estimates", ["model", "window_start"])
    op.create_table(
        "trigger_firings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("trigger", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False, index=True),
        sa.Column("run_id", sa.String(32), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("rollout", sa.String(128), nullable=True),
        sa.Column("detail", JSONDocument, nullable=False),
        sa.Column("fired_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("fired_by", sa.String(128), nullable=False),
    )
    op.create_index("ix_trigger_firings_model_at", "trigger_firings", ["model", "fired_at"])


def downgrade() -> None:
    op.drop_index("ix_trigger_firings_model_at", table_name="trigger_firings")
    op.drop_table("trigger_firings")
    op.drop_index("ix_quality_estimates_model_at", table_name="quality_estimates")
    op.drop_table("quality_estimates")
    op.drop_table("alerts")
    op.drop_index("ix_slo_evaluations_model_slo_at", table_name="slo_evaluations")
    op.drop_table("slo_evaluations")
    op.drop_index("ix_drift_results_model_at", table_name="drift_results")
    op.drop_table("drift_results")
    op.drop_table("drift_references")
