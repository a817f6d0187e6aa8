"""Security: grant issuances that links belong to, and rate-limit hits kept in the database.

- `grants.issuance` counts how often a grant row was (re-)issued; a download link records
  the issuance it was made under, so a link from before a revocation stays dead after the
  grant is approved again (the row and its id are reused).
- `rate_limit_hits` holds one row per counted event (a mail sent to an address, from an IP),
  so limits hold across several server processes.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ringfence.db import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("issuance", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("download_links", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("grant_issuance", sa.Integer(), nullable=False, server_default="1")
        )
    op.create_table(
        "rate_limit_hits",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_rate_limit_hits_key_at", "rate_limit_hits", ["key", "at"])


def downgrade() -> None:
    op.drop_index("ix_rate_limit_hits_key_at", table_name="rate_limit_hits")
    op.drop_table("rate_limit_hits")
    with op.batch_alter_table("download_links", schema=None) as batch_op:
        batch_op.drop_column("grant_issuance")
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_column("issuance")
