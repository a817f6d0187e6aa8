"""Access commands: users, institutions, NDAs, tokens, licences, grants, circles, requests.

Admin commands run on the server against its database (actor "cli"); `licence accept` and
`request` are client commands that talk to a server over the API with RINGFENCE_TOKEN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ringfence.access import circles, grants, licences, requests
from ringfence.access.client import ApiClient
from ringfence.access.models import Grant
from ringfence.accounts import services as accounts
from ringfence.accounts import tokens, two_factor
from ringfence.accounts.models import User
from ringfence.catalogue import services as catalogue
from ringfence.cli.context import services
from ringfence.cli.output import console, emit
from ringfence.db import transaction
from ringfence.errors import InvalidInput
from ringfence.organisations import services as organisations
from ringfence.wiring import Services

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
SERVER_OPTION = typer.Option(None, "--server", help="Server URL (default: RINGFENCE_URL).")
ACTOR = "cli"

users_app = typer.Typer(help="Accounts and roles.", no_args_is_help=True)
institutions_app = typer.Typer(help="Institutions and their email domains.", no_args_is_help=True)
nda_app = typer.Typer(help="NDAs that make an institution a partner.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens (shown once).", no_args_is_help=True)
licence_app = typer.Typer(help="Licences and click-through acceptance.", no_args_is_help=True)
grants_app = typer.Typer(help="Access requests and grants.", no_args_is_help=True)
circle_app = typer.Typer(help="Who may receive a release.", no_args_is_help=True)


def _deliver(svc: Services) -> None:
    # Mails were queued in the committed transaction; send them now (SMTP backend).
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


def grant_row(grant: Grant) -> dict[str, Any]:
    """A grant as one flat record."""
    return {
        "id": grant.id,
        "release": grant.release.ref,
        "user": grant.user.email,
        "state": grant.state,
        "via": grant.via,
        "expires_at": grant.expires_at.isoformat(timespec="seconds"),
        "revoked_reason": grant.revoked_reason,
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
    _deliver(svc)
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
    _deliver(svc)
    emit(row, as_json=as_json)


@institutions_app.command("add")
def institutions_add(
    name: str = typer.Argument(...),
    domain: list[str] = typer.Option([], "--domain", help="A verified email domain (repeat)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Record an institution and the email domains you verified as its own."""
    with transaction(services().sessions) as session:
        inst = organisations.add_institution(session, name, domain, actor=ACTOR)
        row = {"name": inst.name, "domains": inst.domains}
    emit(row, as_json=as_json)


@institutions_app.command("list")
def institutions_list(as_json: bool = JSON_OPTION) -> None:
    """Every institution."""
    with transaction(services().sessions) as session:
        rows = [
            {"name": i.name, "domains": ", ".join(i.domains)}
            for i in organisations.list_institutions(session)
        ]
    emit(rows, as_json=as_json, title="institutions")


@nda_app.command("add")
def nda_add(
    institution: str = typer.Argument(...),
    document: Path = typer.Option(
        ..., "--document", exists=True, dir_okay=False, help="The signed NDA (PDF or scan)."
    ),
    signatory: str = typer.Option(..., "--signatory", help="Who signed for the institution."),
    expires: str = typer.Option(..., "--expires", help="Expiry date, YYYY-MM-DD."),
    countersign: str | None = typer.Option(None, "--countersign-by", help="Admin's email."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Record a signed NDA; it is active once a lab admin countersigns it."""
    svc = services()
    with transaction(svc.sessions) as session:
        nda = organisations.record_nda(
            session,
            svc.blobs,
            organisations.get_institution(session, institution),
            document=document.read_bytes(),
            document_name=document.name,
            signatory=signatory,
            expires_at=organisations.parse_date(expires, "expires"),
            actor=ACTOR,
        )
        if countersign:
            organisations.countersign_nda(session, nda, accounts.get_user(session, countersign))
        row = organisations.nda_record(nda)
    emit(row, as_json=as_json)


@nda_app.command("countersign")
def nda_countersign(
    nda_id: int = typer.Argument(...),
    by: str = typer.Option(..., "--by", help="The countersigning admin's email."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Countersign an NDA as a lab admin."""
    with transaction(services().sessions) as session:
        nda = organisations.countersign_nda(
            session, organisations.get_nda(session, nda_id), accounts.get_user(session, by)
        )
        row = organisations.nda_record(nda)
    emit(row, as_json=as_json)


@nda_app.command("list")
def nda_list(as_json: bool = JSON_OPTION) -> None:
    """Every NDA."""
    with transaction(services().sessions) as session:
        rows = [organisations.nda_record(n) for n in organisations.list_ndas(session)]
    emit(rows, as_json=as_json, title="NDAs")


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


@licence_app.command("add")
def licence_add(
    slug: str = typer.Argument(..., help="e.g. research-only"),
    file: Path | None = typer.Option(
        None,
        "--file",
        exists=True,
        dir_okay=False,
        help="Markdown text (default: the shipped template).",
    ),
    title: str | None = typer.Option(None, "--title"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add the next version of a licence (same text as the newest version: no-op)."""
    if file is None and slug != licences.RESEARCH_ONLY:
        raise InvalidInput("give the licence text with --file", hint="a markdown file")
    text = file.read_text(encoding="utf-8") if file else licences.shipped_licence_text()
    heading = text.strip().splitlines()[0].lstrip("# ").strip() if text.strip() else slug
    with transaction(services().sessions) as session:
        lic = catalogue.add_licence(session, slug, title or heading, text, ACTOR)
        row = {"licence": lic.ref, "title": lic.title, "sha256": lic.sha256}
    emit(row, as_json=as_json)


@licence_app.command("set")
def licence_set(
    ref: str = typer.Argument(..., help="MODEL@VERSION"),
    licence: str = typer.Argument(..., help="SLUG[@VERSION]"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Name a release's licence; every holder must accept it before the next download."""
    svc = services()
    with transaction(svc.sessions) as session:
        release = catalogue.get_release(session, ref)
        mailed = licences.set_release_licence(
            session,
            release,
            catalogue.get_licence(session, licence),
            actor=ACTOR,
            base_url=svc.settings.base_url,
        )
        row = {"release": release.ref, "licence": licence, "holders_notified": mailed}
    _deliver(svc)
    emit(row, as_json=as_json)


@licence_app.command("accept")
def licence_accept(
    ref: str = typer.Argument(..., help="MODEL@VERSION"),
    server: str | None = SERVER_OPTION,
    yes: bool = typer.Option(False, "--yes", help="Accept without showing the text."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Read and accept a release's licence (client command; uses RINGFENCE_TOKEN)."""
    name, version = catalogue.parse_ref(ref)
    client = ApiClient.from_env(server)
    status = client.get(f"/api/v1/access/releases/{name}/{version}")
    licence = status.get("licence")
    if not licence:
        raise InvalidInput(f"{ref} has no licence to accept")
    if not yes:
        console.print(licence["text"], markup=False)
        typer.confirm(f"Accept {licence['ref']} for {ref}?", abort=True)
    result = client.post(
        f"/api/v1/access/releases/{name}/{version}/licence", json={"sha256": licence["sha256"]}
    )
    emit(result, as_json=as_json)


def request_cmd(
    ref: str = typer.Argument(..., help="MODEL@VERSION"),
    field: list[str] = typer.Option([], "--field", help="NAME=VALUE for the request form."),
    accept_licence: bool = typer.Option(
        False, "--accept-licence", help="Also accept the licence now."
    ),
    server: str | None = SERVER_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Ask for access to a release (client command; uses RINGFENCE_TOKEN)."""
    name, version = catalogue.parse_ref(ref)
    answers: dict[str, str] = {}
    for item in field:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"--field {item!r}: write NAME=VALUE")
        answers[key.strip()] = value
    client = ApiClient.from_env(server)
    body: dict[str, Any] = {"answers": answers}
    if accept_licence:
        status = client.get(f"/api/v1/access/releases/{name}/{version}")
        if status.get("licence"):
            body["licence_sha256"] = status["licence"]["sha256"]
    result = client.post(f"/api/v1/access/releases/{name}/{version}/requests", json=body)
    emit(result, as_json=as_json)


@grants_app.command("list")
def grants_list(
    release: str | None = typer.Option(None, "--release", help="MODEL@VERSION"),
    user: str | None = typer.Option(None, "--user"),
    state: str | None = typer.Option(None, "--state", help="active, revoked or expired."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Grants, newest first."""
    with transaction(services().sessions) as session:
        rows = [
            grant_row(g)
            for g in grants.list_grants(
                session,
                release=catalogue.get_release(session, release) if release else None,
                user=accounts.get_user(session, user) if user else None,
                state=state,
            )
        ]
    emit(rows, as_json=as_json, title="grants")


@grants_app.command("requests")
def grants_requests(
    state: str = typer.Option("pending", "--state"),
    release: str | None = typer.Option(None, "--release", help="MODEL@VERSION"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Access requests in the review queue."""
    with transaction(services().sessions) as session:
        rows = [
            requests.request_record(r)
            for r in requests.review_queue(
                session,
                state=state or None,
                release=catalogue.get_release(session, release) if release else None,
            )
        ]
    emit(rows, as_json=as_json, title="requests")


def _decide(request_ids: list[int], approve: bool, reason: str, as_json: bool) -> None:
    svc = services()
    with transaction(svc.sessions) as session:
        outcomes = requests.decide_many(
            session,
            request_ids,
            approve=approve,
            reviewer=None,
            actor=ACTOR,
            reason=reason,
            base_url=svc.settings.base_url,
        )
    _deliver(svc)
    rows = [{"request": o.request_id, "state": o.state, "error": o.error or ""} for o in outcomes]
    emit(rows, as_json=as_json, title="decisions")
    if any(o.error for o in outcomes):
        raise typer.Exit(1)


@grants_app.command("approve")
def grants_approve(
    request_ids: list[int] = typer.Argument(..., help="Request ids."),
    reason: str = typer.Option("", "--reason"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Approve pending requests (each gets a grant)."""
    _decide(request_ids, True, reason, as_json)


@grants_app.command("reject")
def grants_reject(
    request_ids: list[int] = typer.Argument(..., help="Request ids."),
    reason: str = typer.Option(..., "--reason", help="Why; the requester reads it."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Reject pending requests with a reason."""
    _decide(request_ids, False, reason, as_json)


@grants_app.command("revoke")
def grants_revoke(
    grant_id: int = typer.Argument(...),
    reason: str = typer.Option(..., "--reason", help="Why; the grantee reads it."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke a grant; downloads stop on the next request."""
    svc = services()
    with transaction(svc.sessions) as session:
        grant = grants.revoke_grant(
            session, grants.get_grant(session, grant_id), reason=reason, actor=ACTOR
        )
        row = grant_row(grant)
    _deliver(svc)
    emit(row, as_json=as_json)


@grants_app.command("add")
def grants_add(
    ref: str = typer.Argument(..., help="MODEL@VERSION"),
    user: str | None = typer.Option(None, "--user", help="Grant one person."),
    institution: str | None = typer.Option(None, "--institution", help="Or an institution."),
    seats: int = typer.Option(10, "--seats", help="Seats of an institution grant."),
    days: int = typer.Option(grants.DEFAULT_GRANT_DAYS, "--days", help="Lifetime in days."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Grant access directly; the grantee still accepts the licence before downloading."""
    if (user is None) == (institution is None):
        raise InvalidInput("give exactly one of --user or --institution")
    with transaction(services().sessions) as session:
        release = catalogue.get_release(session, ref)
        if user:
            row = grant_row(
                grants.add_grant(
                    session, release, accounts.get_user(session, user), days=days, actor=ACTOR
                )
            )
        else:
            org = grants.add_institution_grant(
                session,
                organisations.get_institution(session, institution or ""),
                release,
                seats=seats,
                days=days,
                actor=ACTOR,
            )
            row = {
                "id": org.id,
                "release": release.ref,
                "institution": institution,
                "seats": org.seats,
                "expires_at": org.expires_at.isoformat(timespec="seconds"),
            }
    emit(row, as_json=as_json)


@grants_app.command("expire")
def grants_expire(as_json: bool = JSON_OPTION) -> None:
    """Mark grants past their expiry date as expired."""
    with transaction(services().sessions) as session:
        count = grants.expire_due(session, actor=ACTOR)
    emit({"expired": count}, as_json=as_json)


@circle_app.command("set")
def circle_set(
    ref: str = typer.Argument(..., help="MODEL@VERSION"),
    circle: str = typer.Argument(..., help="in-house, partners, research or public"),
    reason: str = typer.Option("", "--reason", help="Why; affected grantees read it."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Set a release's circle; narrowing revokes every grant outside it in one transaction."""
    svc = services()
    with transaction(svc.sessions) as session:
        change = circles.set_circle(
            session, catalogue.get_release(session, ref), circle, reason=reason, actor=ACTOR
        )
    _deliver(svc)
    emit(
        {
            "release": change.release,
            "from": change.before,
            "to": change.after,
            "revoked": change.revoked,
        },
        as_json=as_json,
    )


@circle_app.command("show")
def circle_show(ref: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """A release's circle and how many grants are active."""
    with transaction(services().sessions) as session:
        release = catalogue.get_release(session, ref)
        active = grants.list_grants(session, release=release, state="active", limit=100_000)
        row = {"release": release.ref, "circle": release.circle, "active_grants": len(active)}
    emit(row, as_json=as_json)


def register(app: typer.Typer) -> None:
    """Add the access commands to the root app."""
    app.add_typer(users_app, name="users")
    app.add_typer(institutions_app, name="institutions")
    app.add_typer(nda_app, name="nda")
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(licence_app, name="licence")
    app.add_typer(grants_app, name="grants")
    app.add_typer(circle_app, name="circle")
    app.command("request")(request_cmd)
