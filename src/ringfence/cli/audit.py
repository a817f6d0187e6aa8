"""Audit commands: verify the hash chain, list events."""

from __future__ import annotations

import typer

from ringfence.audit import services as audit
from ringfence.audit.services import event_row, query_events
from ringfence.cli.context import services
from ringfence.cli.output import console, emit
from ringfence.db import transaction
from ringfence.errors import IntegrityError

audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


@audit_app.command("verify")
def verify(as_json: bool = JSON_OPTION) -> None:
    """Recompute the chain; name the first broken event and exit 1 if there is one."""
    with transaction(services().sessions) as session:
        report = audit.verify(session)
    if as_json:
        emit(
            {
                "ok": report.ok,
                "events": report.events,
                "broken_seq": report.broken_seq,
                "reason": report.reason,
            },
            as_json=True,
        )
        if not report.ok:
            raise typer.Exit(1)
        return
    if not report.ok:
        raise IntegrityError(
            f"the audit chain is broken at event {report.broken_seq}: {report.reason}",
            hint="the log was altered after it was written; restore it from a backup and "
            "investigate",
        )
    console.print(f"audit chain intact: {report.events} events")


@audit_app.command("list")
def list_events(
    tag: str = typer.Option("", "--tag", help="Tag or prefix, e.g. access:grant"),
    actor: str = typer.Option("", "--actor"),
    subject: str = typer.Option("", "--subject", help="Subject contains this."),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = JSON_OPTION,
) -> None:
    """The newest events, filtered."""
    with transaction(services().sessions) as session:
        rows = [
            event_row(e)
            for e in query_events(session, tag=tag, actor=actor, subject=subject, limit=limit)
        ]
    emit(rows, as_json=as_json, title="events")


def register(app: typer.Typer) -> None:
    """Add the audit commands."""
    app.add_typer(audit_app, name="audit")
