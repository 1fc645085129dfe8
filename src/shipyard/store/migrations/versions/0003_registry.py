"""the model registry: models, versions, aliases and their history, gate results

Revision ID: 0003_registry
Revises: 0002_runs
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shipyard.store.models import JSONDocument, UTCDateTime

revision = "0003_registry"
down_revision = "0002_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("registered_models.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("flavor", sa.String(32), nullable=False),
        sa.Column("artifact", sa.String(64), nullable=False),
        sa.Column("files", JSONDocument, nullable=False),
        sa.Column("flavor_meta", JSONDocument, nullable=False),
        sa.Column("signature", JSONDocument, nullable=True),
        sa.Column("run_id", sa.String(32), nullable=True),
        sa.Column("datasets", JSONDocument, nullable=False),
        sa.Column("dependencies", JSONDocument, nullable=False),
        sa.Column("metrics", JSONDocument, nullable=False),
        sa.Column("params", JSONDocument, nullable=False),
        sa.Column("onnx", JSONDocument, nullable=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_number"),
        sa.UniqueConstraint("model_id", "artifact", name="uq_model_versions_artifact"),
    )
    op.create_index("ix_model_versions_model_id", "model_versions", ["model_id"])
    op.create_index("ix_model_versions_artifact", "model_versions", ["artifact"])
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"])
    op.create_table(
        "model_aliases",
        sa.Column(
            "model_id", sa.Integer(), sa.ForeignKey("registered_models.id"), primary_key=True
        ),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("set_at", UTCDateTime(), nullable=False),
        sa.Column("set_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("registered_models.id"), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("previous", sa.Integer(), nullable=True),
        sa.Column("user", sa.String(128), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_alias_events_model_id", "alias_events", ["model_id"])
    op.create_table(
        "gate_results",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("report_id", sa.String(32), nullable=False),
        sa.Column("policy", sa.String(128), nullable=False),
        sa.Column("gate", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("details", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
    )
    op.create_index("ix_gate_results_version_id", "gate_results", ["version_id"])
    op.create_index("ix_gate_results_report_id", "gate_results", ["report_id"])


def downgrade() -> None:
    for table in (
        "gate_results",
        "alias_events",
        "model_aliases",
        "model_versions",
        "registered_models",
    ):
        op.drop_table(table)
