"""Entry point: `ringfence ...`. Every RingfenceError is rendered as one line and an exit code."""

from __future__ import annotations

import sys

import typer

from ringfence.cli import catalogue
from ringfence.cli.output import errors
from ringfence.errors import RingfenceError

app = typer.Typer(
    name="ringfence",
    help="Release model weights to the right people, and know whose copy leaked.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
catalogue.register(app)


def _register_optional() -> None:
    """Areas add their commands through `ringfence.cli.<area>.register(app)`."""
    import importlib

    for area in ("demo", "convert", "access", "audit", "fingerprint", "distribution", "tracing"):
        try:
            module = importlib.import_module(f"ringfence.cli.{area}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ringfence.cli.{area}":
                raise
            continue
        module.register(app)


_register_optional()


def main() -> None:
    """Run the CLI, translating ringfence errors into one line on stderr and an exit code."""
    try:
        app(standalone_mode=False)
    except RingfenceError as exc:
        errors.print(f"[red]error:[/red] {exc.diagnostics()}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        errors.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click's usage errors and the like
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
