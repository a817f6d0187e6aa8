"""Tracing commands: `ringfence trace` and `ringfence fingerprint simulate`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

from ringfence.catalogue import services as catalogue
from ringfence.cli.context import services
from ringfence.cli.output import console, errors
from ringfence.db import transaction
from ringfence.errors import InvalidInput
from ringfence.fingerprint import services as fingerprint
from ringfence.fingerprint.accuse import DEFAULT_BOUND
from ringfence.tracing import services as tracing

ACTOR = "cli"


def trace(
    paths: list[Path] = typer.Argument(
        ..., metavar="PATH...", help="Suspect files or directories."
    ),
    release: str | None = typer.Option(
        None, "--release", metavar="MODEL@VERSION", help="The release it leaked from, if known."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    report: Path | None = typer.Option(
        None, "--report", metavar="OUT.html", help="Write the evidence report here."
    ),
    bound: float = typer.Option(
        DEFAULT_BOUND, "--bound", help="Accuse only below this false-accusation probability."
    ),
) -> None:
    """Find whose fingerprinted copy a suspect file is. Exit 0: accused; 1: none found."""
    svc = services()
    started = time.perf_counter()

    def progress(message: str) -> None:
        if not as_json:
            errors.print(f"[dim]{message}[/dim]", highlight=False)

    with transaction(svc.sessions) as session:
        result = tracing.trace(
            svc, session, paths, release_ref=release, bound=bound, actor=ACTOR, progress=progress
        )
        if report is not None:
            from ringfence.tracing.report import render_report

            try:
                report.write_text(render_report(result), encoding="utf-8")
            except OSError as exc:
                # Inside the transaction: the trace is not recorded without its report.
                raise InvalidInput(
                    f"cannot write {report}: {exc.strerror}", hint="choose a writable path"
                ) from exc
    elapsed = time.perf_counter() - started
    if as_json:
        print(json.dumps(result.summary(), indent=2))
    else:
        _print_human(result, elapsed, report)
    sys.exit(0 if result.accused else 1)


def _print_human(result: tracing.TraceResult, elapsed: float, report: Path | None) -> None:
    console.print(f"[bold]release[/bold]: {result.release or 'not identified'}")
    for step in result.alignment:
        console.print(f"[bold]aligned[/bold]: {step}")
    if result.accused:
        for a in result.accused:
            how = "exact copy" if a.score is None else f"z {a.z:.1f}, p-value {a.p_value:.2e}"
            console.print(f"[red bold]accused[/red bold]: {a.recipient} ({how})")
    console.print(result.message, highlight=False)
    console.print(f"[dim]{elapsed:.1f} s; bound {result.bound:g}[/dim]")
    if report is not None:
        console.print(f"report: {report}")


def simulate(
    ref: str = typer.Argument(..., metavar="MODEL@VERSION"),
    recipients: int = typer.Option(..., "--recipients", min=1, help="How many to register."),
) -> None:
    """Register N simulated recipients (benchmarks and tests; never real people)."""
    svc = services()
    started = time.perf_counter()
    with transaction(svc.sessions) as session:
        release = catalogue.get_release(session, ref)
        total = fingerprint.simulate_recipients(session, release, recipients, actor=ACTOR)
    console.print(
        f"{recipients:,} simulated recipients registered for {ref} ({total:,} in all) "
        f"in {time.perf_counter() - started:.1f} s"
    )


def register(app: typer.Typer) -> None:
    """Add `trace`, and `simulate` to the `fingerprint` group (created if absent)."""
    app.command("trace")(trace)
    group = next((g for g in app.registered_groups if g.name == "fingerprint"), None)
    if group is None or group.typer_instance is None:
        fingerprint_app = typer.Typer(help="Per-recipient fingerprints.", no_args_is_help=True)
        app.add_typer(fingerprint_app, name="fingerprint")
    else:
        fingerprint_app = group.typer_instance
    fingerprint_app.command("simulate")(simulate)
