"""Fixtures for the hosted area: a tiny random Llama that speaks through SmolLM2's tokenizer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

#: where `ringfence demo prepare` leaves the converted demo model (its tokenizer is reused)
SMOLLM2 = Path.home() / ".cache" / "ringfence" / "smollm2-hf"


def write_tiny_llm(directory: Path, *, seed: int = 0) -> Path:
    """A 2-layer random Llama (hidden 64) with the demo model's real tokenizer and template.

    Real enough for the whole inference path (chat template, sampling, log-probabilities,
    context limit of 256 tokens), small enough to load in a second and answer at once.
    """
    if not (SMOLLM2 / "tokenizer.json").exists():
        pytest.skip("the demo model is not prepared: run `ringfence demo prepare`")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=1024,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(SMOLLM2 / name, directory / name)
    (directory / "README.md").write_text("# tiny-llm\nA random model made by the test suite.\n")
    return directory
