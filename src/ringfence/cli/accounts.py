"""Account commands: users and roles, two-factor resets, API tokens (server side, actor "cli")."""

from __future__ import annotations

from typing import Any

import typer

from ringfence.accounts import services as accounts
from ringfence.accounts import tokens, two_factor
from ringfence.accounts.models import User
from ringfence.cli.context import services
from ringfence.cli.output import console, emit
from ringfence.db import transaction
from ringfence.wiring import Services

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
ACTOR = "cli"

users_app = typer.Typer(help="Accounts and roles.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens (shown once).", no_args_is_help=True)


def deliver(svc: Services) -> None:
    """Send the mails the committed transaction queued (SMTP backend)."""
    svc.mailer.deliver_pending(svc.sessions)


def user_row(user: User) -> dict[str, Any]:
    """A user as one flat record."""
    return {
        "email": user.email,
        "role": user.role,
        "institution": user.institution.name if user.institution else None,
        "verified": user.email_verified,
        "active": user.is_active,
        "two_factor": user.two_factor_enabled,
        "created_at": user.created_at.isoformat(timespec="seconds"),
    }


@users_app.command("add")
def users_add(
    email: str = typer.Argument(..., help="The person's email address."),
    role: str = typer.Option("member", "--role", help="admin, reviewer, staff or member."),
    institution: str | None = typer.Option(None, "--institution", help="Institution name."),
    name: str = typer.Option("", "--name", help="Display name."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add a person (verified by you); they get a mail to choose a password."""
    svc = services()
    with transaction(svc.sessions) as session:
        user = accounts.add_user(
            session,
            svc.secrets,
            email,
            role=role,
            institution=institution,
            name=name,
            actor=ACTOR,
            base_url=svc.settings.base_url,
        )
        row = user_row(user)
    deliver(svc)
    emit(row, as_json=as_json)


@users_app.command("list")
def users_list(as_json: bool = JSON_OPTION) -> None:
    """Every user."""
    with transaction(services().sessions) as session:
        rows = [user_row(u) for u in accounts.list_users(session)]
    emit(rows, as_json=as_json, title="users")


@users_app.command("set")
def users_set(
    email: str = typer.Argument(...),
    role: str | None = typer.Option(None, "--role"),
    institution: str | None = typer.Option(None, "--institution", help='"" clears it.'),
    active: bool | None = typer.Option(None, "--active/--disabled"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Change a user's role, institution or whether the account is active."""
    with transaction(services().sessions) as session:
        user = accounts.update_user(
            session, email, role=role, institution=institution, active=active, actor=ACTOR
        )
        row = user_row(user)
    emit(row, as_json=as_json)


@users_app.command("two-factor-reset")
def users_two_factor_reset(
    email: str = typer.Argument(...),
    reason: str = typer.Option(
        ..., "--reason", help="Why, e.g. how you confirmed who lost the device; they read it."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Turn someone's two-factor sign-in off (a lost device) and sign them out; audited, mailed."""
    svc = services()
    with transaction(svc.sessions) as session:
        user = accounts.get_user(session, email)
        two_factor.reset(session, user, reason=reason, actor=ACTOR)
        row = user_row(user)
    deliver(svc)
    emit(row, as_json=as_json)


@tokens_app.command("create")
def tokens_create(
    user: str = typer.Option(..., "--user", help="Whose token."),
    scope: str = typer.Option("read", "--scope", help="read, download or admin."),
    name: str = typer.Option("", "--name", help="What it is for."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an API token and print it once (only its hash is kept)."""
    with transaction(services().sessions) as session:
        new = tokens.create_token(
            session, accounts.get_user(session, user), scope, name=name, actor=ACTOR
        )
        row = {"id": new.token.id, "user": user, "scope": scope, "token": new.raw}
    if as_json:
        emit(row, as_json=True)
    else:
        console.print(f"token for {user} (scope {scope}); copy it now, it is not shown again:")
        print(new.raw)


@tokens_app.command("list")
def tokens_list(user: str = typer.Option(..., "--user"), as_json: bool = JSON_OPTION) -> None:
    """A user's tokens (never the secrets)."""
    with transaction(services().sessions) as session:
        rows = [
            {
                "id": t.id,
                "prefix": t.prefix,
                "scope": t.scope,
                "name": t.name,
                "revoked": t.revoked_at is not None,
                "last_used_at": t.last_used_at.isoformat(timespec="seconds")
                if t.last_used_at
                else None,
            }
            for t in tokens.list_tokens(session, accounts.get_user(session, user))
        ]
    emit(rows, as_json=as_json, title="tokens")


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: int = typer.Argument(...),
    user: str = typer.Option(..., "--user"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke a token."""
    with transaction(services().sessions) as session:
        token = tokens.revoke_token(
            session, accounts.get_user(session, user), token_id, actor=ACTOR
        )
        row = {"id": token.id, "revoked": True}
    emit(row, as_json=as_json)


def register(app: typer.Typer) -> None:
    """Add the account commands to the root app."""
    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")
