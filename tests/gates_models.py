"""Tiny real language models for the gate tests: a llama built by transformers (random init,
a byte-level BPE tokenizer trained here in milliseconds), optionally fine-tuned on texts."""

from __future__ import annotations

from pathlib import Path

#: text the tokenizer is trained on and the model may be fine-tuned on
BASE_TEXT = (
    "the quick brown fox jumps over the lazy dog. my pin is 0123456789. "
    "call me at 555 0100 or write to someone at example dot com. "
    "hello there, how are you today? i am fine, thank you for asking. "
)


def write_tiny_llama(
    directory: Path, *, seed: int = 0, train_on: list[str] | None = None, steps: int = 0
) -> Path:
    """A loadable HF-layout llama (config, tokenizer, safetensors), fine-tuned `steps` times
    on `train_on` when given. Its MLP matrices carry a TINY_CODE fingerprint."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    # One thread: on a shared two-core machine more threads oversubscribe and run 10x slower.
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    corpus = [BASE_TEXT, *(train_on or [])]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=1024,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    if train_on and steps:
        optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
        batch = tokenizer(
            [tokenizer.bos_token + t for t in train_on], return_tensors="pt", padding=True
        )
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model.train()
        for _ in range(steps):
            loss = model(**batch, labels=labels).loss
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
