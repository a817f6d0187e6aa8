"""Fingerprint commands: make a recipient's copy, detect whose copy a file is, measure quality."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from ringfence.catalogue import services as catalogue
from ringfence.cli.context import services
from ringfence.cli.output import console, emit
from ringfence.db import transaction
from ringfence.fingerprint import services as fingerprint

ACTOR = "cli"
JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")

app = typer.Typer(
    help="Per-recipient fingerprints: issue copies, detect, measure quality.",
    no_args_is_help=True,
)


@app.command("make")
def make(
    ref: str = typer.Argument(..., metavar="MODEL@VERSION"),
    recipient: str = typer.Option(..., "--recipient", help="E-mail or user reference."),
    out: Path = typer.Option(..., "--out", help="Directory to write the copy into."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write exactly the copy RECIPIENT would download, and record the issuance."""
    svc = services()
    with transaction(svc.sessions) as session:
        release = catalogue.get_release(session, ref)
        total = sum(a.size for a in release.artifacts)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            console=console,
            disable=as_json,
            transient=True,
        ) as bar:
            task = bar.add_task(f"fingerprinting {ref} for {recipient}", total=total)
            issued = fingerprint.make_copy(
                session,
                svc.blobs,
                svc.secrets,
                release,
                recipient,
                out,
                actor=ACTOR,
                progress=lambda _path, n: bar.advance(task, n),
            )
        result = {
            "release": release.ref,
            "recipient": issued.recipient.email,
            "recipient_index": issued.recipient.index,
            "out": str(out),
            "files": [str(p) for p in issued.files],
        }
    emit(result, as_json=as_json)


@app.command("detect")
def detect(
    ref: str = typer.Argument(..., metavar="MODEL@VERSION"),
    copy: Path = typer.Argument(..., help="A copy (file or directory) in the release's format."),
    top: int = typer.Option(5, "--top", help="How many recipients to list."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Which registered recipients' codewords a copy carries (non-blind, against the original)."""
    svc = services()
    with transaction(svc.sessions) as session:
        release = catalogue.get_release(session, ref)
        ranked, z_cut = fingerprint.detect_copy(
            session, svc.blobs, svc.secrets, release, copy, top=top
        )
    rows = [
        {
            "recipient": email,
            "index": c.index,
            "z": round(c.z, 2),
            "p_value": f"{c.p_value:.2e}",
            "accused": c.accused,
        }
        for c, email in ranked
    ]
    if as_json:
        emit({"release": ref, "z_threshold": z_cut, "recipients": rows}, as_json=True)
        return
    emit(rows, as_json=False, title=f"{ref}: accusation threshold z ≥ {z_cut:.2f}")


@app.command("quality")
def quality(
    ref: str = typer.Argument(..., metavar="MODEL@VERSION"),
    tokens: int = typer.Option(20480, "--tokens", help="Held-out tokens to evaluate."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Perplexity of the original, a fingerprinted copy and casts (needs the eval extra)."""
    from ringfence.fingerprint import quality as measure

    svc = services()
    with transaction(svc.sessions) as session:
        release = catalogue.get_release(session, ref)
        rows = measure.release_quality(session, svc.blobs, svc.secrets, release, tokens=tokens)
    emit([r.as_row() for r in rows], as_json=as_json, title=f"{ref}: held-out perplexity")


def register(root: typer.Typer) -> None:
    """Add the `fingerprint` group to the root app."""
    root.add_typer(app, name="fingerprint")
