"""Rotations of the residual stream and inside heads are recovered from the suspect alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bench.attacks import rotation as attack
from safetensors.numpy import save_file

from ringfence.tracing.align import align_matrix
from ringfence.tracing.rotation import (
    fit_stream_rotation,
    procrustes,
    undo_block_rotations,
)
from ringfence.tracing.stream import stream_transform
from ringfence.tracing.suspect import open_suspect

HIDDEN, HEADS, KV, LAYERS = 64, 4, 2, 3


def _model(seed: int = 0) -> dict[str, np.ndarray]:
    """A small Llama-shaped model with norm scales that are not ones."""
    rng = np.random.default_rng(seed)
    dim = HIDDEN // HEADS

    def m(*shape: int) -> np.ndarray:
        return rng.normal(0, 0.02, shape).astype(np.float32)

    t = {"model.embed_tokens.weight": m(512, HIDDEN)}
    t["model.norm.weight"] = rng.uniform(0.5, 1.5, HIDDEN).astype(np.float32)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        t[p + "self_attn.q_proj.weight"] = m(HIDDEN, HIDDEN)
        t[p + "self_attn.k_proj.weight"] = m(KV * dim, HIDDEN)
        t[p + "self_attn.v_proj.weight"] = m(KV * dim, HIDDEN)
        t[p + "self_attn.o_proj.weight"] = m(HIDDEN, HIDDEN)
        t[p + "mlp.gate_proj.weight"] = m(256, HIDDEN)
        t[p + "mlp.up_proj.weight"] = m(256, HIDDEN)
        t[p + "mlp.down_proj.weight"] = m(HIDDEN, 256)
        for norm in ("input_layernorm", "post_attention_layernorm"):
            t[p + norm + ".weight"] = rng.uniform(0.5, 1.5, HIDDEN).astype(np.float32)
    return t


def test_procrustes_recovers_a_rotation_through_noise() -> None:
    rng = np.random.default_rng(1)
    q = attack.random_orthogonal(64, rng)
    a = rng.normal(size=(2000, 64)).astype(np.float32)
    s = a @ q.T + rng.normal(0, 0.1, a.shape).astype(np.float32)
    r = procrustes([(s, a)])
    assert float(np.max(np.abs(r - q))) < 0.02


def test_a_permuted_tensor_disagrees_and_the_others_fix_the_rotation() -> None:
    rng = np.random.default_rng(2)
    q = attack.random_hadamard(64, rng)
    pairs = {}
    for i in range(5):
        a = rng.normal(size=(300, 64)).astype(np.float32)
        s = a @ q.T
        if i == 0:
            s = s[rng.permutation(300)]
        pairs[f"t{i}"] = (a, s)
    found = fit_stream_rotation(pairs)
    assert found is not None and found.agreeing == 4
    assert float(np.max(np.abs(found.rotation - q))) < 1e-4


def test_no_rotation_is_none() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(300, 64)).astype(np.float32)
    assert fit_stream_rotation({"t": (a, a + 0.01 * rng.normal(size=a.shape))}) is None


def _undone(tmp_path: Path, leaked: dict[str, np.ndarray], original: dict[str, np.ndarray]):
    path = tmp_path / "leak.safetensors"
    save_file(leaked, str(path))
    shapes = {n: v.shape for n, v in original.items()}
    with open_suspect([path], hash_files=False) as suspect:
        transform, names = stream_transform(suspect, suspect.load, shapes, lambda n: original[n])
        return transform, {n: transform.undo(n, suspect.load(names[n])) for n in names}


def test_folded_norms_and_a_rotation_are_undone_in_every_tensor(tmp_path: Path) -> None:
    original = _model()
    rng = np.random.default_rng(4)
    leaked = attack.rotate(original, attack.random_orthogonal(HIDDEN, rng))
    transform, back = _undone(tmp_path, leaked, original)
    # the output head is tied to the embedding in the original: model.norm reads into nothing
    assert transform.rotation is not None and len(transform.changed) == 2 * LAYERS
    for name, values in original.items():
        if values.ndim == 2:
            np.testing.assert_allclose(back[name], values, atol=2e-5)


def test_folded_norms_without_rotation_are_undone(tmp_path: Path) -> None:
    original = _model()
    transform, back = _undone(tmp_path, attack.fold_norms(original), original)
    assert transform.rotation is None and transform.changed
    np.testing.assert_allclose(
        back["model.layers.1.mlp.up_proj.weight"],
        original["model.layers.1.mlp.up_proj.weight"],
        atol=1e-6,
    )


def test_an_unchanged_copy_needs_nothing(tmp_path: Path) -> None:
    original = _model()
    transform, _ = _undone(tmp_path, dict(original), original)
    assert transform.empty


def test_rotations_inside_heads_are_undone() -> None:
    original = _model()
    rng = np.random.default_rng(5)
    leaked = attack.rotate_heads(original, rng, HEADS, KV)
    for name, axis in (("v_proj", 0), ("q_proj", 0), ("k_proj", 0), ("o_proj", 1)):
        key = f"model.layers.0.self_attn.{name}.weight"
        assert align_matrix(original[key], leaked[key]).correlation < 0.8
        found = undo_block_rotations(original[key], leaked[key], axis)
        assert found is not None and found[1] == HIDDEN // HEADS
        np.testing.assert_allclose(found[0], original[key], atol=1e-5)
