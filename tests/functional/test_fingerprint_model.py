"""The real SmolLM2: a fingerprinted copy loads and generates, and its recipients are found
after Q4_0 re-quantisation and after two colluders average their copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ringfence.fingerprint import accuse, code, plan, read, stream
from ringfence.formats.index import read_index
from ringfence.formats.safetensors import bf16_words

pytestmark = [pytest.mark.slow, pytest.mark.no_database]

KEY = b"functional-test-release-key".ljust(32, b"\0")
RECIPIENTS = 100_000
ALICE, BOB = 17_017, 86_420


@pytest.fixture(scope="module")
def model() -> Path:
    from ringfence.demo import demo_hf_dir

    return demo_hf_dir() / "model.safetensors"


@pytest.fixture(scope="module")
def setup(model: Path) -> tuple[plan.FingerprintPlan, np.ndarray]:
    p = plan.build_plan(read_index(model), KEY)
    return p, code.thresholds(KEY, p.code_length, code.CodeParams().cutoff)


@pytest.fixture(scope="module")
def copies(model: Path, setup: tuple[plan.FingerprintPlan, np.ndarray]) -> dict[int, np.ndarray]:
    p, limits = setup
    return {
        r: np.frombuffer(
            b"".join(stream.fingerprinted_bytes(model, p, code.codeword(KEY, r, limits))),
            dtype=np.uint8,
        )
        for r in (ALICE, BOB)
    }


def _symbols(original: np.ndarray, p: plan.FingerprintPlan, suspect: dict[str, np.ndarray]):
    evidence = read.SymbolEvidence.empty(p.code_length)
    for t in p.tensors:
        evidence.add(
            read.tensor_evidence(
                t.dtype,
                original[t.begin : t.end],
                suspect[t.name],
                t.seed,
                p.code_length,
                p.density_log2,
            )
        )
    return read.soft_symbols(evidence).symbols


def _rank(limits: np.ndarray, y: np.ndarray, top: int) -> tuple[list[accuse.Candidate], float]:
    ids = np.arange(RECIPIENTS)
    verdict = accuse.decide(accuse.score_all(KEY, limits, y, ids), ids, limits, y, top=top)
    return list(verdict.candidates), verdict.threshold_z


def _values(raw: np.ndarray, p: plan.FingerprintPlan) -> dict[str, np.ndarray]:
    return {t.name: read.decode(t.dtype, raw[t.begin : t.end]) for t in p.tensors}


def test_fingerprinted_copy_loads_and_generates(
    model: Path, copies: dict[int, np.ndarray], tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for item in model.parent.iterdir():
        if item.name != "model.safetensors":
            shutil.copy(item, tmp_path / item.name)
    (tmp_path / "model.safetensors").write_bytes(copies[ALICE].tobytes())
    assert read_index(tmp_path / "model.safetensors").tensors == read_index(model).tensors
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    lm = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    prompt = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = lm.generate(**prompt, max_new_tokens=8, do_sample=False)
    text = tokenizer.decode(out[0][prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in text


def test_recipient_found_after_q4_0_requantisation(
    model: Path, setup: tuple[plan.FingerprintPlan, np.ndarray], copies: dict[int, np.ndarray]
) -> None:
    import gguf

    p, limits = setup
    original = np.fromfile(model, dtype=np.uint8)
    q4 = gguf.GGMLQuantizationType.Q4_0
    suspect = {
        name: gguf.quants.dequantize(gguf.quants.quantize(v.reshape(-1, 32), q4), q4).reshape(-1)
        for name, v in _values(copies[ALICE], p).items()
    }
    y = _symbols(original, p, suspect)
    ranked, z_cut = _rank(limits, y, top=3)
    print(f"Q4_0: z {ranked[0].z:.1f} (threshold {z_cut:.2f}), next {ranked[1].z:.2f}")
    assert ranked[0].index == ALICE and ranked[0].accused
    assert not ranked[1].accused


def test_two_colluders_averaging_are_both_accused(
    model: Path, setup: tuple[plan.FingerprintPlan, np.ndarray], copies: dict[int, np.ndarray]
) -> None:
    p, limits = setup
    original = np.fromfile(model, dtype=np.uint8)
    alice, bob = _values(copies[ALICE], p), _values(copies[BOB], p)
    # the colluders average in float and save bf16 again, as a leak would be
    suspect = {
        n: read.decode("BF16", bf16_words((alice[n] + bob[n]) / 2).view(np.uint8)) for n in alice
    }
    y = _symbols(original, p, suspect)
    ranked, z_cut = _rank(limits, y, top=4)
    print("averaged:", [(a.index, round(a.z, 1)) for a in ranked], f"threshold {z_cut:.2f}")
    assert {a.index for a in ranked if a.accused} == {ALICE, BOB}
