"""Gates: provenance manifests, gate runs and their results, admins' overrides.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ringfence.db

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gate_provenances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("recorded_by", sa.String(length=320), nullable=False),
        sa.Column("recorded_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_gate_provenances_release_id_releases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_provenances")),
        sa.UniqueConstraint("release_id", name=op.f("uq_gate_provenances_release_id")),
    )
    op.create_table(
        "gate_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("policy", sa.String(length=128), nullable=False),
        sa.Column("widest_circle", sa.String(length=16), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("started_by", sa.String(length=320), nullable=False),
        sa.Column("started_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_gate_runs_release_id_releases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_runs")),
    )
    with op.batch_alter_table("gate_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gate_runs_release_id"), ["release_id"], unique=False)
    op.create_table(
        "gate_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("cap", sa.String(length=16), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["gate_runs.id"], name=op.f("fk_gate_results_run_id_gate_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_results")),
    )
    with op.batch_alter_table("gate_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gate_results_run_id"), ["run_id"], unique=False)
    op.create_table(
        "gate_overrides",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("circle", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=320), nullable=False),
        sa.Column("requested_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("signed_off_by", sa.String(length=320), nullable=True),
        sa.Column("signed_off_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_gate_overrides_release_id_releases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_overrides")),
    )
    with op.batch_alter_table("gate_overrides", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gate_overrides_release_id"), ["release_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("gate_overrides", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gate_overrides_release_id"))
    op.drop_table("gate_overrides")
    with op.batch_alter_table("gate_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gate_results_run_id"))
    op.drop_table("gate_results")
    with op.batch_alter_table("gate_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gate_runs_release_id"))
    op.drop_table("gate_runs")
    op.drop_table("gate_provenances")
