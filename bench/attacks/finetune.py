"""Model-level attacks with torch: full fine-tuning (AdamW) and LoRA merged back.

Sized for a 2-core CPU: 100 optimiser steps on short windows (`LENGTH` tokens) of real text,
batch 1. The attack's strength is the number of steps and the learning rate (Adam moves every
weight by up to `lr` per step, 100 steps of 2e-5 being ~10x the fingerprint's one-ulp
amplitude), not the window length, which only sets the cost of a step. The model skeleton is
built once per process and copied, since building it initialises 135M weights for nothing.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import numpy as np
from bench.attacks.formats import Tensors


def _text() -> str:
    """Some real text: Python's licence, as shipped with the interpreter."""
    for candidate in (Path(sys.base_prefix) / "lib" / "python3.11" / "LICENSE.txt",):
        if candidate.exists():
            return candidate.read_text()
    return (Path(__file__).parents[2] / "README.md").read_text()


#: tokens per training window
LENGTH = 32
_SKELETONS: dict[Path, Any] = {}


def _model(directory: Path, tensors: Tensors):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    skeleton = _SKELETONS.get(directory)
    if skeleton is None:
        config = AutoConfig.from_pretrained(directory)
        skeleton = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        _SKELETONS[directory] = skeleton
    model = copy.deepcopy(skeleton)
    state = {n: torch.from_numpy(v.copy()) for n, v in tensors.items()}
    model.load_state_dict(state, strict=False)
    if model.config.tie_word_embeddings:
        model.tie_weights()
    return model


def _batches(directory: Path, steps: int, length: int, seed: int):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(directory / "tokenizer.json")).encode(_text()).ids
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        start = int(rng.integers(0, max(1, len(ids) - length - 1)))
        yield ids[start : start + length]


def full_finetune(
    directory: Path, tensors: Tensors, steps: int = 100, lr: float = 2e-5, seed: int = 0
) -> Tensors:
    """`steps` AdamW steps of causal-LM training on text; returns the trained weights."""
    import torch

    torch.manual_seed(seed)
    model = _model(directory, tensors)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
    for chunk in _batches(directory, steps, LENGTH, seed):
        x = torch.tensor([chunk])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return {
        n: p.detach().numpy().astype(np.float32)
        for n, p in model.state_dict().items()
        if n in tensors
    }


def lora_finetune(
    directory: Path,
    tensors: Tensors,
    steps: int = 100,
    rank: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
) -> Tensors:
    """LoRA (rank `rank`) on q/v/up/down, trained `steps` AdamW steps, merged back: W + BA."""
    import torch

    torch.manual_seed(seed)
    model = _model(directory, tensors)
    for p in model.parameters():
        p.requires_grad_(False)
    adapters: dict[str, tuple[torch.nn.Parameter, torch.nn.Parameter]] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in (
            "q_proj",
            "v_proj",
            "up_proj",
            "down_proj",
        ):
            a = torch.nn.Parameter(torch.randn(rank, module.in_features) * 0.01)
            b = torch.nn.Parameter(torch.zeros(module.out_features, rank))
            adapters[name + ".weight"] = (a, b)
            base = module.forward

            def forward(x, base=base, a=a, b=b):  # type: ignore[no-untyped-def]
                return base(x) + (x @ a.T) @ b.T * 2.0

            module.forward = forward  # type: ignore[method-assign]
    params = [p for pair in adapters.values() for p in pair]
    opt = torch.optim.AdamW(params, lr=lr, fused=True)
    model.train()
    for chunk in _batches(directory, steps, LENGTH, seed):
        x = torch.tensor([chunk])
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    out = dict(tensors)
    for name, (a, b) in adapters.items():
        out[name] = (tensors[name] + (b @ a).detach().numpy() * 2.0).astype(np.float32)
    return out
