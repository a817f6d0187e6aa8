"""`ringfence demo`: prepare the real SmolLM2 demo model and serve it."""

from __future__ import annotations

import typer

from ringfence import demo
from ringfence.catalogue import services as catalogue
from ringfence.cli.context import services
from ringfence.cli.output import console
from ringfence.db import transaction
from ringfence.errors import NotFound

demo_app = typer.Typer(help="The demo: the real SmolLM2-135M-Instruct.", no_args_is_help=True)


@demo_app.command("prepare")
def prepare(quiet: bool = typer.Option(False, "--quiet", help="Print nothing on success.")) -> None:
    """Fetch (once) and convert the demo model into the cache."""
    with console.status("preparing SmolLM2-135M-Instruct (cached after the first run)"):
        path = demo.demo_hf_dir()
    if not quiet:
        console.print(f"demo model ready: {path}")


@demo_app.command("run")
def run(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
) -> None:
    """Initialise the data dir, publish smollm2@1.0 if needed, and serve."""
    prepare(quiet=True)
    svc = services()
    ref = f"{demo.MODEL_NAME}@{demo.MODEL_VERSION}"
    with transaction(svc.sessions) as session:
        catalogue.init_organisation(session, "lab", "Demo Lab")
        try:
            catalogue.get_release(session, ref)
        except NotFound:
            console.print(f"publishing {ref} ...")
            catalogue.publish(
                session,
                svc.blobs,
                demo.demo_hf_dir(),
                model=demo.MODEL_NAME,
                version=demo.MODEL_VERSION,
                actor="demo",
            )
    console.print(
        f"\n[bold]ringfence demo[/bold]: open http://{host}:{port}/ (API docs: /api/v1/docs)\n"
    )
    import uvicorn

    from ringfence.web.app import create_app

    uvicorn.run(create_app(svc), host=host, port=port, log_level="info")


def register(app: typer.Typer) -> None:
    """Add the demo commands."""
    app.add_typer(demo_app, name="demo")
