"""Releases keep the fingerprint parameters they were published with.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "fingerprint_recipients", sa.BigInteger(), nullable=False, server_default="1000000"
            )
        )
        batch_op.add_column(
            sa.Column("fingerprint_colluders", sa.Integer(), nullable=False, server_default="8")
        )
        batch_op.add_column(
            sa.Column("fingerprint_bound", sa.Float(), nullable=False, server_default="1e-09")
        )


def downgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_column("fingerprint_bound")
        batch_op.drop_column("fingerprint_colluders")
        batch_op.drop_column("fingerprint_recipients")
