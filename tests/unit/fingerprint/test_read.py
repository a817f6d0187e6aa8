"""Reading symbols: the fast paths give the evidence of the plain ones."""

from __future__ import annotations

import numpy as np
import pytest

from ringfence.fingerprint import carrier
from ringfence.fingerprint.read import decode, tensor_evidence
from ringfence.formats.safetensors import bf16_to_f32, bf16_words

LENGTH = 256


def _original(seed: int, n: int) -> np.ndarray:
    values = np.random.default_rng(seed).normal(0, 0.02, n).astype(np.float32)
    return bf16_words(values).view(np.uint8)


@pytest.mark.parametrize("nan", [False, True])
def test_decoded_original_gives_the_same_evidence(nan: bool) -> None:
    raw = _original(1, 3 * 4096 + 64)
    seed = carrier.seed(b"k" * 32, "carrier:t")
    rng = np.random.default_rng(2)
    suspect = bf16_to_f32(raw.view("<u2")) + rng.normal(0, 0.002, raw.size // 2).astype(np.float32)
    if nan:
        suspect[rng.choice(suspect.size, 500, replace=False)] = np.nan
    plain = tensor_evidence("BF16", raw, suspect.copy(), seed, LENGTH, 4)
    fast = tensor_evidence("BF16", raw, suspect.copy(), seed, LENGTH, 4, values=decode("BF16", raw))
    for a, b in ((plain.num, fast.num), (plain.den, fast.den)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(plain.noise, fast.noise, rtol=1e-5)
    assert plain.weights_read == fast.weights_read


def test_exact_copy_has_no_noise() -> None:
    raw = _original(3, 8192)
    seed = carrier.seed(b"k", "c")
    ev = tensor_evidence("BF16", raw, bf16_to_f32(raw.view("<u2")), seed, LENGTH, 4)
    assert not ev.num.any() and not ev.noise.any() and ev.den.any()
