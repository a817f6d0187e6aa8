"""Entry point: `ringfence ...`. Every RingfenceError is rendered as one line and an exit code.

The commands' modules are imported only when one of their commands runs (Click's LazyGroup
pattern, through Typer's `cls=`): `ringfence --help` lists every command from the table below
without loading the server side (fastapi, sqlalchemy, argon2, numpy), and `ringfence download`
loads only the download client. A test checks the table against the modules' own help.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from typing import Any

import typer

# Typer vendors Click; its Context and Command are what a group's methods receive.
from typer import _click as click
from typer.core import TyperCommand, TyperGroup

from ringfence.cli import output
from ringfence.datadir import restrict_umask
from ringfence.errors import RingfenceError

#: every top-level command as `--help` lists it: name -> (help, the ringfence.cli modules
#: whose `register(app)` adds it, in order); commands first, then groups, as Typer lists them
COMMANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "init": ("Create the data dir, the database and the lab's organisation.", ("catalogue",)),
    "serve": ("Serve the web app and the API.", ("catalogue",)),
    "publish": (
        "Validate and publish a release in one transaction (it starts in the in-house circle).",
        ("catalogue",),
    ),
    "request": ("Ask for access to a release (client command; uses RINGFENCE_TOKEN).", ("access",)),
    "expire": (
        "Expire grants past their end and pending requests past their lifetime (for cron).",
        ("access",),
    ),
    "download": (
        "Download your fingerprinted copy (parallel, resumable) and verify its signed manifest.",
        ("distribution",),
    ),
    "verify": ("Check a downloaded copy against its signed manifest.", ("distribution",)),
    "trace": (
        "Find whose fingerprinted copy a suspect file is. Exit 0: accused; 1: none found.",
        ("tracing",),
    ),
    "releases": ("List and inspect releases.", ("catalogue",)),
    "demo": ("The demo: the real SmolLM2-135M-Instruct.", ("demo",)),
    "convert": ("Convert weights between formats.", ("convert",)),
    "users": ("Accounts and roles.", ("access",)),
    "institutions": ("Institutions and their email domains.", ("access",)),
    "nda": ("NDAs that make an institution a partner.", ("access",)),
    "tokens": ("API tokens (shown once).", ("access",)),
    "licence": ("Licences and click-through acceptance.", ("access",)),
    "grants": ("Access requests and grants.", ("access",)),
    "circle": ("Who may receive a release.", ("access",)),
    "policy": ("How a release is asked for: form, rules, grant lifetime.", ("access",)),
    "audit": ("The hash-chained audit log.", ("audit",)),
    "fingerprint": (
        "Per-recipient fingerprints: issue copies, detect, measure quality.",
        ("fingerprint", "tracing"),
    ),
    "links": ("Signed download links.", ("distribution",)),
    "manifests": ("Signed per-recipient manifests.", ("distribution",)),
    "worker": (
        "Run background jobs (manifests, expiry...) until stopped; any number may run at once.",
        ("jobs",),
    ),
    "derivatives": ("Models built on releases, and their lineage.", ("downstream",)),
    "schedule": ("Staged release schedules: planned widenings.", ("downstream",)),
    "webhooks": ("Signed webhooks and their deliveries.", ("downstream",)),
    "incident": ("Leak incidents: evidence, actions, takedown notices.", ("incidents",)),
    "hosted": (
        "Hosted access: quotas, backends, usage of the inference endpoint.",
        ("hosted",),
    ),
    "gates": ("Release gates: provenance, file safety, probes.", ("gates",)),
    "release": ("A release's report.", ("gates",)),
}


def load_command(name: str) -> click.Command:
    """The real command `name`, its modules imported and registered now."""
    scratch = typer.Typer()
    for module in COMMANDS[name][1]:
        importlib.import_module(f"ringfence.cli.{module}").register(scratch)
    return typer.main.get_group(scratch).commands[name]


class _Listed(TyperCommand):
    """A command known by name and help only, until it runs."""


class LazyGroup(TyperGroup):
    """The root group: lists COMMANDS from the table, imports a command when it is resolved."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, (help_text, _) in COMMANDS.items():
            self.commands.setdefault(name, _Listed(name=name, help=help_text))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Resolve as Click does, then swap the listed stand-in for the real command."""
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None and isinstance(command, _Listed):
            command = self.commands[name] = load_command(name)
        return name, command, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Every command with its whole help line, wrapped (Click would cut it short)."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (text, _) in COMMANDS.items()])


class _RunOptions:
    """What the root options asked for, for rendering errors."""

    verbose = False


_options = _RunOptions()

app = typer.Typer(
    name="ringfence",
    cls=LazyGroup,
    # Click's plain help for the root: Typer's rich help module alone (rich.markdown,
    # pygments, attrs) would double the time `ringfence --help` takes. Commands keep theirs.
    rich_markup_mode=None,
    help="Release model weights to the right people, and know whose copy leaked.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="On an error, also show what caused it."
    ),
) -> None:
    _options.verbose = verbose


def _render(exc: RingfenceError) -> None:
    output.errors.print(f"[red]error:[/red] {exc.diagnostics()}", highlight=False, soft_wrap=True)
    if _options.verbose:
        # sigstore-python's way: the one line, then the chain of what caused it.
        cause = exc.__cause__
        while cause is not None:
            output.errors.print(
                f"  caused by {type(cause).__module__}.{type(cause).__qualname__}: {cause}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            cause = cause.__cause__


def _translated(exc: Exception) -> RingfenceError | None:
    """A third-party error that means something to a person, translated; None for a bug."""
    if type(exc).__module__.startswith("sqlalchemy"):
        from sqlalchemy.exc import SQLAlchemyError

        from ringfence.cli.context import database_url
        from ringfence.db import database_error

        if isinstance(exc, SQLAlchemyError):
            return database_error(exc, database_url())
    return None


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    output.errors.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on `argv` and return the exit status; errors become one line on stderr."""
    restrict_umask()
    _options.verbose = False
    with warnings.catch_warnings():
        # Warnings meant for the person running the command (FutureWarning: a deprecated
        # variable) read as one line, like errors; others keep Python's defaults.
        warnings.simplefilter("always", FutureWarning)
        warnings.showwarning = _show_warning
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    try:
        # Standalone mode: click renders its own usage errors and exits; ours propagate.
        app(args=argv, prog_name="ringfence", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except RingfenceError as exc:
        _render(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        output.errors.print("aborted")
        return 130
    except Exception as exc:
        if os.environ.get("RINGFENCE_DEBUG"):
            raise
        translated = _translated(exc)
        if translated is not None:
            translated.__cause__ = exc
            _render(translated)
            return translated.exit_code
        output.errors.print(
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
