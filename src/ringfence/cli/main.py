"""Entry point: `ringfence ...`. Every RingfenceError is rendered as one line and an exit code."""

from __future__ import annotations

import os
import sys

import typer

from ringfence.cli import catalogue
from ringfence.cli.output import errors
from ringfence.datadir import restrict_umask
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


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on `argv` and return the exit status; errors become one line on stderr."""
    restrict_umask()
    try:
        # Standalone mode: click renders its own usage errors and exits; ours propagate.
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except RingfenceError as exc:
        errors.print(f"[red]error:[/red] {exc.diagnostics()}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        errors.print("aborted")
        return 130
    except Exception as exc:
        if os.environ.get("RINGFENCE_DEBUG"):
            raise
        errors.print(
            f"[red]internal error:[/red] {type(exc).__name__}: {exc} "
            "(a bug in ringfence; rerun with RINGFENCE_DEBUG=1 for the traceback and report it)",
            highlight=False,
            soft_wrap=True,
        )
        return 70
    return 0


def main() -> None:
    """Console entry point."""
    sys.exit(run())


if __name__ == "__main__":
    main()
