"""Evidence by id: audit events name the user they concern; recipients' file hashes indexed.

`audit_events.user_id` is filled by `record(..., user_id=)` from now on and is part of the
chained content only where it is set, so events written before this revision keep their
hashes and `audit verify` passes over a chain that spans it. Old events are not backfilled:
writing an id into them would change what their hash covers.

`recipient_file_hashes` holds one row per file of every ready recipient manifest, so an
exact copy is found by an indexed lookup of its sha256; it is filled here from the
manifests already computed.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_audit_events_user_id"), ["user_id"], unique=False)
    hashes = op.create_table(
        "recipient_file_hashes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["releases.id"],
            name=op.f("fk_recipient_file_hashes_release_id_releases"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_recipient_file_hashes_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipient_file_hashes")),
        sa.UniqueConstraint(
            "release_id", "user_id", "path", name=op.f("uq_recipient_file_hashes_release_id")
        ),
    )
    with op.batch_alter_table("recipient_file_hashes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recipient_file_hashes_sha256"), ["sha256"], unique=False
        )
    rows = op.get_bind().execute(
        sa.text("SELECT release_id, user_id, files FROM recipient_manifests WHERE state = 'ready'")
    )
    found: list[dict[str, Any]] = []
    for release_id, user_id, files in rows:
        if isinstance(files, str):  # SQLite hands the JSON column back as text
            files = json.loads(files)
        found += [
            {"sha256": digest, "release_id": release_id, "user_id": user_id, "path": path}
            for path, digest in (files or {}).items()
        ]
    if found:
        op.bulk_insert(hashes, found)


def downgrade() -> None:
    with op.batch_alter_table("recipient_file_hashes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recipient_file_hashes_sha256"))
    op.drop_table("recipient_file_hashes")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_user_id"))
        batch_op.drop_column("user_id")
