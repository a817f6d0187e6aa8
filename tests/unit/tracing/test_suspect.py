"""GGUF tensors dequantised by tracing's own fast path: the same floats as `gguf.quants`."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize, quantize

from ringfence.errors import MalformedFile
from ringfence.tracing.suspect import _DEQUANTISE


@pytest.mark.parametrize("qtype", sorted(_DEQUANTISE))
def test_fast_dequantisation_is_bit_identical(qtype: str) -> None:
    values = np.random.default_rng(0).normal(0, 0.05, (96, 320)).astype(np.float32)
    values[3, :32] = 0.0  # an all-zero block (scale 0)
    kind = getattr(gguf.GGMLQuantizationType, qtype)
    data = quantize(values, kind)
    expected = np.asarray(dequantize(data, kind), dtype=np.float32).reshape(-1)
    got = _DEQUANTISE[qtype](np.ascontiguousarray(data).reshape(-1))
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_cut_blocks_are_refused() -> None:
    with pytest.raises(MalformedFile):
        _DEQUANTISE["Q4_0"](np.zeros(17, dtype=np.uint8))
