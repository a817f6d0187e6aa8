"""The gate suite over one release's files: provenance, file safety, then the model probes.

Pure of the database: it takes the files on disk, the provenance and the policy, and returns
each gate's outcome, reporting progress as it goes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ringfence.errors import RingfenceError
from ringfence.gates import filesafety, memorisation, pii, safety
from ringfence.gates.lm import LanguageModel
from ringfence.gates.outcome import Outcome
from ringfence.gates.policy import Policy, narrowest, provenance_caps

#: (fraction done, what is happening) -> None
Progress = Callable[[float, str], None]

#: the model-probing gates, in the order they run, with their share of the progress bar
PROBES = ("memorisation", "pii", "safety")


def provenance_gate(policy: Policy, document: dict[str, Any] | None) -> Outcome:
    """The provenance policy as a gate: the narrowest circle its rules allow."""
    caps = provenance_caps(policy, document)
    figures: dict[str, Any] = {"recorded": document is not None}
    if document is not None:
        datasets = document["datasets"]
        figures.update(
            datasets=len(datasets),
            user_data=sum(d["contains_user_data"] for d in datasets),
            personal_data_unscrubbed=sum(
                d["contains_personal_data"] and not d["scrubbed"] for d in datasets
            ),
            base_models=[b["name"] for b in document["base_models"]],
        )
    if not caps:
        return Outcome("provenance", True, "public", figures, "no provenance rule limits it")
    cap = narrowest([c.circle for c in caps])
    reason = "; ".join(f"{c.reason} (at most {c.circle})" for c in caps)
    return Outcome("provenance", False, cap, figures, reason)


def _not_run(name: str, policy: Policy, why: str) -> Outcome:
    return Outcome(name, False, policy.not_run, {}, f"not run: {why}")


def run_suite(
    files: dict[str, Path],
    directory: Path,
    provenance: dict[str, Any] | None,
    policy: Policy,
    progress: Progress,
    *,
    threads: int | None = None,
) -> list[Outcome]:
    """Every gate's outcome for the release whose files are `files` (laid out in `directory`).

    Each outcome's figures gain `seconds`, the gate's own share of the run.
    """
    outcomes: list[Outcome] = []

    def timed(fn: Callable[[], Outcome]) -> Outcome:
        start, cpu = time.perf_counter(), time.process_time()
        outcome = fn()
        outcome.figures["seconds"] = round(time.perf_counter() - start, 2)
        # CPU time as well: on a machine shared with other work, wall time measures the others
        outcome.figures["cpu_seconds"] = round(time.process_time() - cpu, 2)
        outcomes.append(outcome)
        return outcome

    progress(0.01, "provenance")
    timed(lambda: provenance_gate(policy, provenance))
    progress(0.05, "file safety")
    safe = timed(lambda: filesafety.run(files, fail_cap=policy.gate("file_safety")["fail"]))
    if not safe.passed:
        for name in PROBES:
            outcomes.append(_not_run(name, policy, "file safety failed, the model is not loaded"))
        progress(1.0, "done")
        return outcomes
    progress(0.12, "loading the model")
    start, cpu = time.perf_counter(), time.process_time()
    try:
        model = LanguageModel(directory, threads=threads)
    except RingfenceError as exc:
        for name in PROBES:
            outcomes.append(_not_run(name, policy, exc.message))
        progress(1.0, "done")
        return outcomes
    load_seconds = round(time.perf_counter() - start, 2)
    load_cpu = round(time.process_time() - cpu, 2)
    progress(0.2, "memorisation probes")
    if provenance is None:
        outcomes.append(_not_run("memorisation", policy, "no provenance declares what to probe"))
    else:
        rules = policy.gate("memorisation")
        timed(lambda: memorisation.run(model, provenance, rules))
    progress(0.5, "PII in sampled generations")
    declared = (provenance or {}).get("private_samples", []) + (
        (provenance or {}).get("membership") or {}
    ).get("members", [])
    timed(lambda: pii.run(model, policy.gate("pii"), training_texts=declared))
    progress(0.75, "safety probes")
    timed(lambda: safety.run(model, policy.gate("safety")))
    outcomes[2].figures["model_load_seconds"] = load_seconds
    outcomes[2].figures["model_load_cpu_seconds"] = load_cpu
    progress(1.0, "done")
    return outcomes
