"""Catalogue commands: init, serve, publish, releases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from ringfence.catalogue import services as catalogue
from ringfence.catalogue.models import Release
from ringfence.cli.context import services
from ringfence.cli.output import console, emit
from ringfence.db import transaction
from ringfence.fingerprint import services as fingerprint

releases_app = typer.Typer(help="List and inspect releases.", no_args_is_help=True)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


def release_summary(release: Release) -> dict[str, Any]:
    """A release as one flat record (the same fields in the CLI and the API)."""
    return {
        "release": release.ref,
        "circle": release.circle,
        "licence": release.licence.ref if release.licence else None,
        "files": len(release.artifacts),
        "size": release.total_size,
        "parameters": release.parameter_count,
        "manifest_sha256": release.manifest_sha256,
        "created_at": release.created_at.isoformat(timespec="seconds"),
    }


def release_detail(release: Release) -> dict[str, Any]:
    """A release with every artifact and its tensor count."""
    detail = release_summary(release)
    detail["artifacts"] = [
        {
            "path": a.path,
            "size": a.size,
            "sha256": a.sha256,
            "format": a.format,
            "tensors": len(a.tensors),
        }
        for a in release.artifacts
    ]
    return detail


def init(
    org: str = typer.Option(
        "lab", "--org", help="The lab's organisation slug (repo ids: SLUG/MODEL)."
    ),
    name: str | None = typer.Option(None, "--name", help="Display name of the organisation."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create the data dir, the database and the lab's organisation."""
    svc = services()
    with transaction(svc.sessions) as session:
        organisation = catalogue.init_organisation(session, org, name)
        result = {"organisation": organisation.slug, "home": str(svc.settings.home.resolve())}
    emit(result, as_json=as_json)


def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Server processes (behind a proxy: deploy/nginx)."
    ),
) -> None:
    """Serve the web app and the API."""
    import uvicorn

    from ringfence.operations.logs import uvicorn_log_config
    from ringfence.web.proxies import trusted_proxies

    svc = services()  # the schema is migrated here, once, before any worker starts
    trusted = trusted_proxies(svc.settings.trusted_proxies)
    # uvicorn believes X-Forwarded-* from 127.0.0.1 unless told otherwise: only the proxies
    # named in RINGFENCE_TRUSTED_PROXIES are believed, as in `client_ip`.
    proxy_headers, allow = bool(trusted), trusted.uvicorn_allow()
    log_config = uvicorn_log_config(svc.settings.log_format)  # RINGFENCE_LOG_FORMAT
    if workers == 1:
        from ringfence.web.app import create_app

        uvicorn.run(
            create_app(svc),
            host=host,
            port=port,
            log_level="info",
            log_config=log_config,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=allow,
        )
        return
    # Each worker process imports the factory and builds its services from the environment.
    uvicorn.run(
        "ringfence.web.app:worker_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="info",
        log_config=log_config,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=allow,
    )


def publish(
    path: Path = typer.Argument(..., help="A Hugging Face-layout directory or one weights file."),
    model: str = typer.Option(..., "--model", help="Model name."),
    version: str = typer.Option(..., "--version", help="Release version (immutable)."),
    licence: str | None = typer.Option(None, "--licence", help="Licence SLUG[@VERSION]."),
    max_recipients: int | None = typer.Option(
        None, "--max-recipients", help="Fingerprint: most recipients (default from settings)."
    ),
    max_colluders: int | None = typer.Option(
        None, "--max-colluders", help="Fingerprint: most colluders pooling copies."
    ),
    provenance: Path | None = typer.Option(
        None,
        "--provenance",
        help="Provenance manifest (YAML): training data, private samples, canaries.",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Validate and publish a release in one transaction (it starts in the in-house circle)."""
    from ringfence.gates import provenance as provenances

    # Read and validated first: a bad manifest records nothing.
    manifest = provenances.load(provenance) if provenance is not None else None
    svc = services()
    params = fingerprint.publish_params(
        svc.settings, max_recipients=max_recipients, max_colluders=max_colluders
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        console=console,
        disable=as_json,
        transient=True,
    ) as bar:
        task = bar.add_task("storing", total=None)

        def progress(path: str, size: int) -> None:
            bar.update(task, description=f"stored {path}", advance=size)

        with transaction(svc.sessions) as session:
            release = catalogue.publish(
                session,
                svc.blobs,
                path,
                model=model,
                version=version,
                licence=licence,
                fingerprint=params,
                progress=progress,
            )
            if manifest is not None:
                from ringfence.gates import services as gates

                gates.attach_provenance(session, release, manifest, actor="cli")
            result = release_summary(release)
    emit(result, as_json=as_json)


@releases_app.command("list")
def releases_list(as_json: bool = JSON_OPTION) -> None:
    """Every release, newest first."""
    with transaction(services().sessions) as session:
        rows = [release_summary(r) for r in catalogue.list_releases(session)]
    emit(rows, as_json=as_json, title="releases")


@releases_app.command("show")
def releases_show(
    ref: str = typer.Argument(..., help="MODEL@VERSION"), as_json: bool = JSON_OPTION
) -> None:
    """One release with its files."""
    with transaction(services().sessions) as session:
        detail = release_detail(catalogue.get_release(session, ref))
    if as_json:
        emit(detail, as_json=True)
        return
    artifacts = detail.pop("artifacts")
    emit(detail, as_json=False)
    emit(artifacts, as_json=False, title="files")


def register(app: typer.Typer) -> None:
    """Add the catalogue commands to the root app."""
    app.command()(init)
    app.command()(serve)
    app.command()(publish)
    app.add_typer(releases_app, name="releases")
