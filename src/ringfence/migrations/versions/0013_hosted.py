"""Hosted-only access: a grant's mode, per-grant quotas, backends per release, the call log.

`grants.mode` is "download" (the default, every grant before this revision) or "hosted": a
hosted grant is refused by every distribution route and opens only the inference endpoint.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ringfence.db

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mode", sa.String(length=16), nullable=False, server_default="download")
        )
    op.create_table(
        "hosted_quotas",
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("requests_per_minute", sa.Integer(), nullable=False),
        sa.Column("tokens_per_minute", sa.Integer(), nullable=False),
        sa.Column("tokens_per_day", sa.Integer(), nullable=False),
        sa.Column("parallel", sa.Integer(), nullable=False),
        sa.Column("max_tokens", sa.Integer(), nullable=False),
        sa.Column("keep_text", sa.Boolean(), nullable=False),
        sa.Column("updated_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["grants.id"], name=op.f("fk_hosted_quotas_grant_id_grants")
        ),
        sa.PrimaryKeyConstraint("grant_id", name=op.f("pk_hosted_quotas")),
    )
    op.create_table(
        "hosted_backends",
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=False),
        sa.Column("upstream_model", sa.String(length=200), nullable=False),
        sa.Column("key_env", sa.String(length=100), nullable=False),
        sa.Column("updated_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_hosted_backends_release_id_releases")
        ),
        sa.PrimaryKeyConstraint("release_id", name=op.f("pk_hosted_backends")),
    )
    op.create_table(
        "hosted_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("prompt_sha256", sa.String(length=64), nullable=False),
        sa.Column("output_sha256", sa.String(length=64), nullable=False),
        sa.Column("prompt_text", sa.Text(), nullable=True),
        sa.Column("output_text", sa.Text(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["grants.id"], name=op.f("fk_hosted_calls_grant_id_grants")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_hosted_calls_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_hosted_calls_release_id_releases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hosted_calls")),
    )
    with op.batch_alter_table("hosted_calls", schema=None) as batch_op:
        batch_op.create_index(
            "ix_hosted_calls_grant_started", ["grant_id", "started_at"], unique=False
        )
        batch_op.create_index("ix_hosted_calls_grant_state", ["grant_id", "state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hosted_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_hosted_calls_grant_state")
        batch_op.drop_index("ix_hosted_calls_grant_started")
    op.drop_table("hosted_calls")
    op.drop_table("hosted_backends")
    op.drop_table("hosted_quotas")
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_column("mode")
