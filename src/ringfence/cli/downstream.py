"""Downstream commands: derivatives, staged release schedules, webhooks."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence.accounts.models import User
from ringfence.catalogue import services as catalogue
from ringfence.cli.context import services
from ringfence.cli.output import emit
from ringfence.db import transaction
from ringfence.errors import InvalidInput, NotFound

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
ACTOR = "cli"

derivatives_app = typer.Typer(help="Models built on releases, and their lineage.")
schedule_app = typer.Typer(help="Staged release schedules: planned widenings.")
webhooks_app = typer.Typer(help="Signed webhooks and their deliveries.")


def _user(session: Session, email: str) -> User:
    user = session.scalars(select(User).where(User.email == email.strip().lower())).first()
    if user is None:
        raise NotFound(f"no user {email}", hint="see `ringfence users list`")
    return user


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a date", hint="e.g. 2027-03-01 or 2027-03-01T09:00Z"
        ) from None
    # A bare date or time is UTC, as every time ringfence shows.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@derivatives_app.command("add")
def derivatives_add(
    name: str = typer.Argument(..., help="The derivative's name, e.g. uni/tiny-chat."),
    base: list[str] = typer.Option(..., "--base", help="A base release MODEL@VERSION (repeat)."),
    relation: str = typer.Option(
        "finetune", "--relation", help="finetune, adapter, merge, quantized"
    ),
    owner: str = typer.Option(
        ..., "--owner", help="The owner's e-mail (mailed when a base narrows)."
    ),
    hosted: str = typer.Option("", "--hosted", help="The release that hosts it here, if any."),
    url: str = typer.Option("", "--url", help="Where it lives outside ringfence."),
    weights_sha256: str = typer.Option("", "--weights-sha256"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Register a derivative; its lineage is checked where ringfence holds its weights."""
    from ringfence.downstream import derivatives
    from ringfence.downstream.derivatives import Registration
    from ringfence.downstream.views import derivative_out

    svc = services()
    with transaction(svc.sessions) as session:
        lab = session.scalars(select(User).where(User.role == "admin")).first()
        made = derivatives.register(
            svc,
            session,
            _user(session, owner),
            Registration(name, relation, base, url, weights_sha256, hosted),
            by=lab,  # the operator at the server's console acts for the lab
        )
        row = derivative_out(made)
    emit(row, as_json=as_json)


@derivatives_app.command("list")
def derivatives_list(
    ref: str = typer.Argument(..., help="A base release MODEL@VERSION."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The derivatives of a release, with their lineage."""
    from ringfence.downstream import derivatives
    from ringfence.downstream.views import derivative_out

    with transaction(services().sessions) as session:
        release = catalogue.get_release(session, ref)
        rows = [derivative_out(d) for d in derivatives.derivatives_of(session, release)]
    emit(rows, as_json=as_json, title="derivatives")


@schedule_app.command("add")
def schedule_add(
    ref: str = typer.Argument(..., help="MODEL@VERSION"),
    circle: str = typer.Argument(..., help="partners, research or public"),
    on: str = typer.Option(..., "--on", help="When (ISO date or time; UTC unless it says)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Plan a widening; it happens on its date only if no gate or incident holds it."""
    from ringfence.downstream import schedules

    with transaction(services().sessions) as session:
        step = schedules.plan(
            session, catalogue.get_release(session, ref), circle, _when(on), actor=ACTOR
        )
        row = {"step": step.id, "release": ref, "circle": circle, "due_at": step.due_at}
    emit(row, as_json=as_json)


@schedule_app.command("list")
def schedule_list(
    ref: str = typer.Argument("", help="MODEL@VERSION (default: every release)"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Planned and past steps, by date."""
    from ringfence.downstream import schedules

    with transaction(services().sessions) as session:
        release = catalogue.get_release(session, ref) if ref else None
        rows = [
            {
                "step": s.id,
                "release": s.release.ref,
                "circle": s.circle,
                "due_at": s.due_at,
                "state": s.state,
                "held": s.held_reason,
            }
            for s in schedules.steps(session, release)
        ]
    emit(rows, as_json=as_json, title="steps")


@schedule_app.command("run")
def schedule_run(
    now: str = typer.Option("", "--now", help="Run as if it were this time (default: now)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Take every step that is due (for cron; the server also runs it in the background)."""
    from ringfence.downstream import schedules

    svc = services()
    outcomes = schedules.run_due(svc, _when(now) if now else None)
    rows = [
        {"release": o.release, "circle": o.circle, "outcome": o.outcome, "reason": o.reason}
        for o in outcomes
    ]
    emit(rows, as_json=as_json, title="due steps")


@webhooks_app.command("add")
def webhooks_add(
    url: str = typer.Argument(..., help="The receiver's URL."),
    owner: str = typer.Option(..., "--owner", help="Whose subscription (an admin: any event)."),
    release: str = typer.Option("", "--release", help="MODEL@VERSION (default: every release)."),
    event: list[str] = typer.Option([], "--event", help="An event type (repeat; default: all)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Subscribe a receiver; prints the signing secret (whsec_...)."""
    from ringfence.webhooks import services as webhooks

    svc = services()
    with transaction(svc.sessions) as session:
        target = catalogue.get_release(session, release) if release else None
        made = webhooks.subscribe(svc, session, _user(session, owner), url, event, release=target)
        row = {
            "id": made.id,
            "url": made.url,
            "events": made.events,
            "release": release or "all",
            "secret": webhooks.secret(svc.secrets, made.id),
        }
    emit(row, as_json=as_json)


@webhooks_app.command("list")
def webhooks_list(as_json: bool = JSON_OPTION) -> None:
    """The newest deliveries and their state."""
    from ringfence.webhooks import services as webhooks

    with transaction(services().sessions) as session:
        rows = [
            {
                "id": d.id,
                "message_id": d.message_id,
                "event": d.event,
                "state": d.state,
                "attempts": d.attempts,
                "last_error": d.last_error,
            }
            for d in webhooks.deliveries(session)
        ]
    emit(rows, as_json=as_json, title="deliveries")


@webhooks_app.command("deliver")
def webhooks_deliver(
    now: str = typer.Option("", "--now", help="Deliver as if it were this time (default: now)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Send every due delivery once (for cron; the server also runs it in the background)."""
    from ringfence.webhooks import services as webhooks

    sent = webhooks.deliver_due(services(), _when(now) if now else None)
    emit({"delivered": sent}, as_json=as_json)


def register(app: typer.Typer) -> None:
    """Add the downstream commands."""
    app.add_typer(derivatives_app, name="derivatives")
    app.add_typer(schedule_app, name="schedule")
    app.add_typer(webhooks_app, name="webhooks")
