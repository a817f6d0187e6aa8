"""What every refused command must look like to a person, and that it changed nothing."""

from __future__ import annotations

from tests.conftest import CliResult, CliRunner

#: exit status of bad input (InvalidInput, NotFound, Conflict and click's usage errors)
BAD_INPUT = 2
#: exit status of a refusal (PermissionDenied and its kinds)
PERMISSION = 3


def audit_events(cli: CliRunner) -> int:
    """How many events the audit log holds (a refused command writes none)."""
    result = cli("audit", "verify", "--json")
    assert result.code == 0, result.err
    report = result.json()
    assert isinstance(report, dict) and report["ok"], report
    return int(report["events"])


def refused(
    cli: CliRunner, *args: str, code: int = BAD_INPUT, says: str = "", usage: bool = False
) -> CliResult:
    """Run a command that must fail: exit `code`, one line on stderr, no audit event written.

    `usage` marks click's own usage errors (a missing option, an id that is not a number):
    those print a usage block rather than one line, still without a traceback.
    """
    before = audit_events(cli)
    result = cli(*args)
    assert result.code == code, (result.code, result.out, result.err)
    assert "Traceback" not in result.err + result.out
    assert "internal error" not in result.err
    if usage:
        assert "Usage:" in result.err, result.err
    else:
        lines = [line for line in result.err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert says.lower() in result.err.lower(), result.err
    assert audit_events(cli) == before, "a refused command wrote to the audit log"
    return result


def ok(cli: CliRunner, *args: str) -> CliResult:
    """Run a command that must succeed; its result."""
    result = cli(*args)
    assert result.code == 0, (result.code, result.out, result.err)
    assert "Traceback" not in result.err
    return result


def records(cli: CliRunner, *args: str) -> list[dict[str, object]]:
    """The JSON list a listing command prints (`--json` added)."""
    rows = ok(cli, *args, "--json").json()
    assert isinstance(rows, list)
    return rows


def record(cli: CliRunner, *args: str) -> dict[str, object]:
    """The JSON object a command prints (`--json` added)."""
    row = ok(cli, *args, "--json").json()
    assert isinstance(row, dict)
    return row
