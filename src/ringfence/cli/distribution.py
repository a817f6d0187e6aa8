"""Distribution commands: download, verify, links, manifests.

`download` and `verify` are client commands: they name the server by --server or
RINGFENCE_URL. Imports of the server side (database, services) stay inside the commands
that need them, so a client command starts without them.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ringfence.cli.context import services
from ringfence.cli.output import console, emit
from ringfence.errors import IntegrityError, InvalidInput, NotFound

links_app = typer.Typer(help="Signed download links.", no_args_is_help=True)
manifests_app = typer.Typer(help="Signed per-recipient manifests.", no_args_is_help=True)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


def download(
    source: str = typer.Argument(..., help="A download link URL, or MODEL@VERSION."),
    out: Path = typer.Option(..., "--out", help="Directory to download into."),
    server: str | None = typer.Option(
        None, "--server", help="Server URL, for MODEL@VERSION (default: RINGFENCE_URL)."
    ),
    token: str | None = typer.Option(
        None, "--token", envvar="RINGFENCE_TOKEN", help="API token (for MODEL@VERSION)."
    ),
    workers: int = typer.Option(4, "--workers", min=1, max=32, help="Files fetched at once."),
    public_key: Path | None = typer.Option(
        None, "--public-key", help="The lab's manifest key (PEM); default: ask the server."
    ),
    manifest_wait: float = typer.Option(
        60.0, "--manifest-wait", help="Seconds to wait for the server to sign the manifest."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Download your fingerprinted copy (parallel, resumable) and verify its signed manifest."""
    from ringfence.client import server_url
    from ringfence.distribution.client import download as run_download

    key = public_key.read_bytes() if public_key else None
    lock = threading.Lock()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=as_json,
        transient=False,
    ) as bar:
        tasks: dict[str, TaskID] = {}
        total = bar.add_task("[bold]total", total=None)

        def on_listing(listing: dict[str, Any]) -> None:
            bar.update(total, total=sum(int(f["size"]) for f in listing["files"]))
            for f in listing["files"]:
                tasks[f["path"]] = bar.add_task(f["path"], total=int(f["size"]))

        def progress(path: str, n: int, size: int) -> None:
            with lock:
                bar.advance(tasks[path], n)
                bar.advance(total, n)

        report = run_download(
            source,
            out,
            server=server_url(server),
            token=token,
            workers=workers,
            public_key=key,
            manifest_wait_s=manifest_wait,
            progress=progress,
            on_listing=on_listing,
        )
    check = report.check
    result = {
        "release": report.release,
        "directory": str(out),
        "files": len(report.files),
        "bytes_fetched": report.bytes_fetched,
        "verified": report.verified,
    }
    emit(result, as_json=as_json)
    if check is not None and not check.ok:
        raise IntegrityError(
            f"{out} does not match its signed manifest (mismatched: {check.mismatched}, "
            f"missing: {check.missing}, unexpected: {check.unexpected})",
            hint="rerun the download to fetch the files again",
        )


def verify(
    directory: Path = typer.Argument(..., help="A downloaded copy with its model.sig."),
    public_key: Path | None = typer.Option(
        None, "--public-key", help="The lab's manifest key (PEM)."
    ),
    server: str | None = typer.Option(
        None, "--server", help="Fetch the key from this server (default: RINGFENCE_URL)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check a downloaded copy against its signed manifest."""
    from ringfence.client import server_url
    from ringfence.distribution.client import signing_key, verify_directory

    url = server_url(server) if public_key is None else None
    if public_key is not None:
        key = public_key.read_bytes()
    elif url is not None:
        key = signing_key(url)
    else:
        from ringfence.distribution import manifests

        key = manifests.public_key_pem(services().secrets)
    check = verify_directory(directory, key)
    emit(
        {
            "directory": str(directory),
            "ok": check.ok,
            "files": len(check.ok_files),
            "mismatched": check.mismatched,
            "missing": check.missing,
            "unexpected": check.unexpected,
        },
        as_json=as_json,
    )
    if not check.ok:
        raise IntegrityError(f"{directory} does not match its signed manifest")


@links_app.command("create")
def links_create(
    ref: str = typer.Argument(..., help="MODEL@VERSION"),
    email: str = typer.Option(..., "--for", help="The grant holder's email."),
    hours: int = typer.Option(24, "--hours", help="Lifetime in hours."),
    uses: int = typer.Option(5, "--uses", help="Copies the link may deliver."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Make a signed link to a grant holder's copy (checks their grant now)."""
    from ringfence.accounts.services import get_user
    from ringfence.catalogue.services import get_release
    from ringfence.db import transaction
    from ringfence.distribution import services as dist

    svc = services()
    with transaction(svc.sessions) as session:
        release = get_release(session, ref)
        user = get_user(session, email)
        new = dist.create_link_for(session, svc, release, user, actor="cli", hours=hours, uses=uses)
        result = {
            "url": new.url(svc.settings.base_url),
            "expires_at": new.link.expires_at.isoformat(timespec="seconds"),
            "uses": uses,
        }
    emit(result, as_json=as_json)


@links_app.command("list")
def links_list(
    email: str | None = typer.Option(None, "--for", help="Only this holder's links."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Download links with their expiry, copies delivered and state."""
    from ringfence.accounts.services import get_user
    from ringfence.db import transaction, utcnow
    from ringfence.distribution import links

    with transaction(services().sessions) as session:
        user_id = get_user(session, email).id if email else None
        now = utcnow()
        rows = [
            {
                "id": link.id,
                "grant": link.grant_id,
                "expires_at": link.expires_at.isoformat(timespec="seconds"),
                "copies": f"{link.uses:.2f}/{link.max_uses}",
                "state": "revoked"
                if link.revoked_at
                else ("expired" if link.expires_at <= now else "live"),
            }
            for link in links.list_links(session, user_id=user_id)
        ]
    emit(rows, as_json=as_json, title="links")


@links_app.command("revoke")
def links_revoke(
    link_id: int = typer.Argument(..., help="The link's id (see `ringfence links list`)."),
    reason: str = typer.Option("", "--reason", help="Why (recorded in the audit log)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Kill one download link at once; the holder's grant stays."""
    from ringfence.db import transaction
    from ringfence.distribution import links

    with transaction(services().sessions) as session:
        link = links.revoke_link(session, link_id, reason=reason, actor="cli")
        result = {"id": link.id, "revoked_at": str(link.revoked_at)}
    emit(result, as_json=as_json)


@manifests_app.command("compute")
def manifests_compute(as_json: bool = JSON_OPTION) -> None:
    """Compute and sign every pending recipient manifest now."""
    from ringfence.distribution.tasks import compute_pending

    emit({"computed": compute_pending(services())}, as_json=as_json)


@manifests_app.command("key")
def manifests_key(
    out: Path | None = typer.Option(None, "--out", help="Write the PEM here."),
) -> None:
    """The lab's public key for manifests (PEM), for `model_signing verify key`."""
    from ringfence.distribution.manifests import public_key_pem

    pem = public_key_pem(services().secrets)
    if out is None:
        print(pem.decode(), end="")
    else:
        try:
            out.write_bytes(pem)
        except OSError as exc:
            raise InvalidInput(
                f"cannot write {out}: {exc.strerror}", hint="choose a writable path"
            ) from exc
        console.print(f"wrote {out}")


@manifests_app.command("show")
def manifests_show(
    ref: str = typer.Argument(..., help="MODEL@VERSION"),
    email: str = typer.Option(..., "--for", help="The recipient's email."),
) -> None:
    """Print a recipient's signed manifest (a Sigstore bundle)."""
    from ringfence.accounts.services import get_user
    from ringfence.catalogue.services import get_release
    from ringfence.db import transaction
    from ringfence.distribution import services as dist

    with transaction(services().sessions) as session:
        release = get_release(session, ref)
        row = dist.manifest_row(session, release.id, get_user(session, email).id)
        if row is None or row.bundle is None:
            raise NotFound(
                f"no manifest yet for {email} on {ref}", hint="run `ringfence manifests compute`"
            )
        print(row.bundle)


def register(app: typer.Typer) -> None:
    """Add the distribution commands to the root app."""
    app.command()(download)
    app.command()(verify)
    app.add_typer(links_app, name="links")
    app.add_typer(manifests_app, name="manifests")
