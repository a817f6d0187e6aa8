"""Every command the CLI offers has a functional test: a new command without one fails here.

The commands are read from the Typer app itself, so one added in any area shows up; each must
be named below with the test files that run it, and those files must really call it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[2]
HERE = "functional/cli"

DOWNSTREAM = "functional/test_downstream_schedule.py"
#: command -> the test files (under tests/) that run it through the CLI
COVERED: dict[str, tuple[str, ...]] = {
    "audit list": (f"{HERE}/test_audit.py",),
    "audit verify": (f"{HERE}/test_audit.py", "functional/test_access_flows.py"),
    "circle set": ("functional/test_access_flows.py", "functional/test_catalogue_cli_web.py"),
    "circle show": (f"{HERE}/test_access.py",),
    # the conversion itself needs the real model (slow); bad input runs in the fast suite
    "convert gguf-to-hf": ("functional/test_convert.py", f"{HERE}/test_server.py"),
    # the demo serves the real model: `make demo` runs it; the fast suite its bad input
    "demo prepare": (f"{HERE}/test_server.py",),
    "demo run": (f"{HERE}/test_server.py",),
    "download": ("functional/test_distribution_client.py",),
    "fingerprint detect": (f"{HERE}/test_fingerprint.py", "functional/test_fingerprint_cli.py"),
    "fingerprint make": (f"{HERE}/test_fingerprint.py", "functional/test_fingerprint_cli.py"),
    # perplexity needs torch and the real model (slow)
    "fingerprint quality": ("functional/test_fingerprint_cli.py",),
    "fingerprint simulate": (f"{HERE}/test_fingerprint.py",),
    "grants add": (f"{HERE}/test_access.py",),
    "grants approve": ("functional/test_access_flows.py",),
    "grants expire": (f"{HERE}/test_access.py",),
    "grants list": (f"{HERE}/test_access.py", "functional/test_access_flows.py"),
    "grants reject": ("functional/test_access_flows.py",),
    "grants requests": ("functional/test_access_flows.py",),
    "grants revoke": (f"{HERE}/test_access.py",),
    "incident attribute": ("functional/test_incidents_blackbox.py",),
    "incident close": (f"{HERE}/test_incidents.py",),
    "incident list": (f"{HERE}/test_incidents.py",),
    "incident notice": (f"{HERE}/test_incidents.py",),
    "incident open": (f"{HERE}/test_incidents.py",),
    "incident pack": (f"{HERE}/test_incidents.py",),
    "incident revoke": (f"{HERE}/test_incidents.py",),
    "incident show": (f"{HERE}/test_incidents.py",),
    "incident trace": (f"{HERE}/test_incidents.py",),
    "incident verify": (f"{HERE}/test_incidents.py",),
    "hosted backend": (f"{HERE}/test_hosted.py",),
    "hosted quota": (f"{HERE}/test_hosted.py",),
    "hosted usage": (f"{HERE}/test_hosted.py",),
    "init": ("functional/test_catalogue_cli_web.py",),
    "institutions add": (f"{HERE}/test_access.py",),
    "institutions list": (f"{HERE}/test_access.py",),
    "licence accept": ("functional/test_access_flows.py",),
    "licence add": (f"{HERE}/test_access.py",),
    "licence set": (f"{HERE}/test_access.py",),
    "links create": (f"{HERE}/test_distribution.py",),
    "links list": (f"{HERE}/test_distribution.py",),
    "links revoke": (f"{HERE}/test_distribution.py",),
    "manifests compute": (f"{HERE}/test_distribution.py",),
    "manifests key": (f"{HERE}/test_distribution.py",),
    "manifests show": (f"{HERE}/test_distribution.py",),
    "nda add": (f"{HERE}/test_access.py",),
    "nda countersign": (f"{HERE}/test_access.py",),
    "nda list": (f"{HERE}/test_access.py",),
    "nda revoke": ("functional/test_access_admin_reach.py",),
    "policy show": ("functional/test_access_admin_reach.py",),
    "policy set": ("functional/test_access_admin_reach.py",),
    "expire": ("functional/test_access_admin_reach.py",),
    "worker": ("functional/test_jobs.py",),
    "publish": ("functional/test_catalogue_cli_web.py",),
    "releases list": ("functional/test_catalogue_cli_web.py",),
    "releases show": ("functional/test_catalogue_cli_web.py", f"{HERE}/test_access.py"),
    "request": ("functional/test_access_flows.py",),
    "serve": (f"{HERE}/test_server.py",),
    "tokens create": ("functional/test_access_flows.py", f"{HERE}/test_access.py"),
    "tokens list": (f"{HERE}/test_access.py",),
    "tokens revoke": (f"{HERE}/test_access.py",),
    "trace": (f"{HERE}/test_fingerprint.py", "functional/test_trace_leaks.py"),
    "users add": (f"{HERE}/test_access.py", "functional/test_access_flows.py"),
    "users list": (f"{HERE}/test_access.py",),
    "users set": (f"{HERE}/test_access.py",),
    "users two-factor-reset": ("functional/test_two_factor.py", f"{HERE}/test_access.py"),
    "verify": ("functional/test_distribution_client.py",),
    # downstream (derivatives, staged schedules, webhooks)
    "derivatives add": (DOWNSTREAM,),
    "derivatives list": (DOWNSTREAM,),
    "schedule add": (DOWNSTREAM,),
    "schedule list": (DOWNSTREAM,),
    "schedule run": (DOWNSTREAM,),
    "webhooks add": (DOWNSTREAM,),
    "webhooks deliver": (DOWNSTREAM,),
    "webhooks list": (DOWNSTREAM,),
    # gates
    "gates run": ("functional/test_gates.py",),
    "gates show": ("functional/test_gates.py",),
    "gates override": ("functional/test_gates.py",),
    "gates sign-off": ("functional/test_gates.py",),
    "release report": ("functional/test_gates.py",),
}


def commands(command: Any, prefix: tuple[str, ...] = ()) -> set[str]:
    """Every leaf command under a click command, as its words ("grants add")."""
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        return {" ".join(prefix)}
    found: set[str] = set()
    for name, sub in subcommands.items():
        found |= commands(sub, (*prefix, name))
    return found


def offered_commands() -> set[str]:
    """Every leaf command the CLI offers (the root lists its commands lazily: load each)."""
    from ringfence.cli.main import COMMANDS, load_command

    found: set[str] = set()
    for name in COMMANDS:
        found |= commands(load_command(name), (name,))
    return found


def test_every_command_has_a_functional_test() -> None:
    offered = offered_commands()
    assert len(offered) > 40, offered  # the walk found the groups
    missing = sorted(offered - COVERED.keys())
    assert not missing, f"commands without a functional test (add one, then list it): {missing}"
    gone = sorted(COVERED.keys() - offered)
    assert not gone, f"listed here but no longer offered by the CLI: {gone}"


def test_each_listed_file_calls_its_command() -> None:
    for name, files in COVERED.items():
        # cli("grants", "add", ...), the words perhaps on lines of their own
        call = re.compile(r",\s*".join(f'"{re.escape(word)}"' for word in name.split()))
        for file in files:
            text = (TESTS / file).read_text(encoding="utf-8")
            assert call.search(text), f"{file} never runs `ringfence {name}`"
