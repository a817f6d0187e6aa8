"""What a fingerprint costs: held-out perplexity of the original, a fingerprinted copy and casts.

Needs the eval extra (torch, transformers); imported lazily by the CLI and the bench. The
held-out text is `ringfence/data/heldout.txt` (public-domain English, see its header).

The cast rows are the yardstick the issue asks for: "bf16 cast" is the loss of casting fp32
weights to bf16. For an fp32 release it is the real cast; for a release that is already bf16
(the demo) the cast has already happened, so it is reproduced as what it is, a rounding error
uniform in ±½ bf16 ulp of each weight, added to the bf16 weights with a fixed seed.

Antithetic pairs. A small random perturbation δ changes the loss by g·δ + ½ δᵀHδ. The first
term averages to zero over recipients (or rounding draws) but is several times the second in
any one copy: single copies differ by ±0.02 in perplexity where the mean change is a few
thousandths, so a handful of samples cannot tell a fingerprint from a cast. Every sample is
therefore a pair, δ and −δ: a recipient's copy and the copy made with the complementary
codeword (every symbol flipped, so every changed weight moves the other way; −δ is as likely
a perturbation as δ, the carrier signs being uniform) and, for the cast, a rounding draw and
its negation. The pair's mean cancels g·δ exactly and keeps ½ δᵀHδ, the loss a copy costs on
average: on SmolLM2 two pairs agree to 0.0003, where single copies spread over ±0.02.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ringfence.errors import InvalidInput
from ringfence.fingerprint import code
from ringfence.fingerprint.plan import build_plan, fitted_length
from ringfence.fingerprint.stream import fingerprinted_bytes
from ringfence.formats.index import read_index

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ringfence.catalogue.models import Release
    from ringfence.secrets import SecretStore
    from ringfence.storage import BlobStore

#: the recipient index quality copies use: above any dense index a release will reach
PROBE_RECIPIENT = 2**31 - 1
#: a variant's weights for (sample, flipped): the second copy of an antithetic pair
Variant = Callable[[int, bool], dict[str, Any]]


@dataclass(frozen=True)
class QualityRow:
    """One variant's perplexity and its change against the original."""

    variant: str
    perplexity: float
    delta: float
    tokens: int
    #: the change of each sample (recipients, or rounding draws) behind a mean
    samples_delta: tuple[float, ...] = ()

    def as_row(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "perplexity": round(self.perplexity, 4),
            "delta": round(self.delta, 4),
            "tokens": self.tokens,
            "samples_delta": [round(d, 4) for d in self.samples_delta],
        }


def heldout_text() -> str:
    """The held-out public-domain English text shipped with ringfence."""
    return resources.files("ringfence").joinpath("data/heldout.txt").read_text("utf-8")


def perplexity(model: Any, ids: Any, window: int = 1024) -> float:
    """exp of the mean next-token loss over non-overlapping windows of `ids` (1-D tensor)."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, ids.numel() - 1, window):
            chunk = ids[start : start + window + 1][None, :]
            if chunk.shape[1] < 2:
                break
            logits = model(chunk[:, :-1]).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[0], chunk[0, 1:], reduction="sum")
            total += float(loss)
            count += chunk.shape[1] - 1
    return float(np.exp(total / count))


def _bf16_noise(values: np.ndarray, seed: int) -> np.ndarray:
    """Add a rounding error uniform in ±½ bf16 ulp of each value (what a bf16 cast makes)."""
    exponent = (values.view(np.uint32) >> np.uint32(23)) & np.uint32(0xFF)
    ulp = np.ldexp(np.float32(1), exponent.astype(np.int32) - 127 - 7).astype(np.float32)
    noise = np.random.default_rng(seed).uniform(-0.5, 0.5, values.shape).astype(np.float32)
    return np.where(exponent > 0, values + noise * ulp, values).astype(np.float32)


def compare(
    hf_dir: Path,
    key: bytes,
    tokens: int = 20480,
    samples: int = 2,
    params: code.CodeParams | None = None,
    densities: tuple[int, ...] = (),
) -> list[QualityRow]:
    """Perplexity of a Hugging Face-layout model and its variants on the held-out text.

    The fingerprinted copy is measured for `samples` antithetic pairs of recipients and the
    bf16 cast for `samples` antithetic pairs of rounding draws (module docstring): each row is
    the mean, each pair's mean is in `samples_delta`. `params` are the release's (default:
    a new release's, its code fitted to the model as publish fits it); `densities` adds a
    fingerprinted row for each other density 2^-d.
    """
    import torch
    from safetensors.torch import load
    from transformers import AutoModelForCausalLM, AutoTokenizer

    weights = hf_dir / "model.safetensors"
    if not weights.exists():
        raise InvalidInput(f"{hf_dir} has no model.safetensors", hint="give a single-file model")
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    ids = tokenizer(heldout_text(), return_tensors="pt")["input_ids"][0][:tokens]
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    model.train(False)  # inference mode (dropout off)
    raw = load(weights.read_bytes())
    original = {k: v.float() for k, v in raw.items()}
    all_bf16 = all(t.dtype == torch.bfloat16 for t in raw.values())
    index = read_index(weights)
    params = params or code.CodeParams(length=fitted_length([index], code.CodeParams()))
    limits = code.thresholds(key, params.design.length, params.cutoff)

    def fingerprinted(density: int) -> Variant:
        plan = build_plan(index, key, replace(params, density_log2=density))

        def make(sample: int, flip: bool) -> dict[str, Any]:
            bits = code.codeword(key, PROBE_RECIPIENT - sample, limits)
            marked = load(b"".join(fingerprinted_bytes(weights, plan, ~bits if flip else bits)))
            return {k: v.float() for k, v in marked.items()}

        return make

    def bf16_cast(sample: int, flip: bool) -> dict[str, Any]:
        if not all_bf16:
            return {k: v.bfloat16().float() for k, v in original.items()}
        # a bf16 cast of an already-bf16 model: its rounding error, reproduced
        sign = -1.0 if flip else 1.0
        out = {}
        for i, (k, v) in enumerate(original.items()):
            error = _bf16_noise(v.numpy(), 1000 * sample + i) - v.numpy()
            out[k] = v + sign * torch.from_numpy(error).reshape(v.shape)
        return out

    def measure(state: dict[str, Any]) -> float:
        model.load_state_dict(state, strict=False)
        return perplexity(model, ids)

    base = measure(original)
    rows = [QualityRow("original", base, 0.0, int(ids.numel()))]
    # (name, weights, pairs); a real cast of fp32 weights is deterministic: one copy, no pair
    variants: list[tuple[str, Variant, int]] = [
        ("fingerprinted", fingerprinted(params.density_log2), samples)
    ]
    variants += [(f"fingerprinted at 1/{1 << d}", fingerprinted(d), samples) for d in densities]
    variants.append(("bf16 cast", bf16_cast, samples if all_bf16 else 0))

    def sample(make: Variant, i: int) -> float:
        return (measure(make(i, False)) + measure(make(i, True))) / 2

    for name, make, count in variants:
        values = [sample(make, i) for i in range(count)] or [measure(make(0, False))]
        mean = float(np.mean(values))
        rows.append(
            QualityRow(name, mean, mean - base, int(ids.numel()), tuple(v - base for v in values))
        )
    return rows


def release_quality(
    session: Session, blobs: BlobStore, secrets: SecretStore, release: Release, tokens: int
) -> list[QualityRow]:
    """`compare` for a published release (its files materialised in a temporary directory)."""
    from ringfence.fingerprint.services import release_key, release_params

    with tempfile.TemporaryDirectory(prefix="ringfence-quality-") as tmp:
        root = Path(tmp)
        for artifact in release.artifacts:
            target = root / artifact.path
            target.parent.mkdir(parents=True, exist_ok=True)
            with blobs.open(artifact.sha256) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 16 << 20)
        if not (root / "config.json").exists():
            raise InvalidInput(f"{release.ref} has no config.json: quality needs a HF layout")
        json.loads((root / "config.json").read_text())
        return compare(root, release_key(secrets, release), tokens, params=release_params(release))
