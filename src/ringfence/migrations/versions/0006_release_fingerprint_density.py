"""Releases keep the density their fingerprint was embedded at.

Releases published before this revision were embedded at one weight in 8 (2^-3); they keep
it, so their recipients' bytes, ETags and signed manifests never change. New releases get
the density `catalogue.models.Release` defaults to (1/16).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fingerprint_density_log2", sa.Integer(), nullable=False, server_default="3")
        )


def downgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_column("fingerprint_density_log2")
