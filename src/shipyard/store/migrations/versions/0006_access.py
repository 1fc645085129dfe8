"""access: API tokens (hashed), the audit trail of state changes made through them, and the
indexes the dashboard's runs list pages through

Revision ID: 0006_access
Revises: 0005_monitoring
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shipyard.store.models import JSONDocument, UTCDateTime

revision = "0006_access"
down_revision = "0005_monitoring"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("public_id", sa.String(32), nullable=False, unique=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False, index=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_by", sa.String(128), nullable=True),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False, index=True),
        sa.Column("token_id", sa.String(32), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", JSONDocument, nullable=False),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    # The dashboard's runs list: newest first, by pipeline or status, a page at a time.
    op.create_index("ix_runs_started_id", "runs", ["started_at", "id"])
    op.create_index("ix_runs_pipeline_started", "runs", ["pipeline", "started_at"])
    op.create_index("ix_runs_status_started", "runs", ["status", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_status_started", table_name="runs")
    op.drop_index("ix_runs_pipeline_started", table_name="runs")
    op.drop_index("ix_runs_started_id", table_name="runs")
    op.drop_index("ix_audit_events_at", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("api_tokens")
