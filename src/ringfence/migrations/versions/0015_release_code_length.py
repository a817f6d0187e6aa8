"""Releases keep the length of their fingerprint code.

New releases get a code as long as their matrices can carry (`fingerprint.plan.fitted_length`),
up to four times the least length their recipients, colluders and bound need. Releases
published before this revision have 0 here: the least length, which is what they were
embedded with, so their recipients' bytes, ETags and signed manifests never change.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fingerprint_code_length", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_column("fingerprint_code_length")
