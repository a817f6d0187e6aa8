"""The converter on the real SmolLM2 GGUF, checked against transformers' own GGUF loading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ringfence.demo import demo_gguf, demo_hf_dir

pytestmark = [pytest.mark.slow, pytest.mark.no_database]
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, there was a",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "The licence allows researchers to",
]
TEXTS = [
    "Hello   world\n\n  tabs\tthere",
    "12345 and 3.14159, 2024-11-27",
    "naïve café 日本語 🤖",
    "<|im_start|>system\nYou are helpful.<|im_end|>",
    "    return x ** 2  # squared",
]


@pytest.fixture(scope="module")
def reference() -> tuple[Any, Any]:
    """transformers' model and tokenizer loaded straight from the GGUF (dequantised to fp32)."""
    gguf = demo_gguf()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def converted() -> Path:
    return demo_hf_dir()


def test_weights_are_the_references_rounded_to_bf16(
    reference: tuple[Any, Any], converted: Path
) -> None:
    """Bit-exact: same names, same rotary row order, same values once rounded to bf16."""
    from safetensors.torch import load_file

    ours = load_file(str(converted / "model.safetensors"))
    theirs = reference[0].state_dict()
    assert "lm_head.weight" not in ours  # tied: the head is the embedding
    assert set(ours) == set(theirs) - {"lm_head.weight"}
    for name, tensor in ours.items():
        assert tensor.dtype == torch.bfloat16, name
        assert torch.equal(tensor, theirs[name].to(torch.bfloat16)), name


def test_greedy_next_tokens_match(reference: tuple[Any, Any], converted: Path) -> None:
    """Same argmax as the fp32 reference, unless bf16 rounding could honestly flip it.

    The only difference between the two models is bf16 rounding of the weights (checked bit-exact
    above), so a prediction may differ only where the reference's top two logits are closer than
    the largest logit change rounding caused; then ours must be the reference's runner-up. The
    change itself must stay small, or the rounding is not the only difference.
    """
    model, tokenizer = reference
    ours = transformers.AutoModelForCausalLM.from_pretrained(str(converted), dtype=torch.float32)
    decided = 0
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            want = model(ids).logits[0, -1]
            got = ours(ids).logits[0, -1]
        drift = (want - got).abs().max().item()
        assert drift < 0.5, f"{prompt!r}: logits moved by {drift}"
        top = torch.topk(want, 2)
        margin = (top.values[0] - top.values[1]).item()
        if margin > 2 * drift:
            decided += 1
            assert got.argmax().item() == top.indices[0].item(), prompt
        else:
            assert got.argmax().item() in top.indices.tolist(), prompt
    assert decided >= 3  # the test must mostly be decided by the margin, not by the fallback


def test_tokenizer_matches_the_gguf_tokenizer(reference: tuple[Any, Any], converted: Path) -> None:
    theirs = reference[1]
    ours = transformers.AutoTokenizer.from_pretrained(str(converted))
    for text in TEXTS + PROMPTS:
        assert ours.encode(text) == theirs.encode(text), text
    assert ours.decode(ours.encode("<|im_start|>hi<|im_end|>"), skip_special_tokens=True) == "hi"
    assert ours.eos_token == "<|im_end|>" and ours.bos_token == "<|im_start|>"
    chat = ours.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    assert chat.startswith("<|im_start|>system\n") and "<|im_start|>user\nHi<|im_end|>" in chat


def test_config_describes_smollm2(converted: Path) -> None:
    config = json.loads((converted / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["hidden_size"], config["num_hidden_layers"]) == (576, 30)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (9, 3)
    assert config["tie_word_embeddings"] is True and config["torch_dtype"] == "bfloat16"
    assert config["rope_theta"] == 100000.0 and config["vocab_size"] == 49152
    assert json.loads((converted / "generation_config.json").read_text())["eos_token_id"] == 2


def test_cli_converts_and_refuses_a_full_directory(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "hf"
    result = cli("convert", "gguf-to-hf", str(demo_gguf()), str(out))
    assert result.code == 0, result.err
    assert (out / "model.safetensors").stat().st_size == (
        demo_hf_dir() / "model.safetensors"
    ).stat().st_size
    again = cli("convert", "gguf-to-hf", str(demo_gguf()), str(out))
    assert again.code == 2 and "not empty" in again.err
