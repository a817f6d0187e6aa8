"""A Hugging Face `tokenizer.json` rebuilt from a GGUF's byte-level BPE metadata.

A GGUF carries its tokenizer as metadata under llama.cpp's keys (`tokenizer.ggml.tokens`,
`.merges`, `.token_type`, `.pre`, ...), not as a `tokenizer.json`. We rebuild the pipeline with
the `tokenizers` library; the pre-tokenizer follows llama.cpp's `llama_vocab` for the `pre`
name the file states (llama.cpp/src/llama-vocab.cpp), so text splits as the model was trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from ringfence.errors import UnsupportedFormat

# llama.cpp token types (llama_token_type in llama.h)
CONTROL = 3
USER_DEFINED = 4

_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _pre_tokenizer(pre: str) -> pre_tokenizers.PreTokenizer:
    """The split before BPE, for llama.cpp's `tokenizer.ggml.pre` names that we support."""
    if pre in ("smollm", "starcoder", "refact"):
        # llama.cpp: "\p{N}" then the GPT-2 pattern, i.e. every digit on its own.
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
    if pre in ("gpt-2", "gpt2", "default"):
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("llama3", "llama-v3", "llama-bpe"):
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    raise UnsupportedFormat(
        f"the GGUF's pre-tokenizer {pre!r} is not one ringfence converts",
        hint="supported: smollm, starcoder, gpt-2, llama-bpe",
    )


@dataclass(frozen=True)
class GgufVocabulary:
    """The tokenizer metadata of a GGUF, under llama.cpp's names."""

    model: str  # tokenizer.ggml.model
    pre: str  # tokenizer.ggml.pre
    tokens: Sequence[str]
    token_types: Sequence[int]
    merges: Sequence[str]
    special_ids: dict[str, int]  # "bos" / "eos" / "unk" / "pad" -> token id
    add_bos: bool  # tokenizer.ggml.add_bos_token


def build_tokenizer(vocab: GgufVocabulary) -> Tokenizer:
    """A byte-level BPE `Tokenizer` equivalent to the GGUF's vocabulary."""
    if vocab.model != "gpt2":
        raise UnsupportedFormat(
            f"the GGUF's tokenizer is {vocab.model!r}; ringfence converts byte-level BPE (gpt2)",
            hint="convert this model with its original tokenizer files",
        )
    ids = {token: index for index, token in enumerate(vocab.tokens)}
    merges = [tuple(merge.split(" ", 1)) for merge in vocab.merges]
    tokenizer = Tokenizer(
        models.BPE(
            ids,
            merges,  # type: ignore[arg-type]  # every merge has two parts
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tokenizer.pre_tokenizer = _pre_tokenizer(vocab.pre or "default")
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    if vocab.add_bos and "bos" in vocab.special_ids:
        bos = vocab.tokens[vocab.special_ids["bos"]]
        tokenizer.post_processor = processors.Sequence(
            [
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(
                    single=f"{bos} $A",
                    pair=f"{bos} $A {bos} $B",
                    special_tokens=[(bos, vocab.special_ids["bos"])],
                ),
            ]
        )
    # Control tokens (<|im_start|>) are matched whole and are special; user-defined ones
    # (<think>) are matched whole but are ordinary text. Both already have their ids.
    kinds = list(zip(vocab.tokens, vocab.token_types, strict=False))
    tokenizer.add_special_tokens(
        [AddedToken(t, normalized=False, special=True) for t, kind in kinds if kind == CONTROL]
    )
    tokenizer.add_tokens(
        [
            AddedToken(t, normalized=False, special=False)
            for t, kind in kinds
            if kind == USER_DEFINED
        ]
    )
    return tokenizer


def tokenizer_config(
    vocab: GgufVocabulary, *, chat_template: str | None, max_length: int
) -> dict[str, Any]:
    """`tokenizer_config.json`: special tokens, the chat template and the BOS rule."""
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": vocab.add_bos,
        "add_eos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
    }
    for role, index in sorted(vocab.special_ids.items()):
        config[f"{role}_token"] = vocab.tokens[index]
    if chat_template:
        config["chat_template"] = chat_template
    return config
