"""Distribution: signed download links and per-recipient signed manifests.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ringfence.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "download_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("byte_budget", sa.BigInteger(), nullable=False),
        sa.Column("bytes_served", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("revoked_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["grants.id"], name=op.f("fk_download_links_grant_id_grants")
        ),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_download_links_release_id_releases")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_download_links_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_download_links")),
        sa.UniqueConstraint("nonce", name=op.f("uq_download_links_nonce")),
    )
    with op.batch_alter_table("download_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_download_links_grant_id"), ["grant_id"], unique=False)

    op.create_table(
        "recipient_manifests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("root_sha256", sa.String(length=64), nullable=True),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("bundle", sa.Text(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("created_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("computed_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["releases.id"],
            name=op.f("fk_recipient_manifests_release_id_releases"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_recipient_manifests_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipient_manifests")),
        sa.UniqueConstraint(
            "release_id", "user_id", name=op.f("uq_recipient_manifests_release_id")
        ),
    )
    with op.batch_alter_table("recipient_manifests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recipient_manifests_release_id"), ["release_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("recipient_manifests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recipient_manifests_release_id"))
    op.drop_table("recipient_manifests")
    with op.batch_alter_table("download_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_download_links_grant_id"))
    op.drop_table("download_links")
