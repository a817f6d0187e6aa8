"""The embedded backend: a release's own weights on CPU, batching concurrent requests.

One worker thread per loaded release owns the model. It takes every request waiting when a
batch starts (up to `MAX_BATCH`), left-pads their prompts and decodes them together, one
token per step for the whole batch, with a shared key/value cache; requests that arrive
meanwhile wait for the next batch (static batching: simple, and on CPU a step of 8 rows costs
little more than a step of 1). A thread rather than a process: torch runs its kernels without
the GIL, so the event loop keeps serving while the worker computes, and the weights are not
copied into a second process.

Needs the `eval` extra (torch, transformers).
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringfence.errors import InvalidInput
from ringfence.hosted.backends import Event, Finish, Generation, Token

#: the most requests decoded together
MAX_BATCH = 8


@dataclass
class _Job:
    """A request inside the worker: its prompt ids and where its events go."""

    generation: Generation
    prompt_ids: list[int]
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[Event | BaseException]
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: list[int] = field(default_factory=list)
    sent_text: str = ""
    done: bool = False

    def emit(self, event: Event | BaseException) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class EmbeddedBackend:
    """Generation with transformers on CPU from a directory in the Hugging Face layout."""

    def __init__(self, directory: Path, *, threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._threads = threads
        self._torch = torch
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(directory))
        model: Any = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
        self.model: Any = model.eval()
        config = self.model.config
        self.context = int(getattr(config, "max_position_embeddings", 2048) or 2048)
        eos = self.tokenizer.eos_token_id
        self.eos_ids = {int(eos)} if eos is not None else set()
        if isinstance(config.eos_token_id, int):
            self.eos_ids.add(config.eos_token_id)
        self.pad_id = int(self.tokenizer.pad_token_id or next(iter(self.eos_ids), 0))
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="ringfence-inference", daemon=True)
        self._worker.start()

    # --- the contract ---------------------------------------------------------------------

    def encode(self, generation: Generation) -> list[int]:
        """The prompt's token ids (a chat through the tokenizer's chat template)."""
        if generation.kind == "chat":
            if not getattr(self.tokenizer, "chat_template", None):
                raise InvalidInput("this model has no chat template: use /v1/completions")
            ids = self.tokenizer.apply_chat_template(
                generation.messages, add_generation_prompt=True, tokenize=True
            )
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
            return [int(i) for i in ids]
        return [int(i) for i in self.tokenizer.encode(generation.prompt)]

    def prompt_tokens(self, generation: Generation) -> int:
        """The prompt's length; InvalidInput when it and max_tokens overflow the context."""
        n = len(self.encode(generation))
        if n == 0:
            raise InvalidInput("prompt: give at least one token of text")
        if n + generation.max_tokens > self.context:
            raise InvalidInput(
                f"this model's context is {self.context} tokens; the prompt has {n} and "
                f"max_tokens asks {generation.max_tokens}: shorten one of them"
            )
        return n

    async def stream(self, generation: Generation) -> AsyncGenerator[Event, None]:
        """Queue the request for the next batch, then yield its events as they come."""
        job = _Job(generation, self.encode(generation), asyncio.get_running_loop(), asyncio.Queue())
        self._jobs.put(job)
        try:
            while True:
                event = await job.events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finish):
                    return
        finally:
            job.cancelled.set()  # the caller went away: the worker drops the row

    def close(self) -> None:
        """Stop the worker after the batch in hand."""
        self._jobs.put(None)

    # --- the worker -----------------------------------------------------------------------

    def _run(self) -> None:
        if self._threads:
            # Set in the thread that computes: OpenMP's thread count is per calling thread.
            self._torch.set_num_threads(self._threads)
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)
                    break
                batch.append(more)
            batch = [job for job in batch if not job.cancelled.is_set()]
            if not batch:
                continue
            try:
                with self._torch.inference_mode():
                    self._decode(batch)
            except Exception as exc:  # a failed batch fails its requests, not the worker
                for job in batch:
                    if not job.done:
                        job.emit(exc)

    def _decode(self, batch: list[_Job]) -> None:
        torch = self._torch
        from transformers import DynamicCache

        longest = max(len(job.prompt_ids) for job in batch)
        ids = torch.full((len(batch), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, job in enumerate(batch):
            n = len(job.prompt_ids)
            ids[row, longest - n :] = torch.tensor(job.prompt_ids)
            mask[row, longest - n :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        generators = [self._generator(job.generation.seed) for job in batch]
        steps = max(job.generation.max_tokens for job in batch)
        for step in range(steps):
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            logits = out.logits[:, -1, :].float()
            chosen = torch.full((len(batch), 1), self.pad_id, dtype=torch.long)
            for row, job in enumerate(batch):
                if job.done:
                    continue
                if job.cancelled.is_set():
                    job.done = True
                    continue
                chosen[row, 0] = self._step(job, logits[row], generators[row])
            if all(job.done for job in batch) or step == steps - 1:
                break
            ids = chosen
            mask = torch.cat([mask, torch.ones((len(batch), 1), dtype=torch.long)], dim=1)
            positions = positions[:, -1:] + 1
        for job in batch:
            if not job.done:
                self._finish(job, "length")

    def _generator(self, seed: int | None) -> Any:
        if seed is None:
            return None
        generator = self._torch.Generator()
        generator.manual_seed(seed)
        return generator

    def _step(self, job: _Job, logits: Any, generator: Any) -> int:
        """Choose one token for `job`, send its text; returns the token id."""
        torch = self._torch
        g = job.generation
        logprobs = torch.log_softmax(logits, dim=-1)
        if g.temperature <= 0:
            token = int(torch.argmax(logits))
        else:
            probs = torch.softmax(logits / g.temperature, dim=-1)
            if g.top_p < 1.0:
                # nucleus sampling (Holtzman et al. 2020): keep the smallest set above top_p
                sorted_p, order = torch.sort(probs, descending=True)
                keep = sorted_p.cumsum(-1) - sorted_p < g.top_p
                probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
            token = int(torch.multinomial(probs, 1, generator=generator))
        if token in self.eos_ids:
            self._finish(job, "stop")
            return token
        job.generated.append(token)
        text = self.tokenizer.decode(job.generated, skip_special_tokens=True)
        # Hold back a partial UTF-8 character until the next token completes it.
        fresh = "" if text.endswith("\ufffd") else text[len(job.sent_text) :]
        stop_at = _first_stop(text, g.stop)
        if stop_at is not None:
            fresh = text[len(job.sent_text) : stop_at]
        top: tuple[tuple[str, float], ...] = ()
        chosen_lp: float | None = None
        if g.logprobs is not None:
            chosen_lp = _finite(float(logprobs[token]))
            if g.logprobs > 0:
                values, indices = torch.topk(logprobs, g.logprobs)
                top = tuple(
                    (self.tokenizer.decode([int(i)]), _finite(float(v)))
                    for v, i in zip(values, indices, strict=True)
                )
        if fresh or g.logprobs is not None:
            job.sent_text += fresh
            job.emit(Token(fresh, chosen_lp, top))
        if stop_at is not None:
            self._finish(job, "stop")
        elif len(job.generated) >= g.max_tokens:
            self._finish(job, "length")
        return token

    def _finish(self, job: _Job, reason: str) -> None:
        job.done = True
        job.emit(Finish(reason, len(job.prompt_ids), len(job.generated)))


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    found = [text.find(s) for s in stops if s and s in text]
    return min(found) if found else None


def _finite(value: float) -> float:
    # JSON has no -inf: a token the model rules out gets the lowest float instead.
    return value if math.isfinite(value) else -9999.0
