"""Tracing: speed against 10^5 and 10^6 recipients, and the robustness table on real SmolLM2.

Each trial issues fresh recipients their copies (the bytes they would download, built in
memory), attacks them, writes the leak to disk in the attack's format and traces it against
the recipients issued so far plus 1,000 simulated ones. Trials run on worker processes, each
with its own lab (own release key), round-robin over attacks.

Environment: TRACE_BENCH_TRIALS (default 20; fine-tuning attacks use max(3, trials // 7)),
TRACE_BENCH_ATTACKS (comma-separated names, default all), TRACE_BENCH_PERF=0 to skip timings,
TRACE_BENCH_WORKERS (processes, default 2), TRACE_BENCH_DEADLINE ("HH:MM" UTC: no trial starts
after it), TRACE_BENCH_LOG (append each trial as a JSON line), TRACE_BENCH_FROM_LOG (build the
table from such a log instead of running the trials), TRACE_BENCH_FIRST_TRIAL (start at this
trial number, so that a later run appending to the same log adds trials with new seeds; the
table keeps one result per attack and trial number). bench/results/trace-trials.jsonl is the
log of the committed table: extend it with TRACE_BENCH_LOG=bench/results/trace-trials.jsonl
(the trials it already holds are not run again), then rebuild with TRACE_BENCH_FROM_LOG set to
the same file.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.attacks import formats as F
from bench.attacks import transforms as T
from bench.common import ratio_row

REF = "smollm2@1.0"
SECTION = "Tracing"
TITLE = "Tracing: leaked copies of SmolLM2-135M (speed vs recipients and parameters, robustness)"


def _lab(root: Path, recipients: int) -> Any:
    from ringfence.catalogue import services as catalogue
    from ringfence.db import transaction
    from ringfence.demo import demo_hf_dir
    from ringfence.fingerprint.services import simulate_recipients
    from ringfence.settings import Settings
    from ringfence.wiring import build

    svc = build(Settings(home=root / "home"))
    svc.prepare()
    with transaction(svc.sessions) as s:
        catalogue.init_organisation(s, "lab")
        release = catalogue.publish(
            s,
            svc.blobs,
            demo_hf_dir(),
            model="smollm2",
            version="1.0",
        )
        simulate_recipients(s, release, recipients, actor="bench")
    return svc


def _copies(svc: Any, root: Path, emails: list[str]) -> list[F.Tensors]:
    from ringfence.catalogue import services as catalogue
    from ringfence.db import transaction
    from ringfence.fingerprint import services as fingerprint

    out = []
    for email in emails:
        target = root / "copies" / email
        with transaction(svc.sessions) as s:
            release = catalogue.get_release(s, REF)
            fingerprint.make_copy(s, svc.blobs, svc.secrets, release, email, target, actor="bench")
        out.append(F.load_dir(target))
        shutil.rmtree(target)
    return out


def _trace(svc: Any, path: Path) -> Any:
    from ringfence.db import transaction
    from ringfence.tracing.services import trace

    with transaction(svc.sessions) as s:
        return trace(svc, s, [path], actor="bench")


Attack = Callable[[list[F.Tensors], np.random.Generator, Path], Path]


def attacks(cfg: dict[str, int], hf: Path, original: F.Tensors) -> dict[str, tuple[int, Attack]]:
    """name -> (colluders, attack writing the leaked file); `original` is the release, decoded."""
    from bench.attacks import finetune

    def st(
        fn: Callable[[list[F.Tensors], np.random.Generator], F.Tensors], dtype: str = "BF16"
    ) -> Attack:
        return lambda c, r, d: F.write_st(fn(c, r), d / "model.safetensors", dtype)

    def gg(fn: Callable[[list[F.Tensors], np.random.Generator], F.Tensors], q: str) -> Attack:
        return lambda c, r, d: F.write_gguf(fn(c, r), d / "leak.gguf", cfg, q)

    def q4k(c: list[F.Tensors], r: np.random.Generator, d: Path) -> Path:
        from bench.attacks.q4k import quantise_q4_k

        return F.write_st(quantise_q4_k(c[0]), d / "model.safetensors", "F32")

    table: dict[str, tuple[int, Attack]] = {
        "exact copy": (1, st(lambda c, r: c[0])),
        "cast fp16": (1, st(lambda c, r: c[0], "F16")),
        "cast fp32": (1, st(lambda c, r: c[0], "F32")),
        "cast bf16 (via fp16)": (1, st(lambda c, r: T.cast(c[0], "F16"))),
        "GGUF Q8_0": (1, gg(lambda c, r: c[0], "Q8_0")),
        "GGUF Q4_0": (1, gg(lambda c, r: c[0], "Q4_0")),
        "Q4_K_M (numpy port of Q4_K)": (1, q4k),
        "Gaussian noise 5% sigma": (1, st(lambda c, r: T.noise(c[0], r, 0.05), "F32")),
        "magnitude pruning 30%": (1, st(lambda c, r: T.prune(c[0], 0.3))),
        "magnitude pruning 50%": (1, st(lambda c, r: T.prune(c[0], 0.5))),
        "MLP-neuron permutation": (1, st(lambda c, r: T.permute_mlp(c[0], r))),
        "attention-head permutation": (
            1,
            st(lambda c, r: T.permute_heads(c[0], r, cfg["heads"], cfg["kv_heads"])),
        ),
        "per-channel rescaling": (1, st(lambda c, r: T.rescale_channels(c[0], r), "F32")),
        "one shard only": (1, st(lambda c, r: T.first_shard(c[0], cfg["layers"]))),
        "full fine-tune (100 AdamW steps)": (
            1,
            st(lambda c, r: finetune.full_finetune(hf, c[0], seed=int(r.integers(1 << 30)))),
        ),
        "LoRA fine-tune merged (100 AdamW steps)": (
            1,
            st(lambda c, r: finetune.lora_finetune(hf, c[0], seed=int(r.integers(1 << 30)))),
        ),
        # the other model: a fine-tune (100 AdamW steps) of the unfingerprinted release, i.e.
        # someone's model outside the recipients, so only the leaker's fingerprint is in it
        "50/50 merge with another fine-tune": (
            1,
            st(
                lambda c, r: T.merge(
                    c[0], finetune.full_finetune(hf, original, seed=int(r.integers(1 << 30)))
                )
            ),
        ),
    }
    table.update(rotations(cfg))
    for k in (2, 4, 8):
        table[f"{k} colluders: average + Q4_0"] = (k, gg(lambda c, r: T.average(c), "Q4_0"))
        table[f"{k} colluders: interleave + Q4_0"] = (
            k,
            gg(lambda c, r: T.interleave(c, r), "Q4_0"),
        )
        table[f"{k} colluders: median + Q4_0"] = (k, gg(lambda c, r: T.median(c), "Q4_0"))
    return table


def rotations(cfg: dict[str, int]) -> dict[str, tuple[int, Attack]]:
    """QuaRot/SpinQuant-style rotations: norms folded, the residual stream rotated by a random
    or a randomised Hadamard Q, alone or followed by 4-bit quantisation, permutations,
    rescaling, and rotations inside the heads."""
    from bench.attacks import rotation as R
    from bench.attacks.q4k import quantise_q4_k

    def make(kind: str, c: list[F.Tensors], r: np.random.Generator) -> F.Tensors:
        d = c[0]["model.embed_tokens.weight"].shape[1]
        q = R.random_hadamard(d, r) if kind == "Hadamard" else R.random_orthogonal(d, r)
        return R.rotate(c[0], q)

    table: dict[str, tuple[int, Attack]] = {}
    for kind in ("random", "Hadamard"):
        name = f"rotation ({kind} Q)"

        def alone(c: list[F.Tensors], r: np.random.Generator, d: Path, k: str = kind) -> Path:
            return F.write_st(make(k, c, r), d / "model.safetensors", "BF16")

        def q4_0(c: list[F.Tensors], r: np.random.Generator, d: Path, k: str = kind) -> Path:
            return F.write_gguf(make(k, c, r), d / "leak.gguf", cfg, "Q4_0")

        def q4_k(c: list[F.Tensors], r: np.random.Generator, d: Path, k: str = kind) -> Path:
            return F.write_st(quantise_q4_k(make(k, c, r)), d / "model.safetensors", "F32")

        table[name] = (1, alone)
        table[f"{name} + Q4_0"] = (1, q4_0)
        table[f"{name} + Q4_K (numpy port)"] = (1, q4_k)

    def shuffled(c: list[F.Tensors], r: np.random.Generator, d: Path) -> Path:
        t = T.rescale_channels(T.permute_mlp(make("random", c, r), r), r)
        return F.write_st(t, d / "model.safetensors", "F32")

    def heads(c: list[F.Tensors], r: np.random.Generator, d: Path) -> Path:
        t = R.rotate_heads(make("random", c, r), r, cfg["heads"], cfg["kv_heads"])
        return F.write_gguf(t, d / "leak.gguf", cfg, "Q4_0")

    table["rotation (random Q) + MLP permutation + rescaling"] = (1, shuffled)
    table["rotation (random Q) + rotations inside heads + Q4_0"] = (1, heads)
    return table


FINETUNES = ("full fine-tune", "LoRA", "50/50 merge")


def trials_of(name: str, trials: int) -> int:
    """Trials an attack gets: fine-tuning attacks (minutes each on CPU) max(3, trials // 7)."""
    return max(3, trials // 7) if name.startswith(FINETUNES) else trials


# --- one trial, in a worker process with its own lab -------------------------------------

_WORKER: dict[str, Any] = {}


def _worker_start(parent: str, threads: int) -> None:
    """Publish the demo model into a lab of this process's own, and decode the release once."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # torch is imported later, by fine-tunes
    from ringfence.catalogue import services as catalogue
    from ringfence.db import transaction
    from ringfence.demo import demo_hf_dir
    from ringfence.fingerprint import services as fingerprint

    root = Path(parent) / f"worker-{os.getpid()}"
    root.mkdir()
    svc = _lab(root, 1000)
    hf = demo_hf_dir()
    original = F.load_dir(hf)
    with transaction(svc.sessions) as s:
        release = catalogue.get_release(s, REF)
        key = fingerprint.release_key(svc.secrets, release)
        params = fingerprint.release_params(release)
        carriers = set()
        for artifact in release.artifacts:
            plan = fingerprint.artifact_plan(key, artifact, params)
            if plan is not None:
                carriers |= {t.name for t in plan.tensors}
    _WORKER.update(
        root=root,
        svc=svc,
        original=original,
        carriers=carriers,
        attacks=attacks(F.config(hf), hf, original),
    )


def _copy_in_memory(email: str) -> F.Tensors:
    """The tensors of `email`'s copy, from the bytes she would download (never written to
    disk); tensors that carry no fingerprint are the decoded original's, shared."""
    from ringfence.catalogue import services as catalogue
    from ringfence.db import transaction
    from ringfence.fingerprint import services as fingerprint
    from ringfence.formats.safetensors import bf16_to_f32

    svc, original, carriers = _WORKER["svc"], _WORKER["original"], _WORKER["carriers"]
    out = dict(original)
    with transaction(svc.sessions) as s:
        release = catalogue.get_release(s, REF)
        recipient = fingerprint.register_recipient(s, release, email, actor="bench")
        for artifact in release.artifacts:
            index = fingerprint.artifact_index(artifact)
            if index is None:
                continue
            data = np.empty(artifact.size, dtype=np.uint8)
            pos = 0
            for chunk in fingerprint.artifact_bytes(
                svc.blobs, svc.secrets, release, artifact, recipient.index
            ):
                data[pos : pos + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                pos += len(chunk)
            for t in index.tensors:
                if t.name not in carriers:
                    continue
                raw = data[t.begin : t.end]
                if t.dtype == "BF16":
                    values = bf16_to_f32(raw.view("<u2"))
                else:
                    values = raw.view({"F16": "<f2", "F32": "<f4"}[t.dtype]).astype(np.float32)
                out[t.name] = np.asarray(values, dtype=np.float32).reshape(t.shape)
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run_trial(task: tuple[str, int]) -> dict[str, Any]:
    """One trial of one attack: fresh recipients' copies, the leak written to disk, traced."""
    name, t = task
    colluders, attack = _WORKER["attacks"][name]
    started = time.perf_counter()
    emails = [f"{_slug(name)}-{t}-{i}@bench.invalid" for i in range(colluders)]
    rng = np.random.default_rng(1000 * t + len(name))
    copies = [_copy_in_memory(e) for e in emails]
    leak_dir = _WORKER["root"] / "leak"
    leak_dir.mkdir(exist_ok=True)
    try:
        leaked = attack(copies, rng, leak_dir)
        del copies
        result = _trace(_WORKER["svc"], leaked)
    finally:
        shutil.rmtree(leak_dir, ignore_errors=True)
    guilty = set(emails)
    named = {a.recipient for a in result.accused}
    zs = [a.z for a in result.accused if a.recipient in guilty and a.z is not None]
    best = max(zs) if zs else (result.candidates[0]["z"] if result.candidates else 0.0)
    return {
        "attack": name,
        "trial": t,
        "colluders": colluders,
        "identified": bool(named & guilty),
        "colluders accused": len(named & guilty),
        "innocents accused": len(named - guilty),
        "best z": float(best),
        "threshold z": float(result.threshold_z or 0.0),
        "code length": int(result.code_length),
        "seconds": time.perf_counter() - started,
    }


# --- the suite -----------------------------------------------------------------------------


def _deadline(text: str) -> float | None:
    """TRACE_BENCH_DEADLINE: "HH:MM" (UTC, today) or seconds since the epoch."""
    if not text:
        return None
    if ":" in text:
        hours, minutes = (int(x) for x in text.split(":"))
        now = time.gmtime()
        return float(calendar.timegm((*now[:3], hours, minutes, 0)))
    return float(text)


def run_trials(
    tasks: list[tuple[str, int]], workers: int, deadline: float | None, log: Path | None
) -> list[dict[str, Any]]:
    """Run trials on `workers` processes, round-robin over attacks; none starts after
    `deadline`, so a cut-short suite still has every attack at (nearly) the same count."""
    import importlib
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    # the workers import this module by its package name (bench/run.py loads it from a path)
    here = importlib.import_module("bench.trace_bench")
    results: list[dict[str, Any]] = []
    threads = max(1, (os.cpu_count() or 1) // workers)
    with tempfile.TemporaryDirectory(prefix="trace-bench-") as tmp:
        pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=here._worker_start,
            initargs=(tmp, threads),
        )
        with pool:
            queue = iter(tasks)
            pending: set[Future[dict[str, Any]]] = set()

            def submit() -> None:
                if deadline is not None and time.time() >= deadline:
                    return
                task = next(queue, None)
                if task is not None:
                    pending.add(pool.submit(here.run_trial, task))

            for _ in range(workers):
                submit()
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    row = future.result()
                    results.append(row)
                    if log is not None:
                        with log.open("a") as fh:
                            fh.write(json.dumps(row) + "\n")
                    print(
                        f"{row['attack']} #{row['trial']}: identified {row['identified']}, "
                        f"innocents {row['innocents accused']}, z {row['best z']:.1f}, "
                        f"{row['seconds']:.0f} s",
                        file=sys.stderr,
                        flush=True,
                    )
                    submit()
    return results


def table(names: list[str], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the robustness table (attack, trials, identified, innocents accused, weakest)."""
    # one result per (attack, trial): a later run appending to the same log replaces a trial
    latest = {(r["attack"], r["trial"]): r for r in results}
    rows = []
    for name in names:
        mine = [r for (attack, _), r in latest.items() if attack == name]
        if not mine:
            continue
        rows.append(
            {
                "attack": name,
                "trials": len(mine),
                "identified": sum(bool(r["identified"]) for r in mine),
                "innocents accused": sum(int(r["innocents accused"]) for r in mine),
                "colluders accused (mean)": round(
                    float(np.mean([r["colluders accused"] for r in mine])), 2
                ),
                "weakest best-colluder z": round(min(r["best z"] for r in mine), 1),
                "weakest z / threshold": _weakest_ratio(mine),
                "seconds per trial": round(float(np.mean([r["seconds"] for r in mine])), 1),
            }
        )
    return rows


def _weakest_ratio(trials: list[dict[str, Any]]) -> str:
    """min over trials of best z / the trace's accusation threshold (z units), e.g. "1.62x"."""
    ratios = [r["best z"] / r["threshold z"] for r in trials if r.get("threshold z")]
    return f"{min(ratios):.2f}x" if ratios else ""


def robustness(
    trials: int,
    only: set[str] | None = None,
    *,
    workers: int = 2,
    deadline: float | None = None,
    log: Path | None = None,
    from_log: Path | None = None,
) -> list[dict[str, Any]]:
    """The robustness table: run the trials (or read a log of them, `from_log`)."""
    names = [n for n in attacks({}, Path(), {}) if not only or n in only]
    if from_log is not None:
        results = [json.loads(line) for line in from_log.read_text().splitlines() if line]
        return table(names, results)
    rounds = max(trials_of(n, trials) for n in names)
    first = int(os.environ.get("TRACE_BENCH_FIRST_TRIAL", "0"))
    tasks = [(n, t) for t in range(first, rounds) for n in names if t < trials_of(n, trials)]
    if log is not None and log.exists():
        # resuming into the same log: the (attack, trial) pairs it holds are not run again
        held = {(r["attack"], r["trial"]) for r in map(json.loads, log.read_text().splitlines())}
        tasks = [t for t in tasks if t not in held]
    return table(names, run_trials(tasks, workers, deadline, log))


def _markdown(rows: list[dict[str, Any]]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)


def _cli_trace(home: Path, leak: Path) -> tuple[float, float, list[str]]:
    """`ringfence trace LEAK --json` as a user runs it: wall seconds, peak RSS (MiB), accused."""
    import subprocess

    env = {**os.environ, "RINGFENCE_HOME": str(home)}
    env.pop("RINGFENCE_DATABASE_URL", None)
    script = (
        "import resource, sys; from ringfence.cli.main import run\n"
        "try:\n    code = run(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(f'PEAK {peak}', file=sys.stderr)\n"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script, "trace", str(leak), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - started
    peaks = [int(x.split()[1]) / 1024 for x in done.stderr.splitlines() if x.startswith("PEAK")]
    peak = peaks[0] if peaks else float("nan")
    try:
        accused = [a["recipient"] for a in json.loads(done.stdout)["accused"]]
    except (ValueError, KeyError):
        accused = []
    return elapsed, peak, accused


def _read_seconds(svc: Any, leak: Path) -> float:
    """Seconds to align and read every carrier tensor of a leak (no scoring)."""
    from ringfence.catalogue import services as catalogue
    from ringfence.db import transaction
    from ringfence.fingerprint import services as fingerprint
    from ringfence.tracing.services import read_symbols
    from ringfence.tracing.suspect import open_suspect

    with transaction(svc.sessions) as s, open_suspect([leak], hash_files=False) as suspect:
        release = catalogue.get_release(s, REF)
        key = fingerprint.release_key(svc.secrets, release)
        started = time.perf_counter()
        read_symbols(svc, release, key, suspect, [])
        return time.perf_counter() - started


def performance(
    sizes: tuple[tuple[int, float], ...] = ((100_000, 10.0), (1_000_000, 60.0)),
    score_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000),
) -> list[dict[str, Any]]:
    """Trace time (the CLI, as a user runs it) of a Q4_0 leak against 10^5 and 10^6
    recipients with its peak memory; how reading grows with parameters, scoring with
    recipients."""
    from ringfence.catalogue import services as catalogue
    from ringfence.db import transaction
    from ringfence.fingerprint import code
    from ringfence.fingerprint import services as fingerprint
    from ringfence.fingerprint.accuse import score_all
    from ringfence.fingerprint.services import simulate_recipients

    out = []
    hf_cfg = F.config(Path(__import__("ringfence.demo").demo.demo_hf_dir()))
    with tempfile.TemporaryDirectory(prefix="trace-perf-") as tmp:
        root = Path(tmp)
        first = sizes[0][0]
        svc = _lab(root, first - 1)
        copy = _copies(svc, root, ["leaker@bench.invalid"])[0]
        leak = F.write_gguf(copy, root / "leak.gguf", hf_cfg, "Q4_0")
        shard = T.first_shard(copy, hf_cfg["layers"])
        full_params = sum(v.size for v in copy.values() if v.ndim == 2)
        half_params = sum(v.size for v in shard.values() if v.ndim == 2)
        half = F.write_gguf(shard, root / "half.gguf", hf_cfg, "Q4_0")
        del copy, shard
        full_read = min(_read_seconds(svc, leak) for _ in range(2))
        half_read = min(_read_seconds(svc, half) for _ in range(2))
        out.append(
            ratio_row(
                SECTION,
                f"read a Q4_0 leak (align + symbols), {full_params / 1e6:.0f}M matrix weights",
                full_read,
                "s",
                f"first shard: embeddings + half the layers, {half_params / 1e6:.0f}M",
                half_read,
                higher_is_better=False,
                note=f"linear in parameters expected ({full_params / half_params:.2f}x); "
                "best of 2; no scoring",
            )
        )
        registered = first
        for total, goal in sizes:
            if total > registered:
                with transaction(svc.sessions) as s:
                    simulate_recipients(
                        s, catalogue.get_release(s, REF), total - registered, actor="bench"
                    )
                registered = total
            elapsed, peak, accused = _cli_trace(root / "home", leak)
            ok = accused == ["leaker@bench.invalid"]
            out.append(
                ratio_row(
                    SECTION,
                    f"`ringfence trace` Q4_0 leak of SmolLM2-135M vs {total:,} recipients",
                    elapsed,
                    "s",
                    f"goal {goal:g} s",
                    goal,
                    higher_is_better=False,
                    goal=1.0,
                    note=f"identified: {ok}; peak RSS {peak:.0f} MiB; whole command, "
                    "interpreter start included",
                )
            )
        key = b"b" * 32
        with transaction(svc.sessions) as s:  # the demo release's code, fitted to its matrices
            length = fingerprint.release_params(catalogue.get_release(s, REF)).design.length
        limits = code.thresholds(key, length, code.CodeParams().cutoff)
        y = np.random.default_rng(0).uniform(-1, 1, length)
        base = None
        for n in score_sizes:
            started = time.perf_counter()
            score_all(key, limits, y, np.arange(n))
            t = time.perf_counter() - started
            base = base or t
            out.append(
                ratio_row(
                    SECTION,
                    f"score {n:,} recipients ({length:,}-symbol code)",
                    t,
                    "s",
                    f"{score_sizes[0]:,} recipients",
                    base,
                    higher_is_better=False,
                    note=f"linear in recipients expected ({n // score_sizes[0]}x)",
                )
            )
            whole = t
        # the tracer's prefix screen: everyone on the least code, the best SCREEN_KEEP in full
        least = code.CodeParams().least_length
        started = time.perf_counter()
        scored = score_all(key, limits, y, np.arange(score_sizes[-1]), screen=least)
        t = time.perf_counter() - started
        out.append(
            ratio_row(
                SECTION,
                f"score {score_sizes[-1]:,} recipients, screened on the first {least:,} symbols",
                t,
                "s",
                f"the same scored on all {length:,}",
                whole,
                higher_is_better=False,
                note=f"{scored.screened_out:,} screened out; about {least / length:.2f}x expected",
            )
        )
    return out


PREVIOUS = Path(__file__).resolve().parent / "results" / "trace.json"


def _previous_rows() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The last committed run's timing rows and robustness rows (by attack), if any."""
    if not PREVIOUS.exists():
        return [], {}
    rows = json.loads(PREVIOUS.read_text()).get("rows", [])
    timings = [r for r in rows if "table" not in r]
    attacks_: dict[str, dict[str, Any]] = {}
    for r in rows:
        lines = r.get("table", "").splitlines()
        if len(lines) < 3:
            continue
        head = [h.strip() for h in lines[0].strip("|").split("|")]
        for line in lines[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            attacks_[cells[0]] = dict(zip(head, cells, strict=False))
    return timings, attacks_


def run() -> list[dict[str, Any]]:
    """Rows for bench/run.py.

    TRACE_BENCH_KEEP_PREVIOUS=1 keeps, from the last committed results, the timing rows when
    TRACE_BENCH_PERF=0 and the robustness rows of attacks that had no trial this time (their
    trial counts marked "previous run").
    """
    trials = int(os.environ.get("TRACE_BENCH_TRIALS", "20"))
    only = {s.strip() for s in os.environ.get("TRACE_BENCH_ATTACKS", "").split(",") if s.strip()}
    log = os.environ.get("TRACE_BENCH_LOG")
    from_log = os.environ.get("TRACE_BENCH_FROM_LOG")
    rows: list[dict[str, Any]] = []
    if os.environ.get("TRACE_BENCH_PERF", "1") != "0":
        rows += performance()
    found = robustness(
        trials,
        only or None,
        workers=int(os.environ.get("TRACE_BENCH_WORKERS", "2")),
        deadline=_deadline(os.environ.get("TRACE_BENCH_DEADLINE", "")),
        log=Path(log) if log else None,
        from_log=Path(from_log) if from_log else None,
    )
    if os.environ.get("TRACE_BENCH_KEEP_PREVIOUS") == "1":
        timings, previous = _previous_rows()
        if os.environ.get("TRACE_BENCH_PERF", "1") == "0":
            rows += [{**r, "note": f"{r.get('note', '')} (previous run)".strip()} for r in timings]
        ran = {r["attack"] for r in found}
        order = [n for n in attacks({}, Path(), {}) if not only or n in only or n in previous]
        merged = []
        for name in order:
            if name in ran:
                merged.append(next(r for r in found if r["attack"] == name))
            elif name in previous:
                old = dict(previous[name])
                old["trials"] = f"{old['trials']} (previous run)"
                merged.append(old)
        found = merged
    counts = sorted({str(r["trials"]) for r in found})
    rows.append(
        {
            "section": SECTION,
            "name": f"robustness (trials per attack: {', '.join(map(str, counts))})",
            "table": _markdown(found),
        }
    )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row.get("table") or row)
