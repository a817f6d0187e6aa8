"""Undoing function-preserving reparametrisations of the residual stream and of attention heads.

Rotation-based quantisers (QuaRot, Ashkboos et al. 2024; SpinQuant, Liu et al. 2024) multiply
the residual stream by an orthogonal Q, after folding each RMSNorm's scale g into the matrices
that read its output (W -> W·diag(g), g -> 1, so that the norm commutes with Q): matrices that
read the stream become W·diag(g)·Qᵀ (q/k/v, gate/up, the output head), those that write it
Q·W (o, down), the embedding E·Qᵀ. Written with the stream as the columns of "rows" (a reader
as it is, a writer transposed, the embedding as it is), every such tensor is X -> X·Qᵀ, and
since tracing is non-blind Q is the solution of the orthogonal Procrustes problem

    R = argmin_{RᵀR = I} Σ_k ‖S_k R − A_k‖² = U Vᵀ,   U Σ Vᵀ = svd(Σ_k S_kᵀ A_k)

(Schönemann 1966), with A_k the original's rows (norm scales folded in) and S_k the suspect's
(its own norm scales folded in, ones when it folded them). Rows rescaled on the other axis
(S = D·A·Qᵀ, D > 0) do not bias it: Sᵀ A = Q·(Aᵀ D A), whose polar factor is Q. A tensor whose
rows were permuted (MLP neurons, heads, vocabulary) gives no evidence under identity row order:
R is fitted on the tensor that agrees with most others, refitted on all that agree ("checked
on the others"), and the permutations are undone afterwards, per tensor, by `align`.

Inside a head the value/output pair can be rotated (v -> R v, o -> o Rᵀ per key/value head)
and the query/key pair by rotations that commute with the rotary embedding; both are undone
per block of head_dim rows (or columns) by the same Procrustes fit, `undo_block_rotations`.

Everything here takes and returns arrays.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

#: rows of a tensor used to fit or to check the rotation (evenly spaced)
FIT_ROWS = 4096
CHECK_ROWS = 48
#: tensors (the largest) a rotation is fitted on
FIT_TENSORS = 12
#: a tensor agrees with a rotation when its rows correlate this well (median) once undone
AGREE = 0.8
#: a fitted rotation this close to the identity (max |R − I|) is taken as none
IDENTITY_TOLERANCE = 0.05
#: head sizes tried, smallest first, when undoing rotations inside attention heads
HEAD_DIMS = (16, 32, 64, 80, 96, 128, 256)

_READERS = {
    "self_attn.q_proj": "input_layernorm",
    "self_attn.k_proj": "input_layernorm",
    "self_attn.v_proj": "input_layernorm",
    "mlp.gate_proj": "post_attention_layernorm",
    "mlp.up_proj": "post_attention_layernorm",
}
_WRITERS = ("self_attn.o_proj", "mlp.down_proj")
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)\.weight$")


@dataclass(frozen=True)
class StreamRole:
    """How a tensor touches the residual stream: reads it (after `norm`), writes it, or embeds."""

    kind: str  # "reader", "writer" or "embedding"
    norm: str | None = None


def stream_role(name: str) -> StreamRole | None:
    """The role of a tensor (transformers' Llama names) in the residual stream, if any."""
    if name == "model.embed_tokens.weight":
        return StreamRole("embedding")
    if name == "lm_head.weight":
        return StreamRole("reader", "model.norm.weight")
    match = _LAYER.match(name)
    if match is None:
        return None
    layer, part = match.groups()
    if part in _READERS:
        return StreamRole("reader", f"model.layers.{layer}.{_READERS[part]}.weight")
    if part in _WRITERS:
        return StreamRole("writer")
    return None


def to_rows(role: StreamRole, matrix: npt.NDArray[np.floating]) -> F32:
    """The tensor with the residual stream along its columns (a writer is transposed)."""
    m = np.asarray(matrix, dtype=np.float32)
    return np.ascontiguousarray(m.T) if role.kind == "writer" else m


def from_rows(role: StreamRole, rows: F32) -> F32:
    """The inverse of `to_rows`."""
    return np.ascontiguousarray(rows.T) if role.kind == "writer" else rows


def _even_rows(n: int, most: int) -> npt.NDArray[np.int64] | slice:
    return slice(None) if n <= most else np.linspace(0, n - 1, most).astype(np.int64)


def procrustes(pairs: Sequence[tuple[F32, F32]]) -> F32:
    """Orthogonal R minimising Σ‖S R − A‖² over (S, A) pairs: U Vᵀ of svd(Σ Sᵀ A)."""
    d = pairs[0][0].shape[1]
    m = np.zeros((d, d), dtype=np.float64)
    for s, a in pairs:
        m += (s.T @ a).astype(np.float64)
    u, _, vt = np.linalg.svd(m)
    out: F32 = (u @ vt).astype(np.float32)
    return out


def median_row_correlation(a: F32, b: F32) -> float:
    """Median over rows of the Pearson correlation of a's row with b's (0 for empty input)."""
    if a.size == 0:
        return 0.0
    x = a - a.mean(axis=1, keepdims=True)
    y = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt(np.einsum("ij,ij->i", x, x) * np.einsum("ij,ij->i", y, y))
    r = np.divide(np.einsum("ij,ij->i", x, y), den, out=np.zeros(a.shape[0]), where=den > 0)
    return float(np.median(r))


@dataclass(frozen=True)
class StreamRotation:
    """A fitted rotation R of the residual stream (suspect rows · R ≈ original rows)."""

    rotation: F32
    fitted_on: int
    agreeing: int
    candidates: int

    def describe(self) -> str:
        """Words for the report."""
        return (
            f"residual-stream rotation undone (orthogonal Procrustes on {self.fitted_on} "
            f"tensors; {self.agreeing} of {self.candidates} agree)"
        )


def fit_stream_rotation(pairs: Mapping[str, tuple[F32, F32]]) -> StreamRotation | None:
    """The residual stream's rotation from (original rows, suspect rows) pairs, or None.

    Rows are compared in the order they come; a tensor whose rows were permuted disagrees and
    is left out of the fit. None when no rotation explains most tensors, or the identity does.
    """
    usable = {n: (a, s) for n, (a, s) in pairs.items() if a.shape == s.shape and a.ndim == 2}
    if not usable:
        return None
    d = next(iter(usable.values()))[0].shape[1]
    usable = {n: p for n, p in usable.items() if p[0].shape[1] == d}
    checks = {
        n: (a[_even_rows(a.shape[0], CHECK_ROWS)], s[_even_rows(s.shape[0], CHECK_ROWS)])
        for n, (a, s) in usable.items()
    }

    def agreeing(r: F32, among: Sequence[str]) -> list[str]:
        return [n for n in among if median_row_correlation(checks[n][1] @ r, checks[n][0]) >= AGREE]

    # seeds: tensors with at least twice as many rows as the stream is wide, largest first;
    # a seed is judged by how many of the tensors given for fitting agree with it
    fitting = sorted(usable, key=lambda n: -usable[n][0].shape[0])[:FIT_TENSORS]
    seeds = [n for n in fitting if usable[n][0].shape[0] >= 2 * d]
    best: tuple[list[str], F32] | None = None
    for name in seeds[:6]:
        a, s = usable[name]
        r = procrustes([(s, a)])
        agree = agreeing(r, fitting)
        if best is None or len(agree) > len(best[0]):
            best = (agree, r)
        if len(agree) * 2 >= len(fitting):
            break
    if best is None or not best[0]:
        return None
    agree, r = best
    # refit on every fitting tensor that agrees, then count agreement among all of them
    r = procrustes([(usable[n][1], usable[n][0]) for n in agree])
    if float(np.max(np.abs(r - np.eye(d, dtype=np.float32)))) < IDENTITY_TOLERANCE:
        return None
    return StreamRotation(r, len(agree), len(agreeing(r, list(usable))), len(usable))


@dataclass
class StreamTransform:
    """What to undo in each residual-stream tensor: norm folding and a rotation."""

    rotation: StreamRotation | None
    #: norm name -> (suspect's scale, original's scale), for every norm the stream reads
    norms: dict[str, tuple[F32, F32]] = field(default_factory=dict)
    #: the norms whose scale the suspect changed (folded into its readers)
    changed: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        """Whether there is nothing to undo."""
        return self.rotation is None and not self.changed

    def steps(self) -> list[str]:
        """Words for the report."""
        out = []
        if self.changed:
            out.append(f"scales of {len(self.changed)} norms folded into their readers undone")
        if self.rotation is not None:
            out.append(self.rotation.describe())
        return out

    def undo(self, name: str, suspect: npt.NDArray[np.floating]) -> F32:
        """A suspect tensor brought back to the original's residual-stream coordinates.

        Rows r of the suspect compute r·diag(g_s); undone: r·diag(g_s)·R·diag(1/g_o).
        """
        role = stream_role(name)
        s = np.asarray(suspect, dtype=np.float32)
        if role is None or (self.rotation is None and role.norm not in self.changed):
            return s
        rows = to_rows(role, s)
        if self.rotation is not None and rows.shape[1] != self.rotation.rotation.shape[0]:
            return s
        scales = self.norms.get(role.norm or "")
        if scales is not None:
            rows = rows * scales[0][None, :]
        if self.rotation is not None:
            rows = rows @ self.rotation.rotation
        if scales is not None:
            g = scales[1]
            safe = np.where(np.abs(g) > 1e-12, g, np.float32(np.nan)).astype(np.float32)
            rows = (rows / safe[None, :]).astype(np.float32)
        return from_rows(role, rows.astype(np.float32))


def effective_rows(role: StreamRole, matrix: npt.NDArray[np.floating], norm: F32 | None) -> F32:
    """The tensor's rows with the scale of the norm it reads folded in (what it computes)."""
    rows = to_rows(role, matrix)
    if norm is not None and norm.shape[0] == rows.shape[1]:
        rows = rows * norm[None, :]
    return rows


def _polar(m: npt.NDArray[np.floating]) -> F32:
    u, _, vt = np.linalg.svd(np.asarray(m, dtype=np.float64))
    out: F32 = (u @ vt).astype(np.float32)
    return out


def undo_block_rotations(
    original: npt.NDArray[np.floating], suspect: npt.NDArray[np.floating], axis: int
) -> tuple[F32, int] | None:
    """Rotations inside blocks of `axis` (heads' rows of q/k/v, columns of o) undone.

    For each block of b rows, X = polar(A_b S_bᵀ) minimises ‖X S_b − A_b‖ (Procrustes); b is
    the smallest head size for which the blocks agree with the original. Returns (aligned,
    b) or None when no block size explains the suspect.
    """
    w = np.asarray(original, dtype=np.float32)
    s = np.asarray(suspect, dtype=np.float32)
    if w.shape != s.shape or w.ndim != 2:
        return None
    if axis == 1:
        w, s = w.T, s.T
    n, d = w.shape
    for b in HEAD_DIMS:
        if n % b or b * 4 > d:
            continue
        out = np.empty_like(s)
        for first in range(0, n, b):
            a_b, s_b = w[first : first + b], s[first : first + b]
            out[first : first + b] = _polar(a_b @ s_b.T) @ s_b
        if median_row_correlation(out, w) >= AGREE:
            result = np.ascontiguousarray(out.T) if axis == 1 else out
            return result, b
    return None


def block_axis(name: str) -> int | None:
    """The axis along which a tensor's heads lie: rows of q/k/v, columns of o; else None."""
    if re.search(r"self_attn\.[qkv]_proj\.weight$", name):
        return 0
    if name.endswith("self_attn.o_proj.weight"):
        return 1
    return None


def norms_differ(suspect: F32, original: F32) -> bool:
    """Whether a suspect's norm scale is not the original's (folded, or otherwise changed)."""
    if suspect.shape != original.shape:
        return False
    scale = float(np.max(np.abs(original))) or 1.0
    return not math.isclose(float(np.max(np.abs(suspect - original))) / scale, 0.0, abs_tol=1e-2)
