"""Fingerprint: recipients of fingerprinted copies and their issuances.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ringfence.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fingerprint_recipients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("created_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["releases.id"],
            name=op.f("fk_fingerprint_recipients_release_id_releases"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fingerprint_recipients")),
        sa.UniqueConstraint(
            "release_id", "index", name=op.f("uq_fingerprint_recipients_release_id")
        ),
        sa.UniqueConstraint(
            "release_id", "email", name="uq_fingerprint_recipients_release_id_email"
        ),
    )
    with op.batch_alter_table("fingerprint_recipients", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fingerprint_recipients_release_id"), ["release_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("fingerprint_recipients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fingerprint_recipients_release_id"))
    op.drop_table("fingerprint_recipients")
