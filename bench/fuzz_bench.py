"""Fuzzing the safetensors and GGUF readers: 10^6 inputs, and how many broke the promise.

The generators and the oracle are the tests' own (tests/unit/formats/fuzzing.py): valid files
lying in structured ways, and raw bytes. Each input is written to a tmpfs file and read in
process; several worker processes share the inputs, each under an address-space limit, so a
header that made a reader allocate what it claims would show up as a MemoryError, not a dead
machine. The promise: every input reads consistently or raises a one-line RingfenceError.
"""

from __future__ import annotations

import importlib
import os
import random
import resource
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

TITLE = "Fuzzing: the safetensors and GGUF readers"
#: inputs per generator and reader; 10^6 in all
BUDGET = {
    "safetensors (structured)": 350_000,
    "gguf (structured)": 250_000,
    "safetensors (raw bytes)": 150_000,
    "gguf (raw bytes)": 150_000,
    "dispatch (raw bytes)": 100_000,
}
CHUNK = 10_000
#: address space per worker: numpy, gguf and the interpreter fit; a 2**60-byte claim does not
ADDRESS_SPACE = 4 << 30
SLOWEST_GOAL_S = 1.0
ROOT = Path(__file__).resolve().parent.parent
CRASH_DIR = Path(tempfile.gettempdir()) / "ringfence-fuzz-crashes"


def _worker_start() -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "src")]
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _chunk(target: str, seed: int, count: int) -> dict[str, Any]:
    """Run `count` inputs of one target from one seed; the crashes come back with their bytes."""
    from tests.unit.formats import fuzzing

    generate, reader = fuzzing.TARGETS[target]
    choices = fuzzing.RandomChoices(random.Random(seed))
    shm = Path("/dev/shm")
    read = 0
    slowest = 0.0
    crashes: list[tuple[str, bytes]] = []
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as name:
        folder = Path(name)
        for _ in range(count):
            raw = generate(choices)
            started = time.perf_counter()
            try:
                read += fuzzing.check(reader, raw, folder)
            except fuzzing.Crash as crash:
                crashes.append((crash.problem, raw))
            slowest = max(slowest, time.perf_counter() - started)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "target": target,
        "count": count,
        "read": read,
        "slowest": slowest,
        "crashes": crashes,
        "peak_mib": peak_mib,
    }


def _processes() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def run() -> list[dict[str, Any]]:
    """Every target's budget in chunks over a process pool; one row per figure."""
    jobs = [
        (target, 1_000_003 * index + start, min(CHUNK, total - start))
        for index, (target, total) in enumerate(BUDGET.items())
        for start in range(0, total, CHUNK)
    ]
    totals = {t: {"count": 0, "read": 0, "slowest": 0.0, "crashes": 0} for t in BUDGET}
    samples: dict[str, list[tuple[str, bytes]]] = {}
    peak_mib = 0.0
    started = time.perf_counter()
    # bench/run.py loads this file without registering it as a module, and the pool pickles
    # functions by module name: use the copy a plain import makes (bench/ is on sys.path).
    me = importlib.import_module(Path(__file__).stem)
    with get_context("spawn").Pool(_processes(), initializer=me._worker_start) as pool:
        pending = [pool.apply_async(me._chunk, job) for job in jobs]
        for result in pending:
            done = result.get(timeout=900)
            total = totals[done["target"]]
            total["count"] += done["count"]
            total["read"] += done["read"]
            total["slowest"] = max(total["slowest"], done["slowest"])
            total["crashes"] += len(done["crashes"])
            peak_mib = max(peak_mib, done["peak_mib"])
            kept = samples.setdefault(done["target"], [])
            kept.extend(done["crashes"][: max(0, 5 - len(kept))])
    elapsed = time.perf_counter() - started

    saved = []
    for target, crashes in samples.items():
        CRASH_DIR.mkdir(exist_ok=True)
        for n, (_problem, raw) in enumerate(crashes):
            path = CRASH_DIR / f"{target.split()[0]}-{n}.bin"
            path.write_bytes(raw)
            saved.append(str(path))

    lines = [
        "| generator -> reader | inputs | read | refused cleanly | other exceptions | slowest |",
        "|---|---|---|---|---|---|",
    ]
    for target, t in totals.items():
        lines.append(
            f"| {target} | {t['count']:,} | {t['read']:,} | "
            f"{t['count'] - t['read'] - t['crashes']:,} | {t['crashes']} | "
            f"{t['slowest'] * 1000:.1f} ms |"
        )
    inputs = sum(t["count"] for t in totals.values())
    crashes = sum(t["crashes"] for t in totals.values())
    slowest = max(t["slowest"] for t in totals.values())
    problems = sorted({p[:120] for c in samples.values() for p, _ in c})
    return [
        _row("inputs tried", inputs, "inputs", ">= 1,000,000", inputs >= 1_000_000),
        _row(
            "exceptions other than RingfenceError (or inconsistent reads)",
            crashes,
            "inputs",
            "0",
            crashes == 0,
            note="; ".join(problems) + (f" (inputs in {CRASH_DIR})" if saved else ""),
        ),
        _row(
            "inputs per second",
            inputs / elapsed,
            "inputs/s",
            "",
            None,
            note=f"{_processes()} processes, {elapsed:.0f} s wall",
        ),
        _row(
            "slowest single input",
            slowest * 1000,
            "ms",
            f"< {SLOWEST_GOAL_S * 1000:.0f} ms",
            slowest < SLOWEST_GOAL_S,
            note="a hang would show here (and stop the run at the pool's timeout)",
        ),
        _row(
            "peak memory of a worker",
            peak_mib,
            "MiB",
            f"< {ADDRESS_SPACE >> 30} GiB address space",
            None,
            note="each worker runs under RLIMIT_AS; an allocation past it is a MemoryError",
        ),
        {"section": "fuzz", "name": "per generator and reader", "table": "\n".join(lines)},
    ]


def _row(
    name: str, value: float, unit: str, goal: str, met: bool | None, note: str = ""
) -> dict[str, Any]:
    """A figure with its goal, in bench/run.py's row format (no baseline: counts, not times)."""
    return {
        "section": "fuzz",
        "name": name,
        "value": value,
        "unit": unit,
        "goal": goal,
        "met": met,
        "note": note,
    }
