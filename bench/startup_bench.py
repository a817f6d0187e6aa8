"""How long the CLI takes to start, against a Python that only imports typer and rich.

Whole processes, as a person meets them: a fresh interpreter runs `ringfence --help` (and two
commands' help: a client command and a server-side one), against `python -c "import typer,
rich"`, the floor any Typer CLI with rich output pays. The runs interleave (baseline, then
each command) so that a busy machine slows both sides alike; each figure is the median.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import ratio_row

TITLE = "CLI start-up: whole-process time"
RUNS = 15
GOAL = 1.5
SRC = Path(__file__).resolve().parent.parent / "src"

BASELINE = [sys.executable, "-c", "import typer, rich"]
COMMANDS: dict[str, tuple[list[str], float | None]] = {
    "ringfence --help": (["--help"], GOAL),
    "ringfence download --help (a client command)": (["download", "--help"], None),
    "ringfence publish --help (a server-side command)": (["publish", "--help"], None),
}


def _wall(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def run() -> list[dict[str, Any]]:
    """Median wall time of each command and of the baseline, RUNS interleaved runs each."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "100"}
    argv = {
        name: [sys.executable, "-m", "ringfence.cli.main", *args]
        for name, (args, _) in COMMANDS.items()
    }
    times: dict[str, list[float]] = {name: [] for name in [*COMMANDS, "baseline"]}
    for name in argv:  # warm the page cache and the bytecode caches once, untimed
        _wall(argv[name], env)
    _wall(BASELINE, env)
    for _ in range(RUNS):
        times["baseline"].append(_wall(BASELINE, env))
        for name, command in argv.items():
            times[name].append(_wall(command, env))
    base = statistics.median(times["baseline"])
    rows = []
    for name, (_, goal) in COMMANDS.items():
        value = statistics.median(times[name])
        rows.append(
            ratio_row(
                "startup",
                name,
                value * 1000,
                "ms",
                'python -c "import typer, rich"',
                base * 1000,
                higher_is_better=False,
                goal=goal,
                note=f"median of {RUNS} fresh processes each, interleaved"
                + ("" if goal else "; reported, no goal"),
            )
        )
    return rows
