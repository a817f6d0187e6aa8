"""Gate commands: run the gates, the release report, overrides and their sign-off."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn

from ringfence.accounts import services as accounts
from ringfence.catalogue import services as catalogue
from ringfence.cli.context import services
from ringfence.cli.output import console, emit
from ringfence.db import transaction
from ringfence.errors import InvalidInput, NotFound
from ringfence.gates import report as reports
from ringfence.gates import services as gates
from ringfence.gates.models import GateRun

gates_app = typer.Typer(
    help="Release gates: provenance, file safety, probes.", no_args_is_help=True
)
release_app = typer.Typer(help="A release's report.", no_args_is_help=True)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
ACTOR = "cli"


@gates_app.command("run")
def gates_run(
    ref: str = typer.Argument(..., help="MODEL@VERSION"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads for torch."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run every gate on a release and print what it may reach."""
    svc = services()
    with transaction(svc.sessions) as session:
        release_id = catalogue.get_release(session, ref).id
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        console=console,
        disable=as_json,
        transient=True,
    ) as bar:
        task = bar.add_task("gates", total=1.0)

        def progress(fraction: float, message: str) -> None:
            bar.update(task, completed=fraction, description=message)

        run_id = gates.run_gates(svc, release_id, progress, actor=ACTOR, threads=threads)
    with transaction(svc.sessions) as session:
        run = session.get(GateRun, run_id)
        assert run is not None
        summary = gates.run_summary(session, run)
    if as_json:
        emit(summary, as_json=True)
        return
    console.print(
        f"{summary['release']}: widest allowed circle [bold]{summary['widest_circle']}[/bold]"
    )
    emit(
        [
            {"gate": g["name"], "passed": g["passed"], "reason": g["reason"]}
            for g in summary["gates"]  # type: ignore[attr-defined]
        ],
        as_json=False,
        title="gates",
    )


@gates_app.command("show")
def gates_show(
    ref: str = typer.Argument(..., help="MODEL@VERSION"), as_json: bool = JSON_OPTION
) -> None:
    """The widest circle a release may reach now and what caps it."""
    with transaction(services().sessions) as session:
        release = catalogue.get_release(session, ref)
        widest = gates.widest_allowed(session, release)
        result = {
            "release": release.ref,
            "widest_circle": widest.circle,
            "gated_circle": widest.gated,
            "capped_by": [
                {"gate": c.source, "circle": c.circle, "reason": c.reason} for c in widest.capped_by
            ],
            "override": (
                {
                    "id": widest.override.id,
                    "circle": widest.override.circle,
                    "reason": widest.override.reason,
                }
                if widest.override
                else None
            ),
        }
    emit(result, as_json=as_json)


@gates_app.command("override")
def gates_override(
    ref: str = typer.Argument(..., help="MODEL@VERSION"),
    circle: str = typer.Option(
        ..., "--circle", help="The widest circle to allow despite the gates."
    ),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in the audit log)."),
    admin: str = typer.Option(..., "--admin", help="The admin asking for it (email)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Ask to allow a release wider than its gates do; a second admin signs it off."""
    with transaction(services().sessions) as session:
        row = gates.request_override(
            session,
            catalogue.get_release(session, ref),
            circle,
            reason=reason,
            admin=accounts.get_user(session, admin),
        )
        result = {"override": row.id, "release": ref, "circle": row.circle, "state": row.state}
    emit(result, as_json=as_json)


@gates_app.command("sign-off")
def gates_sign_off(
    override_id: int = typer.Argument(..., help="The override's id."),
    admin: str = typer.Option(..., "--admin", help="The second admin (email)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Sign off another admin's override: it is in force from then on."""
    with transaction(services().sessions) as session:
        row = gates.sign_off(session, override_id, admin=accounts.get_user(session, admin))
        result = {
            "override": row.id,
            "circle": row.circle,
            "state": row.state,
            "signed_off_by": row.signed_off_by,
        }
    emit(result, as_json=as_json)


@release_app.command("report")
def release_report(
    ref: str = typer.Argument(..., help="MODEL@VERSION"),
    out: Path = typer.Option(..., "--out", help="FILE.html (a FILE.json is written beside it)."),
    model_card: Path | None = typer.Option(
        None, "--model-card", help="Also write the README.md model card with the Hub metadata."
    ),
) -> None:
    """Write the release report of the latest gate run (HTML, and JSON beside it)."""
    if out.suffix.lower() not in (".html", ".htm"):
        raise InvalidInput(f"--out: {out.name} is not an .html file")
    with transaction(services().sessions) as session:
        release = catalogue.get_release(session, ref)
        run = gates.latest_run(session, release, finished=True)
        if run is None or run.report is None:
            raise NotFound(
                f"no finished gate run on {ref}", hint=f"run `ringfence gates run {ref}`"
            )
        report = run.report
        licence = release.licence.slug if release.licence else None
    out.write_text(reports.render_html(report))
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    written = {"report": str(out), "json": str(out.with_suffix(".json"))}
    if model_card is not None:
        model_card.write_text(reports.model_card(report, licence))
        written["model_card"] = str(model_card)
    emit(written, as_json=False)


def register(app: typer.Typer) -> None:
    """Add the gate commands."""
    app.add_typer(gates_app, name="gates")
    app.add_typer(release_app, name="release")
