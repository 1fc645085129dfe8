"""release: rollouts and their decisions, feature flags, the release revision, feedback

Revision ID: 0004_release
Revises: 0003_registry
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shipyard.store.models import JSONDocument, UTCDateTime

revision = "0004_release"
down_revision = "0003_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, index=True),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("registered_models.id"), nullable=False),
        sa.Column("active_model", sa.String(128), nullable=True, unique=True),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("champion", sa.Integer(), nullable=False),
        sa.Column("candidates", JSONDocument, nullable=False),
        sa.Column("spec", JSONDocument, nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("hash_version", sa.String(32), nullable=False),
        sa.Column("status", sa.String(24), nullable=False, index=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("step_started_at", UTCDateTime(), nullable=False),
        sa.Column("weights", JSONDocument, nullable=False),
        sa.Column("switched", sa.Boolean(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("approved_by", sa.String(128), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
    )
    op.create_index("ix_rollouts_model_id", "rollouts", ["model_id"])
    op.create_table(
        "rollout_decisions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rollout_id", sa.String(32), sa.ForeignKey("rollouts.id"), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=True),
        sa.Column("step_before", sa.Integer(), nullable=False),
        sa.Column("step_after", sa.Integer(), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=True),
        sa.Column("window_end", UTCDateTime(), nullable=True),
        sa.Column("before", JSONDocument, nullable=False),
        sa.Column("after", JSONDocument, nullable=False),
        sa.Column("evidence", JSONDocument, nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )
    op.create_index("ix_rollout_decisions_rollout_id", "rollout_decisions", ["rollout_id"])
    op.create_table(
        "flags",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("definition", JSONDocument, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
    )
    op.create_index("ix_flags_model", "flags", ["model"])
    op.create_table(
        "flag_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("definition", JSONDocument, nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("user", sa.String(128), nullable=False),
    )
    op.create_index("ix_flag_events_name", "flag_events", ["name"])
    op.create_table(
        "release_revision",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("label", JSONDocument, nullable=True),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
    )
    op.create_index("ix_feedback_request_id", "feedback", ["request_id"])
    op.create_index("ix_feedback_model_at", "feedback", ["model", "at"])


def downgrade() -> None:
    for table in (
        "feedback",
        "release_revision",
        "flag_events",
        "flags",
        "rollout_decisions",
        "rollouts",
    ):
        op.drop_table(table)
