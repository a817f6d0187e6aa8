"""Organisation commands: institutions and their NDAs (server side, actor "cli")."""

from __future__ import annotations

from pathlib import Path

import typer

from ringfence.access import circles
from ringfence.accounts import services as accounts
from ringfence.cli.accounts import deliver
from ringfence.cli.context import services
from ringfence.cli.output import emit
from ringfence.db import transaction
from ringfence.organisations import services as organisations

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
ACTOR = "cli"

institutions_app = typer.Typer(help="Institutions and their email domains.", no_args_is_help=True)
nda_app = typer.Typer(help="NDAs that make an institution a partner.", no_args_is_help=True)


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


@nda_app.command("revoke")
def nda_revoke(
    nda_id: int = typer.Argument(...),
    reason: str = typer.Option(..., "--reason", help="Why it ends early (audited)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """End an NDA early: its members stop being partners at once."""
    svc = services()
    with transaction(svc.sessions) as session:
        ended = circles.revoke_nda(
            session, organisations.get_nda(session, nda_id), reason=reason, actor=ACTOR
        )
        row = organisations.nda_record(ended.nda) | {
            "institution_grants_revoked": len(ended.institution_grants)
        }
    deliver(svc)
    emit(row, as_json=as_json)


def register(app: typer.Typer) -> None:
    """Add the organisation commands to the root app."""
    app.add_typer(institutions_app, name="institutions")
    app.add_typer(nda_app, name="nda")
