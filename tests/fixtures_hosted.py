"""Fixtures for the hosted area: a tiny random Llama that speaks through SmolLM2's tokenizer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
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


@contextmanager
def ringfence_process(home: Path, **env: str) -> Iterator[str]:
    """`ringfence serve` on a free loopback port in a process of its own; yields its URL."""
    from tests.live import free_port

    port = free_port()
    environ = {
        **os.environ,
        "RINGFENCE_HOME": str(home),
        "RINGFENCE_MAIL_BACKEND": "none",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src"),
        **env,
    }
    environ.pop("RINGFENCE_DATABASE_URL", None)  # its own data dir's SQLite file
    process = subprocess.Popen(
        [sys.executable, "-m", "ringfence.cli.main", "serve", "--port", str(port)],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{url}/api/v1/releases", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the second ringfence server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
