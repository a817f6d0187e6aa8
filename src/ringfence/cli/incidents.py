"""Incident commands: `ringfence incident open|list|show|trace|revoke|notice|pack|verify|close`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ringfence.cli.context import services
from ringfence.cli.output import console, emit
from ringfence.db import transaction
from ringfence.errors import InvalidInput

ACTOR = "cli"
incident_app = typer.Typer(
    help="Leak incidents: evidence, actions, takedown notices.", no_args_is_help=True
)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
ID = typer.Argument(..., metavar="ID", help="The incident's number.")


@incident_app.command("open")
def open_(
    kind: str = typer.Option(..., "--kind", help="file, url or endpoint"),
    source: str = typer.Option(
        ..., "--source", help="Where it was seen: a URL, an endpoint, a file name."
    ),
    release: str | None = typer.Option(None, "--release", metavar="MODEL@VERSION"),
    summary: str = typer.Option("", "--summary"),
    no_hold: bool = typer.Option(False, "--no-hold", help="Do not hold the release from widening."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Open an incident from a leak report."""
    from ringfence.incidents import services as incidents

    with transaction(services().sessions) as session:
        incident = incidents.open_incident(
            session,
            kind=kind,
            source=source,
            summary=summary,
            release_ref=release,
            holds_widening=not no_hold,
            actor=ACTOR,
        )
        row = incidents.incident_record(incident)
    emit(row, as_json=as_json)


@incident_app.command("list")
def list_(
    state: str = typer.Option("", "--state", help="open or closed"), as_json: bool = JSON_OPTION
) -> None:
    """Incidents, newest first."""
    from ringfence.incidents import services as incidents

    with transaction(services().sessions) as session:
        rows = [
            incidents.incident_record(i) for i in incidents.list_incidents(session, state=state)
        ]
    emit(rows, as_json=as_json, title="incidents")


@incident_app.command("show")
def show(incident_id: int = ID, as_json: bool = JSON_OPTION) -> None:
    """One incident: evidence with custody, implicated recipients, actions."""
    from ringfence.incidents import services as incidents

    with transaction(services().sessions) as session:
        doc = incidents.show(session, incidents.get_incident(session, incident_id))
    if as_json:
        emit(doc, as_json=True)
        return
    emit(
        {k: v for k, v in doc.items() if k not in ("evidence", "implicated", "actions")},
        as_json=False,
    )
    for e in doc["evidence"]:
        console.print(
            f"[bold]evidence #{e['id']}[/bold] {e['kind']}: {e['name']} {e['sha256'] or ''}"
        )
        for step in e["custody"]:
            console.print(
                f"  {step['at']} {step['step']} by {step['actor']} from {step['ip'] or '-'}"
            )
    for r in doc["implicated"]:
        grants = ", ".join(f"#{g['id']} {g['state']}" for g in r["grants"]) or "no grant"
        console.print(f"[red bold]implicated[/red bold]: {r['recipient']} ({grants})")
    for a in doc["actions"]:
        console.print(f"[bold]action[/bold]: {a['at']} {a['kind']} {a['detail']}")


@incident_app.command("trace")
def trace(
    incident_id: int = ID,
    paths: list[Path] = typer.Argument(
        ..., metavar="PATH...", help="Suspect files or directories."
    ),
    release: str | None = typer.Option(None, "--release", metavar="MODEL@VERSION"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Record suspect files in the incident, trace them, attach the report."""
    from ringfence.incidents import services as incidents

    svc = services()
    with transaction(svc.sessions) as session:
        incident = incidents.get_incident(session, incident_id)
        evidence, _ = incidents.trace_suspect(
            svc, session, incident, paths, release_ref=release, actor=ACTOR
        )
        row = incidents.evidence_record(evidence)
    if as_json:
        emit(row, as_json=True)
        return
    console.print(row["payload"]["message"], highlight=False)
    for a in row["payload"]["accused"]:
        console.print(f"[red bold]accused[/red bold]: {a['recipient']}")


@incident_app.command("attribute")
def attribute(
    incident_id: int = ID,
    endpoint: str = typer.Option(..., "--endpoint", help="Base URL, e.g. https://host/v1"),
    model: str = typer.Option(..., "--model", help="The model name the endpoint serves."),
    api_key_env: str = typer.Option(
        "OPENAI_API_KEY", "--api-key-env", help="The variable holding the endpoint's key."
    ),
    release: str | None = typer.Option(None, "--release", metavar="MODEL@VERSION"),
    budget: int = typer.Option(32, "--budget", help="Most queries to send."),
    alpha: float = typer.Option(0.01, "--alpha", help="Significance level."),
    mode: str = typer.Option("auto", "--mode", help="auto, logprobs or text"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Ask an OpenAI-compatible endpoint whether it serves the release (black box)."""
    import os

    from ringfence.incidents import services as incidents

    svc = services()
    with transaction(svc.sessions) as session:
        evidence = incidents.attribute_endpoint(
            svc,
            session,
            incidents.get_incident(session, incident_id),
            endpoint=endpoint,
            model=model,
            api_key=os.environ.get(api_key_env, ""),
            release_ref=release,
            budget=budget,
            alpha=alpha,
            mode=mode,
            actor=ACTOR,
        )
        report = evidence.payload
    if as_json:
        emit(report, as_json=True)
        return
    console.print(f"[bold]{report['verdict']}[/bold]: {report['message']}", highlight=False)


@incident_app.command("revoke")
def revoke(
    incident_id: int = ID,
    grant_id: int = typer.Option(..., "--grant", help="The grant to revoke."),
    reason: str = typer.Option(..., "--reason"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke a grant the incident implicates."""
    from ringfence.incidents import services as incidents

    svc = services()
    with transaction(svc.sessions) as session:
        action = incidents.revoke_implicated_grant(
            session,
            incidents.get_incident(session, incident_id),
            grant_id,
            reason=reason,
            actor=ACTOR,
        )
        row = incidents.action_record(action)
    svc.mailer.deliver_pending(svc.sessions)
    emit(row, as_json=as_json)


@incident_app.command("notice")
def notice_(
    incident_id: int = ID,
    draft: bool = typer.Option(False, "--draft", help="Draft it again from the evidence."),
    text: Path | None = typer.Option(None, "--text", help="Replace it with this file's text."),
    send_to: str | None = typer.Option(None, "--send-to", help="Send it to this address."),
    html: Path | None = typer.Option(None, "--html", help="Also write it as a printable page."),
) -> None:
    """Draft, edit, print or send the takedown notice."""
    from ringfence.incidents import notice
    from ringfence.incidents import services as incidents

    svc = services()
    with transaction(svc.sessions) as session:
        incident = incidents.get_incident(session, incident_id)
        if draft or not incident.notice:
            notice.draft(session, incident, svc.settings, actor=ACTOR)
        if text is not None:
            notice.edit(session, incident, _read(text), actor=ACTOR)
        if send_to is not None:
            notice.send(session, incident, send_to, actor=ACTOR)
        if html is not None:
            _write(html, notice.notice_html(incident).encode())
        body = incident.notice
    if send_to is not None:
        svc.mailer.deliver_pending(svc.sessions)
    sys.stdout.write(body)


@incident_app.command("pack")
def pack_(
    incident_id: int = ID,
    out: Path = typer.Option(..., "--out", metavar="PACK.zip", help="Where to write the archive."),
) -> None:
    """Write the signed evidence pack (verify it offline with `ringfence incident verify`)."""
    from ringfence.incidents import pack
    from ringfence.incidents import services as incidents

    svc = services()
    with transaction(svc.sessions) as session:
        data = pack.export(
            session, svc.secrets, incidents.get_incident(session, incident_id), actor=ACTOR
        )
        _write(out, data)  # inside the transaction: no export is recorded without its file
    console.print(f"evidence pack: {out} ({len(data):,} bytes)")


@incident_app.command("verify")
def verify(
    archive: Path = typer.Argument(..., metavar="PACK.zip"),
    public_key: Path = typer.Option(..., "--public-key", help="The lab's manifest key (PEM)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check an evidence pack against the lab's public key, offline. Exit 0: intact."""
    from ringfence.incidents import pack

    check = pack.verify(_read_bytes(archive), _read_bytes(public_key))
    emit(
        check.summary() if as_json else {"ok": True, "pack": check.name, "files": len(check.files)},
        as_json=as_json,
    )


@incident_app.command("close")
def close(
    incident_id: int = ID,
    resolution: str = typer.Option(..., "--resolution"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Close an incident (its hold on widening ends)."""
    from ringfence.incidents import services as incidents

    with transaction(services().sessions) as session:
        incident = incidents.close_incident(
            session,
            incidents.get_incident(session, incident_id),
            resolution=resolution,
            actor=ACTOR,
        )
        row = incidents.incident_record(incident)
    emit(row, as_json=as_json)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc


def _read(path: Path) -> str:
    return _read_bytes(path).decode("utf-8", "replace")


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InvalidInput(
            f"cannot write {path}: {exc.strerror}", hint="choose a writable path"
        ) from exc


def register(app: typer.Typer) -> None:
    """Add the `incident` group."""
    app.add_typer(incident_app, name="incident")
