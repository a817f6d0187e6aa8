"""Black-box attribution, the adapters: the release run locally, the endpoint through `openai`.

`attribute` asks an OpenAI-compatible endpoint (`/v1/completions`) about keyed probe prompts
within a budget of queries and decides with `blackbox`: logprobs where the endpoint returns
them, sampled text where it does not. The release, its Q4_0-served simulation and the decoy
run here with transformers (the `eval` extra).
"""

from __future__ import annotations

import copy
import functools
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ringfence.errors import InvalidInput, Unavailable
from ringfence.incidents import blackbox

#: tokens per probe prompt, tokens sampled per completion in text mode, top-k asked
PROBE_TOKENS = 12
TEXT_TOKENS = 8
TOP_K = 5
CALIBRATION = 64
QUANT_TYPES = ("Q8_0", "Q4_0")


def token_string(tokenizer: Any, token_id: int) -> str:
    """A token as OpenAI-compatible servers name it (vLLM's convention).

    Its decoded text, or `bytes:\\xNN...` when it is a piece of a UTF-8 character (which
    would otherwise decode to U+FFFD and collide with every other such piece).
    """
    text = str(tokenizer.decode([token_id]))
    if "\ufffd" not in text:
        return text
    raw = _token_bytes(tokenizer, token_id)
    return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet reversed: printable character -> the byte it stands for.

    The published mapping (openai/gpt-2 `encoder.py`, `bytes_to_unicode`): printable Latin-1
    bytes stand for themselves, the others are shifted above U+0100 in order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = list(printable)
    shift = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + shift)
            shift += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _token_bytes(tokenizer: Any, token_id: int) -> bytes:
    decode = _byte_decoder()
    piece = str(tokenizer.convert_ids_to_tokens(token_id))
    if all(ch in decode for ch in piece):
        return bytes(decode[ch] for ch in piece)
    return piece.encode("utf-8", "replace")


@dataclass
class LocalModel:
    """A causal LM and its tokenizer, run on the CPU without gradients."""

    model: Any
    tokenizer: Any

    def __post_init__(self) -> None:
        vocab = min(int(self.model.config.vocab_size), len(self.tokenizer))
        self._names = [token_string(self.tokenizer, i) for i in range(vocab)]
        ids: dict[str, list[int]] = {}
        for i, name in enumerate(self._names):
            ids.setdefault(name, []).append(i)
        self._unique = [(name, found[0]) for name, found in ids.items() if len(found) == 1]
        self._shared = [(name, found) for name, found in ids.items() if len(found) > 1]
        self._unique_ids = np.array([i for _, i in self._unique], dtype=np.int64)

    @property
    def vocab(self) -> int:
        """How many tokens the tokenizer names."""
        return len(self._names)

    def encode(self, text: str) -> list[int]:
        """The prompt's token ids, as a server running this tokenizer makes them."""
        return list(self.tokenizer.encode(text))

    def next_logprobs(self, ids: Sequence[int]) -> np.ndarray:
        """log softmax of the next-token logits after `ids`."""
        import torch

        with torch.no_grad():
            logits = self.model(torch.tensor([list(ids)])).logits[0, -1].float()
            return np.asarray(torch.log_softmax(logits, dim=-1).numpy(), dtype=np.float64)

    def named(self, logprobs: np.ndarray) -> dict[str, float]:
        """Logprobs by token string (a string several ids share gets their log-sum-exp)."""
        values = logprobs[self._unique_ids].tolist()
        out = {name: float(v) for (name, _), v in zip(self._unique, values, strict=True)}
        for name, found in self._shared:
            out[name] = float(np.logaddexp.reduce(logprobs[found]))
        return out

    def top(self, ids: Sequence[int], k: int = TOP_K) -> dict[str, float]:
        """The top-k next tokens by name, as an endpoint returns them."""
        named = self.named(self.next_logprobs(ids))
        return dict(sorted(named.items(), key=lambda kv: -kv[1])[:k])

    def sample(self, ids: Sequence[int], length: int, seed: int) -> list[int]:
        """`length` tokens sampled at temperature 1 after `ids`."""
        rng = np.random.default_rng(seed)
        seq, out = list(ids), []
        for _ in range(length):
            p = np.exp(self.next_logprobs(seq))
            token = int(rng.choice(p.size, p=p / p.sum()))
            seq.append(token)
            out.append(token)
        return out


def load(directory: Path) -> LocalModel:
    """A Hugging Face-layout model directory (config, tokenizer.json, safetensors)."""
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - the eval extra is not installed
        raise InvalidInput("black-box attribution needs the `eval` extra (torch)") from exc
    quiet: Any = transformers.utils.logging.disable_progress_bar
    quiet()
    # Any: transformers' classes are untyped
    tokenizers: Any = transformers.PreTrainedTokenizerFast
    models: Any = transformers.AutoModelForCausalLM
    tokenizer = tokenizers(tokenizer_file=str(directory / "tokenizer.json"))
    model = models.from_pretrained(str(directory), dtype="float32")
    model.eval()
    return LocalModel(model, tokenizer)


def quantised(local: LocalModel, kind: str) -> LocalModel:
    """A copy whose matrices went through a GGUF quantisation round trip (Q8_0 or Q4_0)."""
    import gguf
    import torch

    if kind not in QUANT_TYPES:
        raise InvalidInput(f"quantisation: one of {', '.join(QUANT_TYPES)}")
    qtype = getattr(gguf.GGMLQuantizationType, kind)
    model = copy.deepcopy(local.model)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2 and param.shape[-1] % 32 == 0:
                w = param.detach().float().numpy()
                back = gguf.quants.dequantize(gguf.quants.quantize(w, qtype), qtype)
                param.copy_(torch.from_numpy(np.ascontiguousarray(back).reshape(w.shape)))
    return LocalModel(model, local.tokenizer)


def decoy(local: LocalModel, seed: int = 1) -> LocalModel:
    """The same architecture with independently initialised weights (the unrelated model)."""
    import torch

    torch.manual_seed(seed)
    model = type(local.model)(local.model.config)
    model.eval()
    return LocalModel(model, local.tokenizer)


@contextmanager
def release_directory(blobs: Any, artifacts: Sequence[Any]) -> Iterator[Path]:
    """The release's original files (from the blob store) in a scratch directory."""
    workdir = Path(tempfile.mkdtemp(prefix="ringfence-attribution-"))
    try:
        for artifact in artifacts:
            target = workdir / artifact.path
            target.parent.mkdir(parents=True, exist_ok=True)
            with blobs.open(artifact.sha256) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- asking the endpoint -------------------------------------------------------------------


def _client(endpoint: str, api_key: str) -> Any:
    import openai

    return openai.OpenAI(base_url=endpoint, api_key=api_key or "none", max_retries=1, timeout=60)


def _ask(client: Any, model: str, prompt: str, **kwargs: Any) -> Any:
    import openai

    try:
        return client.completions.create(model=model, prompt=prompt, **kwargs)
    except openai.APIConnectionError as exc:
        raise Unavailable(f"the endpoint did not answer: {exc}") from exc
    except openai.APIStatusError as exc:
        raise InvalidInput(
            f"the endpoint refused the query ({exc.status_code}): {exc.message}",
            hint="check the endpoint's base URL (ending in /v1), the model name and the key",
        ) from exc


def _prompts(reference: LocalModel, key: bytes, label: str, count: int) -> list[str]:
    ids = blackbox.probe_ids(key, label, count, reference.vocab, PROBE_TOKENS)
    return [str(reference.tokenizer.decode(p)) for p in ids]


def _distances(target: LocalModel, reference: LocalModel, prompts: Sequence[str]) -> list[float]:
    out = []
    for prompt in prompts:
        ids = reference.encode(prompt)
        ref = reference.named(reference.next_logprobs(ids))
        out.append(blackbox.logprob_distance(target.top(ids), ref))
    return out


def attribute(
    reference: LocalModel,
    key: bytes,
    *,
    endpoint: str,
    model: str,
    api_key: str = "",
    budget: int = 32,
    alpha: float = 0.01,
    mode: str = "auto",
) -> dict[str, Any]:
    """Whether `endpoint` serves the reference release, within `budget` queries."""
    if not 2 <= budget <= 10_000:
        raise InvalidInput("budget: 2 to 10,000 queries")
    if not 0 < alpha < 1:
        raise InvalidInput("alpha: in (0, 1)")
    if mode not in ("auto", "logprobs", "text"):
        raise InvalidInput("mode: auto, logprobs or text")
    client = _client(endpoint, api_key)
    prompts = _prompts(reference, key, "probe", budget)
    served = quantised(reference, "Q4_0")
    other = decoy(reference)
    used = 0
    observed: list[float] = []
    if mode != "text":
        for prompt in prompts:
            answer = _ask(client, model, prompt, max_tokens=1, temperature=0, logprobs=TOP_K)
            used += 1
            logprobs = answer.choices[0].logprobs
            top = (logprobs.top_logprobs or [None])[0] if logprobs is not None else None
            if not top:
                if mode == "logprobs":
                    raise InvalidInput("the endpoint returns no logprobs", hint="use mode text")
                break  # no logprobs: fall back to sampled text with what budget is left
            ids = reference.encode(prompt)
            ref = reference.named(reference.next_logprobs(ids))
            observed.append(blackbox.logprob_distance(dict(top), ref))
    if observed and len(observed) == used:
        calibration = _prompts(reference, key, "calibration", CALIBRATION)
        decision = blackbox.decide_means(
            observed,
            _distances(served, reference, calibration),
            _distances(other, reference, calibration),
            alpha=alpha,
            queries=used,
        )
        used_mode = "logprobs"
    else:
        decision, used = _text_mode(client, model, reference, other, prompts, used, alpha)
        used_mode = "text"
    return {"endpoint": endpoint, "model": model, "mode": used_mode, **decision.summary()}


def _text_mode(
    client: Any,
    model: str,
    reference: LocalModel,
    other: LocalModel,
    prompts: Sequence[str],
    used: int,
    alpha: float,
) -> tuple[blackbox.Decision, int]:
    left = prompts[used:] if used < len(prompts) else []
    if len(left) < 4:
        return (
            blackbox.Decision(
                "undecided",
                1.0,
                1.0,
                float("nan"),
                used,
                f"the budget leaves {len(left)} queries for sampled text: not enough (give more)",
                0.0,
            ),
            used,
        )
    theirs: list[list[int]] = []
    ours: list[list[int]] = []
    decoys: list[list[int]] = []
    for i, prompt in enumerate(left):
        answer = _ask(client, model, prompt, max_tokens=TEXT_TOKENS, temperature=1.0)
        used += 1
        text = str(answer.choices[0].text or "")
        theirs.append(list(reference.tokenizer.encode(text, add_special_tokens=False)))
        ids = reference.encode(prompt)
        # through text and back, as the endpoint's answer came
        for local, out, seed in ((reference, ours, 10_000 + i), (other, decoys, 20_000 + i)):
            sampled = str(reference.tokenizer.decode(local.sample(ids, TEXT_TOKENS, seed=seed)))
            out.append(list(reference.tokenizer.encode(sampled, add_special_tokens=False)))
    decision = blackbox.decide_text(
        blackbox.pad(theirs, TEXT_TOKENS),
        blackbox.pad(ours, TEXT_TOKENS),
        blackbox.pad(decoys, TEXT_TOKENS),
        alpha=alpha,
        queries=used,
    )
    return decision, used
