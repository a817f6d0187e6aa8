"""Tracing: speed against 10^5 and 10^6 recipients, and the robustness table on real SmolLM2.

Environment: TRACE_BENCH_TRIALS (default 20; fine-tuning attacks use max(3, trials // 7)),
TRACE_BENCH_ATTACKS (comma-separated names, default all), TRACE_BENCH_PERF=0 to skip timings.
"""

from __future__ import annotations

import os
import resource
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


def _lab(root: Path, recipients: int) -> Any:
    from ringfence.catalogue import services as catalogue
    from ringfence.db import transaction
    from ringfence.demo import demo_hf_dir
    from ringfence.settings import Settings
    from ringfence.tracing.services import simulate_recipients
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


def attacks(cfg: dict[str, int], hf: Path) -> dict[str, tuple[int, Attack]]:
    """name -> (colluders, attack writing the leaked file)."""
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
        "LoRA fine-tune merged": (
            1,
            st(lambda c, r: finetune.lora_finetune(hf, c[0], seed=int(r.integers(1 << 30)))),
        ),
        "50/50 merge with another fine-tune": (
            1,
            st(
                lambda c, r: T.merge(
                    c[0], finetune.full_finetune(hf, c[1], seed=int(r.integers(1 << 30)))
                )
            ),
        ),
    }
    for k in (2, 4, 8):
        table[f"{k} colluders: average + Q4_0"] = (k, gg(lambda c, r: T.average(c), "Q4_0"))
        table[f"{k} colluders: interleave + Q4_0"] = (
            k,
            gg(lambda c, r: T.interleave(c, r), "Q4_0"),
        )
        table[f"{k} colluders: median + Q4_0"] = (k, gg(lambda c, r: T.median(c), "Q4_0"))
    return table


FINETUNES = ("full fine-tune", "LoRA", "50/50 merge")


def robustness(trials: int, only: set[str] | None = None) -> list[dict[str, Any]]:
    """Rows of the robustness table (attack, trials, identified, innocents accused, weakest)."""
    from ringfence.demo import demo_hf_dir

    hf = demo_hf_dir()
    cfg = F.config(hf)
    rows = []
    with tempfile.TemporaryDirectory(prefix="trace-bench-") as tmp:
        root = Path(tmp)
        svc = _lab(root, 1000)
        serial = 0
        for name, (colluders, attack) in attacks(cfg, hf).items():
            if only and name not in only:
                continue
            n = max(3, trials // 7) if name.startswith(FINETUNES) else trials
            identified = innocents = 0
            weakest = float("inf")
            started = time.perf_counter()
            for t in range(n):
                rng = np.random.default_rng(1000 * t + len(name))
                emails = [f"t{serial}-{i}@bench.invalid" for i in range(max(colluders, 2))]
                serial += 1
                copies = _copies(svc, root, emails)
                leak_dir = root / "leak"
                leak_dir.mkdir(exist_ok=True)
                result = _trace(svc, attack(copies, rng, leak_dir))
                shutil.rmtree(leak_dir)
                guilty = set(emails[:colluders])
                named = {a.recipient for a in result.accused}
                innocents += len(named - guilty)
                identified += bool(named & guilty)
                zs = [a.z for a in result.accused if a.recipient in guilty and a.z is not None]
                best = max(zs) if zs else (result.candidates[0]["z"] if result.candidates else 0.0)
                weakest = min(weakest, best)
                print(f"{name} #{t}: accused {sorted(named)} z {best:.1f}", file=sys.stderr)
            rows.append(
                {
                    "attack": name,
                    "trials": n,
                    "identified": identified,
                    "innocents accused": innocents,
                    "weakest best-colluder z": round(weakest, 1),
                    "seconds per trial": round((time.perf_counter() - started) / n, 1),
                }
            )
    return rows


def _markdown(rows: list[dict[str, Any]]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)


def performance() -> list[dict[str, Any]]:
    """Trace time of a Q4_0 leak against 10^5 and 10^6 recipients; scoring growth."""
    from ringfence.fingerprint import code
    from ringfence.tracing.accuse import score_all

    out = []
    hf_cfg = F.config(Path(__import__("ringfence.demo").demo.demo_hf_dir()))
    with tempfile.TemporaryDirectory(prefix="trace-perf-") as tmp:
        root = Path(tmp)
        svc = _lab(root, 100_000 - 1)
        copy = _copies(svc, root, ["leaker@bench.invalid"])[0]
        leak = F.write_gguf(copy, root / "leak.gguf", hf_cfg, "Q4_0")
        for total, goal in ((100_000, 10.0), (1_000_000, 60.0)):
            if total > 100_000:
                from ringfence.catalogue import services as catalogue
                from ringfence.db import transaction
                from ringfence.tracing.services import simulate_recipients

                with transaction(svc.sessions) as s:
                    simulate_recipients(
                        s, catalogue.get_release(s, REF), total - 100_000, actor="bench"
                    )
            started = time.perf_counter()
            result = _trace(svc, leak)
            elapsed = time.perf_counter() - started
            ok = [a.recipient for a in result.accused] == ["leaker@bench.invalid"]
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            out.append(
                ratio_row(
                    SECTION,
                    f"trace Q4_0 leak of SmolLM2-135M vs {total:,} recipients",
                    elapsed,
                    "s",
                    f"goal {goal:g} s",
                    goal,
                    higher_is_better=False,
                    goal=1.0,
                    note=f"identified: {ok}; peak RSS {peak:.0f} MiB",
                )
            )
        key = b"b" * 32
        length = code.CodeParams().design.length
        limits = code.thresholds(key, length, code.CodeParams().cutoff)
        y = np.random.default_rng(0).uniform(-1, 1, length)
        base = None
        for n in (10_000, 100_000):
            started = time.perf_counter()
            score_all(key, limits, y, np.arange(n))
            t = time.perf_counter() - started
            base = base or t
            out.append(
                ratio_row(
                    SECTION,
                    f"score {n:,} recipients",
                    t,
                    "s",
                    "10,000 recipients",
                    base,
                    higher_is_better=False,
                    note="linear in recipients expected (10x)",
                )
            )
    return out


def run() -> list[dict[str, Any]]:
    """Rows for bench/run.py."""
    trials = int(os.environ.get("TRACE_BENCH_TRIALS", "20"))
    only = {s.strip() for s in os.environ.get("TRACE_BENCH_ATTACKS", "").split(",") if s.strip()}
    rows: list[dict[str, Any]] = []
    if os.environ.get("TRACE_BENCH_PERF", "1") != "0":
        rows += performance()
    table = robustness(trials, only or None)
    rows.append({"section": SECTION, "name": "robustness", "table": _markdown(table)})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row.get("table") or row)
