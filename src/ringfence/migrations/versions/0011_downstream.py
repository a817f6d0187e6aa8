"""Downstream: derivatives and their bases, staged release schedules, webhook subscriptions
and their durable delivery queue, reviewers' notice preferences.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ringfence.db

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviewer_notices",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("last_sent_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_reviewer_notices_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_reviewer_notices")),
    )
    op.create_table(
        "derivatives",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("relation", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("hosted_release_id", sa.Integer(), nullable=True),
        sa.Column("weights_sha256", sa.String(length=64), nullable=True),
        sa.Column("lineage", sa.String(length=16), nullable=False),
        sa.Column("lineage_note", sa.String(length=500), nullable=False),
        sa.Column("created_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["hosted_release_id"],
            ["releases.id"],
            name=op.f("fk_derivatives_hosted_release_id_releases"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_derivatives_owner_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_derivatives")),
        sa.UniqueConstraint("hosted_release_id", name=op.f("uq_derivatives_hosted_release_id")),
        sa.UniqueConstraint("name", name=op.f("uq_derivatives_name")),
    )
    with op.batch_alter_table("derivatives", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_derivatives_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "schedule_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("circle", sa.String(length=16), nullable=False),
        sa.Column("due_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("held_reason", sa.String(length=500), nullable=False),
        sa.Column("done_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_schedule_steps_release_id_releases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_steps")),
    )
    with op.batch_alter_table("schedule_steps", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_schedule_steps_release_id"), ["release_id"], unique=False
        )

    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=True),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_webhook_subscriptions_owner_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["releases.id"],
            name=op.f("fk_webhook_subscriptions_release_id_releases"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscriptions")),
    )
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_subscriptions_owner_id"), ["owner_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_subscriptions_release_id"), ["release_id"], unique=False
        )

    op.create_table(
        "derivative_bases",
        sa.Column("derivative_id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["derivative_id"],
            ["derivatives.id"],
            name=op.f("fk_derivative_bases_derivative_id_derivatives"),
        ),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_derivative_bases_release_id_releases")
        ),
        sa.PrimaryKeyConstraint("derivative_id", "release_id", name=op.f("pk_derivative_bases")),
    )
    with op.batch_alter_table("derivative_bases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_derivative_bases_release_id"), ["release_id"], unique=False
        )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=40), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.Column("delivered_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["webhook_subscriptions.id"],
            name=op.f("fk_webhook_deliveries_subscription_id_webhook_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("message_id", name=op.f("uq_webhook_deliveries_message_id")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_due", ["state", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_subscription_id"), ["subscription_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("reviewer_notices")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_subscription_id"))
        batch_op.drop_index("ix_webhook_deliveries_due")

    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("derivative_bases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_derivative_bases_release_id"))

    op.drop_table("derivative_bases")
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_subscriptions_release_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_subscriptions_owner_id"))

    op.drop_table("webhook_subscriptions")
    with op.batch_alter_table("schedule_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_schedule_steps_release_id"))

    op.drop_table("schedule_steps")
    with op.batch_alter_table("derivatives", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_derivatives_owner_id"))

    op.drop_table("derivatives")
