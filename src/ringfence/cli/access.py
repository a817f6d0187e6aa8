"""Access commands: licences, grants, requests, circles, policies, expiry.

Admin commands run on the server against its database (actor "cli"); `licence accept` and
`request` are client commands that talk to a server over the API with RINGFENCE_TOKEN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ringfence.access import circles, grants, licences, policy, requests, tasks
from ringfence.accounts import services as accounts
from ringfence.catalogue import services as catalogue
from ringfence.cli import accounts as cli_accounts
from ringfence.cli import organisations as cli_organisations
from ringfence.cli.context import services
from ringfence.cli.output import console, emit
from ringfence.client import ApiClient
from ringfence.db import transaction
from ringfence.errors import InvalidInput
from ringfence.organisations import services as organisations
from ringfence.wiring import Services

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
SERVER_OPTION = typer.Option(None, "--server", help="Server URL (default: RINGFENCE_URL).")
ACTOR = "cli"

licence_app = typer.Typer(help="Licences and click-through acceptance.", no_args_is_help=True)
grants_app = typer.Typer(help="Access requests and grants.", no_args_is_help=True)
circle_app = typer.Typer(help="Who may receive a release.", no_args_is_help=True)


def _deliver(svc: Services) -> None:
    cli_accounts.deliver(svc)


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
    text = file.read_text(encoding="utf-8") if file else None
    with transaction(services().sessions) as session:
        lic = licences.add_licence(session, slug, text=text, title=title, actor=ACTOR)
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
            grants.grant_record(g)
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
        row = grants.grant_record(grant)
    _deliver(svc)
    emit(row, as_json=as_json)


@grants_app.command("add")
def grants_add(
    ref: str = typer.Argument(..., help="MODEL@VERSION"),
    user: str | None = typer.Option(None, "--user", help="Grant one person."),
    institution: str | None = typer.Option(None, "--institution", help="Or an institution."),
    seats: int = typer.Option(10, "--seats", help="Seats of an institution grant."),
    days: int = typer.Option(grants.DEFAULT_GRANT_DAYS, "--days", help="Lifetime in days."),
    mode: str = typer.Option(
        "download", "--mode", help="download, or hosted: the inference endpoint only, no file."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Grant access directly; the grantee still accepts the licence before downloading."""
    if (user is None) == (institution is None):
        raise InvalidInput("give exactly one of --user or --institution")
    grants.check_mode(mode)
    if institution and mode != "download":
        raise InvalidInput("--mode hosted is for a person's grant (--user)")
    with transaction(services().sessions) as session:
        release = catalogue.get_release(session, ref)
        if user:
            row = grants.grant_record(
                grants.add_grant(
                    session,
                    release,
                    accounts.get_user(session, user),
                    days=days,
                    actor=ACTOR,
                    mode=mode,
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
    """Expire grants and pending requests that are due (the same as `ringfence expire`)."""
    expire_cmd(as_json)


def expire_cmd(as_json: bool = JSON_OPTION) -> None:
    """Expire grants past their end and pending requests past their lifetime (for cron)."""
    done = tasks.run_expiry(services(), actor=ACTOR)
    emit(
        {"grants_expired": len(done.grants), "requests_expired": len(done.requests)},
        as_json=as_json,
    )


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


policy_app = typer.Typer(help="How a release is asked for: form, rules, grant lifetime.")


@policy_app.command("show")
def policy_show(
    ref: str = typer.Argument(..., help="MODEL@VERSION"), as_json: bool = JSON_OPTION
) -> None:
    """A release's request form, auto-approval rules and grant lifetime."""
    with transaction(services().sessions) as session:
        release = catalogue.get_release(session, ref)
        row = policy.policy_record(release, policy.get_policy(session, release))
    emit(row, as_json=as_json)


@policy_app.command("set")
def policy_set(
    ref: str = typer.Argument(..., help="MODEL@VERSION"),
    fields: Path | None = typer.Option(
        None, "--fields", exists=True, dir_okay=False, help="The request form as a JSON list."
    ),
    rule: list[str] = typer.Option(
        [],
        "--rule",
        help="An auto-approval rule (repeat): staff, partner_nda, email_domain:uni.example",
    ),
    no_rules: bool = typer.Option(False, "--no-rules", help="Approve nobody automatically."),
    grant_days: int | None = typer.Option(None, "--grant-days", help="Grant lifetime in days."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Change a release's policy; the parts not given stay as they are (audited)."""
    with transaction(services().sessions) as session:
        release = catalogue.get_release(session, ref)
        changed = policy.set_policy(
            session,
            release,
            fields=policy.parse_fields(fields.read_text(encoding="utf-8")) if fields else None,
            rules=[] if no_rules else ([policy.parse_rule(r) for r in rule] or None),
            grant_days=grant_days,
            actor=ACTOR,
        )
        row = policy.policy_record(release, changed)
    emit(row, as_json=as_json)


def register(app: typer.Typer) -> None:
    """Add the access commands to the root app."""
    cli_accounts.register(app)
    cli_organisations.register(app)
    app.add_typer(licence_app, name="licence")
    app.add_typer(grants_app, name="grants")
    app.add_typer(circle_app, name="circle")
    app.add_typer(policy_app, name="policy", no_args_is_help=True)
    app.command("request")(request_cmd)
    app.command("expire")(expire_cmd)
