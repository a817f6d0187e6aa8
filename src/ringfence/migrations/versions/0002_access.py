"""Access: accounts, institutions, NDAs, licence acceptances, requests, grants.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ringfence.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "institutions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("domains", sa.JSON(), nullable=False),
        sa.Column("created_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_institutions")),
        sa.UniqueConstraint("name", name=op.f("uq_institutions_name")),
    )
    op.create_table(
        "mails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("to", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mails")),
    )
    with op.batch_alter_table("mails", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mails_to"), ["to"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=True),
        sa.Column("email_verified_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_users_institution_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_users_institution_id"), ["institution_id"], unique=False
        )

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("created_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_tokens_user_id"), ["user_id"], unique=False)

    op.create_table(
        "ndas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("document_sha256", sa.String(length=64), nullable=False),
        sa.Column("document_name", sa.String(length=200), nullable=False),
        sa.Column("signatory", sa.String(length=200), nullable=False),
        sa.Column("signed_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("countersigned_by_id", sa.Integer(), nullable=True),
        sa.Column("countersigned_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["countersigned_by_id"], ["users.id"], name=op.f("fk_ndas_countersigned_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_ndas_institution_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ndas")),
    )
    with op.batch_alter_table("ndas", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ndas_institution_id"), ["institution_id"], unique=False
        )

    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_web_sessions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_sessions_token_hash")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "access_policies",
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("grant_days", sa.Integer(), nullable=False),
        sa.Column("updated_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_access_policies_release_id_releases")
        ),
        sa.PrimaryKeyConstraint("release_id", name=op.f("pk_access_policies")),
    )
    op.create_table(
        "access_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("via", sa.String(length=8), nullable=False),
        sa.Column("decided_by", sa.String(length=320), nullable=True),
        sa.Column("decided_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("appeal", sa.Text(), nullable=True),
        sa.Column("appealed_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_access_requests_release_id_releases")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_access_requests_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_requests")),
        sa.UniqueConstraint("user_id", "release_id", name=op.f("uq_access_requests_user_id")),
    )
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.create_index("ix_access_requests_state", ["state", "release_id"], unique=False)

    op.create_table(
        "institution_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("expires_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_reason", sa.String(length=500), nullable=False),
        sa.Column("created_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_institution_grants_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_institution_grants_release_id_releases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_institution_grants")),
        sa.UniqueConstraint(
            "institution_id", "release_id", name=op.f("uq_institution_grants_institution_id")
        ),
    )
    with op.batch_alter_table("institution_grants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_institution_grants_release_id"), ["release_id"], unique=False
        )

    op.create_table(
        "licence_acceptances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("licence_id", sa.Integer(), nullable=False),
        sa.Column("licence_ref", sa.String(length=80), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("accepted_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.ForeignKeyConstraint(
            ["licence_id"], ["licences.id"], name=op.f("fk_licence_acceptances_licence_id_licences")
        ),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_licence_acceptances_release_id_releases")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_licence_acceptances_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licence_acceptances")),
    )
    with op.batch_alter_table("licence_acceptances", schema=None) as batch_op:
        batch_op.create_index(
            "ix_licence_acceptances_lookup", ["user_id", "release_id", "licence_id"], unique=False
        )

    op.create_table(
        "grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("via", sa.String(length=32), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("institution_grant_id", sa.Integer(), nullable=True),
        sa.Column("granted_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", ringfence.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", ringfence.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_grant_id"],
            ["institution_grants.id"],
            name=op.f("fk_grants_institution_grant_id_institution_grants"),
        ),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_grants_release_id_releases")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["access_requests.id"],
            name=op.f("fk_grants_request_id_access_requests"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_grants_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants")),
        sa.UniqueConstraint("user_id", "release_id", name=op.f("uq_grants_user_id")),
    )
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.create_index("ix_grants_release_state", ["release_id", "state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_index("ix_grants_release_state")

    op.drop_table("grants")
    with op.batch_alter_table("licence_acceptances", schema=None) as batch_op:
        batch_op.drop_index("ix_licence_acceptances_lookup")

    op.drop_table("licence_acceptances")
    with op.batch_alter_table("institution_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_institution_grants_release_id"))

    op.drop_table("institution_grants")
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_access_requests_state")

    op.drop_table("access_requests")
    op.drop_table("access_policies")
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_sessions_user_id"))

    op.drop_table("web_sessions")
    with op.batch_alter_table("ndas", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ndas_institution_id"))

    op.drop_table("ndas")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_user_id"))

    op.drop_table("api_tokens")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_institution_id"))

    op.drop_table("users")
    with op.batch_alter_table("mails", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mails_to"))

    op.drop_table("mails")
    op.drop_table("institutions")
