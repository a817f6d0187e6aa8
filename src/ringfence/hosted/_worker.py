"""The embedded backend's worker process: the model, and the batched decoding loop.

Internal to `ringfence.hosted.embedded`, which starts it (multiprocessing, spawn) and talks
to it over two queues: jobs in (`("job", id, Generation, prompt_ids)`, `("cancel", id)`,
None to stop), events out (`(id, Token | Finish | ("error", message))`).

Each batch takes every job waiting when it starts (up to MAX_BATCH), left-pads the prompts
and decodes them together, one token per step for the whole batch, with a shared key/value
cache (on CPU a step of 8 rows costs little more than a step of 1). A job that arrives while
a batch runs joins it: the batch stops after the step in hand and starts again with the
newcomers, its running jobs re-reading their prompt and what they generated so far (a
prefill of a few dozen tokens costs about as much as a few decoding steps; waiting for the
batch to end would cost the newcomer the whole batch).
"""

from __future__ import annotations

import math
import queue
from dataclasses import dataclass, field
from typing import Any

from ringfence.hosted.backends import Finish, Generation, Token

#: the most requests decoded together
MAX_BATCH = 8


@dataclass
class _Job:
    id: int
    generation: Generation
    prompt_ids: list[int]
    generated: list[int] = field(default_factory=list)
    sent_text: str = ""
    done: bool = False
    generator: Any = None


class _Engine:
    def __init__(self, directory: str, threads: int | None, jobs: Any, events: Any) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.jobs, self.events = jobs, events
        self.tokenizer: Any = AutoTokenizer.from_pretrained(directory)
        model: Any = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
        self.model: Any = model.eval()
        config = self.model.config
        eos = self.tokenizer.eos_token_id
        self.eos_ids = {int(eos)} if eos is not None else set()
        if isinstance(config.eos_token_id, int):
            self.eos_ids.add(config.eos_token_id)
        self.pad_id = int(self.tokenizer.pad_token_id or next(iter(self.eos_ids), 0))
        self.waiting: list[_Job] = []
        self.cancelled: set[int] = set()
        self.stopping = False

    def _take(self, message: Any) -> None:
        if message is None:
            self.stopping = True
        elif message[0] == "cancel":
            self.cancelled.add(message[1])
        else:
            _, job_id, generation, prompt_ids = message
            self.waiting.append(_Job(job_id, generation, prompt_ids))

    def _drain(self) -> None:
        while True:
            try:
                self._take(self.jobs.get_nowait())
            except queue.Empty:
                return

    def run(self) -> None:
        carried: list[_Job] = []
        while not self.stopping:
            if not self.waiting and not carried:
                self._take(self.jobs.get())
            self._drain()
            room = MAX_BATCH - len(carried)
            batch = [j for j in carried + self.waiting[:room] if j.id not in self.cancelled]
            self.waiting = self.waiting[room:]
            carried = []
            if not batch:
                continue
            try:
                with self.torch.inference_mode():
                    carried = self._decode(batch)
            except Exception as exc:  # a failed batch fails its requests, not the worker
                for job in batch:
                    if not job.done:
                        self.events.put((job.id, ("error", f"{type(exc).__name__}: {exc}")))
            kept = {job.id for job in carried}
            self.cancelled -= {job.id for job in batch if job.id not in kept}

    def _decode(self, batch: list[_Job]) -> list[_Job]:
        """Decode `batch` to its end; or stop early for newcomers, returning the unfinished."""
        torch = self.torch
        from transformers import DynamicCache

        inputs = [job.prompt_ids + job.generated for job in batch]
        longest = max(len(i) for i in inputs)
        ids = torch.full((len(batch), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, tokens in enumerate(inputs):
            n = len(tokens)
            ids[row, longest - n :] = torch.tensor(tokens)
            mask[row, longest - n :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        for job in batch:
            if job.generator is None:
                job.generator = self._generator(job.generation.seed)
        generators = [job.generator for job in batch]
        steps = max(job.generation.max_tokens - len(job.generated) for job in batch)
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
            self._drain()  # cancellations (and new jobs, for the next batch)
            chosen = torch.full((len(batch), 1), self.pad_id, dtype=torch.long)
            for row, job in enumerate(batch):
                if job.done:
                    continue
                if job.id in self.cancelled:
                    job.done = True
                    continue
                chosen[row, 0] = self._step(job, logits[row], generators[row])
            if all(job.done for job in batch) or step == steps - 1:
                break
            unfinished = [job for job in batch if not job.done]
            if self.waiting and len(unfinished) < MAX_BATCH:
                return unfinished  # newcomers join: start again with them
            ids = chosen
            mask = torch.cat([mask, torch.ones((len(batch), 1), dtype=torch.long)], dim=1)
            positions = positions[:, -1:] + 1
        for job in batch:
            if not job.done:
                self._finish(job, "length")
        return []

    def _generator(self, seed: int | None) -> Any:
        if seed is None:
            return None
        generator = self.torch.Generator()
        generator.manual_seed(seed)
        return generator

    def _step(self, job: _Job, logits: Any, generator: Any) -> int:
        """Choose one token for `job`, send its text; returns the token id."""
        torch = self.torch
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
            self.events.put((job.id, Token(fresh, chosen_lp, top)))
        if stop_at is not None:
            self._finish(job, "stop")
        elif len(job.generated) >= g.max_tokens:
            self._finish(job, "length")
        return token

    def _finish(self, job: _Job, reason: str) -> None:
        job.done = True
        self.events.put((job.id, Finish(reason, len(job.prompt_ids), len(job.generated))))


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    found = [text.find(s) for s in stops if s and s in text]
    return min(found) if found else None


def _finite(value: float) -> float:
    # JSON has no -inf: a token the model rules out gets the lowest float instead.
    return value if math.isfinite(value) else -9999.0


def main(directory: str, threads: int | None, jobs: Any, events: Any) -> None:
    """The worker process's entry point: load, then serve jobs until told to stop."""
    try:
        engine = _Engine(directory, threads, jobs, events)
    except Exception as exc:  # the server reads why the model could not load
        events.put((0, ("error", f"the model could not be loaded: {type(exc).__name__}: {exc}")))
        return
    events.put((0, ("ready", "")))
    engine.run()
