"""Alignment recovers permutations, rescalings, transposes and truncations exactly."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.tracing.align import align_matrix, approximate_assign, canonical_name, map_names


def _matrix(seed: int, rows: int, cols: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.02, (rows, cols)).astype(np.float32)


shapes = st.tuples(st.integers(48, 160), st.integers(48, 160))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=shapes, rows=st.booleans(), cols=st.booleans())
def test_permutations_are_undone_exactly(
    seed: int, shape: tuple[int, int], rows: bool, cols: bool
) -> None:
    w = _matrix(seed, *shape)
    rng = np.random.default_rng(seed + 1)
    s = w
    if rows:
        s = s[rng.permutation(shape[0])]
    if cols:
        s = s[:, rng.permutation(shape[1])]
    out = align_matrix(w, s)
    np.testing.assert_array_equal(out.values, w)
    assert out.coverage == 1.0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=shapes)
def test_rescaling_and_transpose_are_undone(seed: int, shape: tuple[int, int]) -> None:
    w = _matrix(seed, *shape)
    rng = np.random.default_rng(seed + 2)
    r = rng.uniform(0.5, 2.0, shape[0]).astype(np.float32)
    c = rng.uniform(0.5, 2.0, shape[1]).astype(np.float32)
    perm = rng.permutation(shape[0])
    s = ((w * r[:, None] * c[None, :])[perm]).T.copy()
    out = align_matrix(w, s)
    np.testing.assert_allclose(out.values, w, rtol=0, atol=1e-6)
    assert out.steps[0] == "transposed"
    assert any("rescaling" in step for step in out.steps)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(48, 128))
def test_a_square_matrix_transposed_and_permuted(seed: int, n: int) -> None:
    w = _matrix(seed, n, n)
    rng = np.random.default_rng(seed + 3)
    s = w[rng.permutation(n)][:, rng.permutation(n)].T.copy()
    out = align_matrix(w, s)
    np.testing.assert_array_equal(out.values, w)
    assert out.steps[0] == "transposed"


def test_a_permuted_vocabulary_beyond_the_exact_search() -> None:
    # what match_rows does beyond MAX_SEARCH candidates (a vocabulary of 49k rows), on fewer
    w = _matrix(7, 4000, 64)
    rng = np.random.default_rng(8)
    noisy = w + rng.normal(0, 0.004, w.shape).astype(np.float32)
    perm = rng.permutation(w.shape[0])
    found, score = approximate_assign(w, noisy[perm])
    assert np.mean(perm[found] == np.arange(4000)) > 0.999
    assert float(np.median(score)) > 0.97


def test_truncated_and_extended_rows() -> None:
    w = _matrix(3, 300, 64)
    short = align_matrix(w, w[:200])
    assert np.isnan(short.values[200:]).all()
    np.testing.assert_array_equal(short.values[:200], w[:200])
    extra = np.vstack([w, _matrix(4, 20, 64)])
    np.testing.assert_array_equal(align_matrix(w, extra).values, w)


def test_noisy_copy_stays_in_order() -> None:
    w = _matrix(5, 256, 128)
    noisy = w + np.random.default_rng(6).normal(0, 0.002, w.shape).astype(np.float32)
    out = align_matrix(w, noisy)
    assert out.steps == ()
    np.testing.assert_array_equal(out.values, noisy)


def test_llama_cpp_and_wrapped_names() -> None:
    assert canonical_name("blk.3.ffn_up.weight") == "model.layers.3.mlp.up_proj.weight"
    assert canonical_name("base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight") == (
        "model.layers.0.self_attn.q_proj.weight"
    )
    found = map_names({"model.embed_tokens.weight": (8, 4)}, {"token_embd.weight": (8, 4)})
    assert found == {"model.embed_tokens.weight": "token_embd.weight"}


def test_mild_rescaling_of_a_near_copy_is_still_undone() -> None:
    w = _matrix(5, 256, 128)
    rng = np.random.default_rng(6)
    r = rng.uniform(0.85, 1.15, 256).astype(np.float32)
    out = align_matrix(w, w * r[:, None])
    assert any("rescaling" in step for step in out.steps)
    np.testing.assert_allclose(out.values, w, rtol=0, atol=1e-6)
