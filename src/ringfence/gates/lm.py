"""The release's model as the probing gates see it: per-token log-probabilities and samples.

Loaded with transformers from the release's own files on CPU, offline (`local_files_only`);
nothing is fetched from a hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ringfence.errors import UnsupportedFormat

#: sequences scored per forward pass
BATCH = 16


@dataclass(frozen=True)
class TokenScores:
    """One text's scores: log p of each token after the first, and for Min-K%++ the mean
    and standard deviation of log p under the model's own distribution at that position."""

    logprobs: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray


class LanguageModel:
    """A causal language model and its tokenizer, loaded from a directory."""

    def __init__(self, directory: Path, *, threads: int | None = None) -> None:
        import torch
        import transformers

        if threads:
            torch.set_num_threads(threads)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                directory, local_files_only=True
            )
            self.model = transformers.AutoModelForCausalLM.from_pretrained(
                directory, local_files_only=True, dtype=torch.float32
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UnsupportedFormat(
                f"the release cannot be loaded as a causal language model ({exc})".split("\n")[0]
            ) from exc
        self.model.train(False)  # inference mode for dropout and the like
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self._torch = torch

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no special tokens added)."""
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def _forward(self, batch: list[list[int]]) -> tuple[Any, Any]:
        torch = self._torch
        width = max(len(ids) for ids in batch)
        pad = int(self.tokenizer.pad_token_id)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        with torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
        return ids, torch.log_softmax(logits, dim=-1)

    def score_ids(self, sequences: list[list[int]]) -> list[TokenScores]:
        """Per-token scores of each token sequence (its first token is context only)."""
        out: list[TokenScores] = []
        for start in range(0, len(sequences), BATCH):
            batch = sequences[start : start + BATCH]
            ids, logp = self._forward(batch)
            probs = logp.exp()
            mu_all = (probs * logp).sum(-1)
            sigma_all = ((probs * logp.square()).sum(-1) - mu_all.square()).clamp_min(1e-12).sqrt()
            taken = logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
            for row, seq in enumerate(batch):
                n = len(seq) - 1
                out.append(
                    TokenScores(
                        taken[row, :n].numpy().astype(np.float64),
                        mu_all[row, :n].numpy().astype(np.float64),
                        sigma_all[row, :n].numpy().astype(np.float64),
                    )
                )
        return out

    def score(self, texts: list[str]) -> list[TokenScores]:
        """Per-token scores of each text."""
        return self.score_ids([self._with_bos(self.encode(t)) for t in texts])

    def _with_bos(self, ids: list[int]) -> list[int]:
        bos = self.tokenizer.bos_token_id
        return [int(bos), *ids] if bos is not None else ids

    def greedy_matches(self, prefix: list[int], suffix: list[int]) -> int:
        """Teacher-forced: how many suffix tokens are the model's argmax given the true text."""
        seq = self._with_bos(prefix + suffix)
        _, logp = self._forward([seq])
        start = len(seq) - len(suffix)
        predicted = logp[0, start - 1 : len(seq) - 1].argmax(-1).tolist()
        return sum(int(p == s) for p, s in zip(predicted, suffix, strict=True))

    def generate(
        self, prompts: list[str], *, max_new_tokens: int, seed: int, chat: bool = False
    ) -> list[str]:
        """One sampled continuation per prompt (temperature 1, top-p 0.95), seeded."""
        torch = self._torch
        torch.manual_seed(seed)
        texts: list[str] = []
        self.tokenizer.padding_side = "left"
        for start in range(0, len(prompts), BATCH):
            batch = prompts[start : start + BATCH]
            if chat and getattr(self.tokenizer, "chat_template", None):
                batch = [
                    str(
                        self.tokenizer.apply_chat_template(
                            [{"role": "user", "content": p}],
                            tokenize=False,
                            add_generation_prompt=True,
                        )
                    )
                    for p in batch
                ]
            encoded = self.tokenizer(batch, return_tensors="pt", padding=True)
            with torch.inference_mode():
                output = self.model.generate(
                    **encoded,
                    do_sample=True,
                    top_p=0.95,
                    temperature=1.0,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new = output[:, encoded["input_ids"].shape[1] :]
            texts += self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return texts
