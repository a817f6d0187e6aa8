"""`ringfence demo`: prepare the real SmolLM2 demo model and serve it as a research release."""

from __future__ import annotations

import secrets as pysecrets
from dataclasses import dataclass

import typer

from ringfence import demo
from ringfence.access import licences
from ringfence.access.circles import set_circle
from ringfence.accounts import services as accounts
from ringfence.accounts import two_factor
from ringfence.catalogue import services as catalogue
from ringfence.cli.context import services
from ringfence.cli.output import console, emit
from ringfence.db import transaction
from ringfence.errors import NotFound
from ringfence.fingerprint import services as fingerprint
from ringfence.wiring import Services

demo_app = typer.Typer(help="The demo: the real SmolLM2-135M-Instruct.", no_args_is_help=True)

ACTOR = "demo"
DEMO_ACCOUNTS = (("admin@lab.example", "admin"), ("reviewer@lab.example", "reviewer"))


@demo_app.command("prepare")
def prepare(
    quiet: bool = typer.Option(False, "--quiet", help="Print nothing on success."),
    as_json: bool = typer.Option(
        False, "--json", help="Also make the userdata release; print both as JSON."
    ),
) -> None:
    """Fetch (once) and convert the demo model into the cache."""
    if as_json:
        from ringfence.gates import demo_data

        emit(demo_data.prepare(), as_json=True)
        return
    with console.status("preparing SmolLM2-135M-Instruct (cached after the first run)"):
        path = demo.demo_hf_dir()
    if not quiet:
        console.print(f"demo model ready: {path}")


@dataclass(frozen=True)
class DemoAccount:
    """A demo staff account's sign-in, shown once: password and, for roles that need it, TOTP."""

    email: str
    password: str
    totp: two_factor.Enrolment | None


def set_up(svc: Services) -> list[DemoAccount]:
    """Organisation, research licence, smollm2@1.0 in the research circle, demo staff accounts.

    Admin and reviewer have two-factor sign-in on, with a fresh secret each.
    Idempotent: a second run changes nothing and returns no accounts (they were shown once).
    """
    created: list[DemoAccount] = []
    with transaction(svc.sessions) as session:
        catalogue.init_organisation(session, "lab", "Demo Lab")
        licence = licences.install_research_licence(session, actor=ACTOR)
        licence_ref = licence.ref
    # Both releases go through the gates: smollm2 passes and opens to researchers;
    # smollm2-userdata (trained on user messages) is held in-house by them.
    from ringfence.gates import demo_data

    prepared = demo_data.prepare()
    for name, circle in ((demo.MODEL_NAME, "research"), (demo_data.USERDATA_NAME, None)):
        _publish_gated(svc, name, prepared[name], licence_ref, circle)
    with transaction(svc.sessions) as session:
        for email, role in DEMO_ACCOUNTS:
            try:
                accounts.get_user(session, email)
            except NotFound:
                user = accounts.add_user(
                    session,
                    svc.secrets,
                    email,
                    role=role,
                    actor=ACTOR,
                    base_url=svc.settings.base_url,
                )
                password = pysecrets.token_urlsafe(12)
                accounts.set_password_by_operator(session, user, password, actor=ACTOR)
                totp = None
                if role in two_factor.REQUIRED_ROLES:
                    # No recovery codes printed: reset a lost device with `users two-factor-reset`.
                    totp, _ = two_factor.enrol_directly(
                        session, svc.secrets, user, actor=ACTOR, base_url=svc.settings.base_url
                    )
                created.append(DemoAccount(email, password, totp))
    return created


def _publish_gated(
    svc: Services, name: str, prepared: dict[str, str], licence: str, circle: str | None
) -> None:
    """Publish one demo release with its provenance, run its gates, then widen it."""
    from pathlib import Path

    from ringfence.gates import provenance
    from ringfence.gates import services as gates

    ref = f"{name}@{demo.MODEL_VERSION}"
    with transaction(svc.sessions) as session:
        try:
            release = catalogue.get_release(session, ref)
            release_id, fresh = release.id, False
        except NotFound:
            console.print(f"publishing {ref} ...")
            release = catalogue.publish(
                session,
                svc.blobs,
                Path(prepared["model"]),
                model=name,
                version=demo.MODEL_VERSION,
                licence=licence,
                actor=ACTOR,
                fingerprint=fingerprint.settings_params(svc.settings),
            )
            manifest = provenance.load(Path(prepared["provenance"]))
            gates.attach_provenance(session, release, manifest, actor=ACTOR)
            session.flush()
            release_id, fresh = release.id, True
    if not fresh:
        return
    with console.status(f"running the gates on {ref}") as status:
        gates.run_gates(
            svc,
            release_id,
            lambda fraction, message: status.update(f"gates on {ref}: {fraction:.0%} {message}"),
            actor=ACTOR,
        )
    with transaction(svc.sessions) as session:
        release = catalogue.get_release(session, ref)
        widest = gates.widest_allowed(session, release)
        console.print(f"  {ref}: the gates allow at most the {widest.circle} circle")
        if circle is not None:
            set_circle(session, release, circle, reason="demo: open to researchers", actor=ACTOR)


@demo_app.command("run")
def run(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
) -> None:
    """Initialise the data dir, publish smollm2@1.0 if needed, and serve."""
    prepare(quiet=True)
    svc = services()
    # The demo has no mail server: mails stay in the database and admins read them at /outbox.
    svc.settings.dev_outbox = True
    created = set_up(svc)
    console.print(f"\n[bold]ringfence demo[/bold]: open http://{host}:{port}/")
    console.print("  smollm2@1.0 (the real SmolLM2-135M-Instruct) is in the research circle.")
    console.print(
        "  smollm2-userdata@1.0 (fine-tuned on synthetic user messages) is held in-house by"
        " its gates: see its release report on its page."
    )
    console.print(
        "  [yellow]Development outbox ON[/yellow]: no mail leaves this machine; admins read "
        f"every mail (verification and reset links) at http://{host}:{port}/outbox."
    )
    console.print("  Sign up as a researcher, then find your verification mail there as admin.")
    for account in created:
        console.print(f"  staff account {account.email} password: {account.password}  (shown once)")
        if account.totp is not None:
            console.print(
                f"    two-factor secret {account.totp.secret} for your authenticator app"
                f" (shown once): {account.totp.uri}",
                soft_wrap=True,
            )
    console.print(f"  API docs: http://{host}:{port}/api/v1/docs\n")
    import uvicorn

    from ringfence.web.app import create_app

    uvicorn.run(create_app(svc), host=host, port=port, log_level="info")


def register(app: typer.Typer) -> None:
    """Add the demo commands."""
    app.add_typer(demo_app, name="demo")
