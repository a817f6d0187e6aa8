"""The root CLI: `--help` lists every command cheaply, and errors read as one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy
import typer

from ringfence.cli.main import COMMANDS, load_command
from ringfence.wiring import Services
from tests.conftest import CliRunner
from tests.live import free_port

HEAVY = ("fastapi", "sqlalchemy", "argon2", "numpy", "torch", "httpx", "ringfence.wiring")
SRC = Path(__file__).resolve().parents[3] / "src"


def _fresh_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(SRC), "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def test_help_in_a_fresh_process_imports_nothing_heavy() -> None:
    out = _fresh_python(
        "import contextlib, io, json, sys\n"
        "from ringfence.cli.main import run\n"
        "with contextlib.redirect_stdout(io.StringIO()) as shown:\n"
        "    code = run(['--help'])\n"
        f"print(json.dumps({{'code': code, 'help': shown.getvalue(), "
        f"'loaded': [m for m in {HEAVY!r} if m in sys.modules]}}))"
    )
    result = json.loads(out)
    assert result["code"] == 0 and result["loaded"] == []
    shown = " ".join(result["help"].split())  # the help wraps long lines
    for name, (text, _) in COMMANDS.items():
        assert f" {name} {' '.join(text.split())}" in shown, name


def test_a_client_command_loads_no_server_side() -> None:
    out = _fresh_python(
        "import contextlib, io, sys\n"
        "from ringfence.cli.main import run\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    run(['download', '--help'])\n"
        "print([m for m in ('fastapi', 'sqlalchemy', 'argon2', 'ringfence.wiring') "
        "if m in sys.modules])"
    )
    assert out.strip() == "[]"


def test_the_listing_matches_what_the_modules_register() -> None:
    """The table in main.py against the commands themselves: the same names and help."""
    everything = typer.Typer()
    modules = dict.fromkeys(m for _, areas in COMMANDS.values() for m in areas)
    for module in modules:
        __import__(f"ringfence.cli.{module}", fromlist=["register"]).register(everything)
    registered = typer.main.get_group(everything).commands
    assert set(registered) == set(COMMANDS)
    for name, (text, _) in COMMANDS.items():
        command = load_command(name)
        assert (command.help or "").split("\n\n")[0].strip() == text, name
        assert command is not registered[name] and command.name == name


def test_a_typo_still_gets_a_suggestion(cli: CliRunner) -> None:
    result = cli("relases")
    # `release` (the report) and `releases` are both near: either suggestion names releases
    assert result.code == 2 and "Did you mean" in result.err and "'releases'" in result.err


def test_an_unreachable_database_is_one_line_without_its_password(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"postgresql+psycopg://lab:s3cret@127.0.0.1:{free_port()}/ringfence"
    monkeypatch.setenv("RINGFENCE_DATABASE_URL", url)
    result = cli("releases", "list")
    assert result.code == 4, result.err
    assert "cannot use the database at postgresql+psycopg://lab:***@127.0.0.1" in result.err
    assert "s3cret" not in result.err and len(result.err.strip().splitlines()) == 1


def test_a_unique_rule_the_database_enforces_says_what_exists(
    cli: CliRunner, services: Services
) -> None:
    """A constraint the service does not check first (as when two writers race) is one line."""
    with services.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("CREATE UNIQUE INDEX uq_nocase ON institutions (name COLLATE NOCASE)")
        )
    assert cli("institutions", "add", "Uni", "--domain", "uni.example").code == 0
    result = cli("institutions", "add", "uni", "--domain", "other.example")
    assert result.code == 2, result.err
    assert "institutions: a record with the same name already exists" in result.err
    assert "internal error" not in result.err and len(result.err.strip().splitlines()) == 1
