"""Fitting a suspect's residual-stream transform (norm folding, rotation) against a release.

The adapter between a `Suspect` and the pure numeric `rotation` module: it loads the norms
and a sample of the rows of every tensor that reads or writes the residual stream, from both
sides, and hands arrays to `fit_stream_rotation`. A cheap probe comes first: when some of the
stream's tensors already agree with the original in their own coordinates, nothing is rotated
and no more is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from ringfence.errors import NotFound
from ringfence.tracing.align import map_names
from ringfence.tracing.rotation import (
    AGREE,
    CHECK_ROWS,
    FIT_ROWS,
    FIT_TENSORS,
    StreamRole,
    StreamTransform,
    effective_rows,
    fit_stream_rotation,
    median_row_correlation,
    norms_differ,
    stream_role,
)
from ringfence.tracing.suspect import Suspect

F32 = npt.NDArray[np.float32]
Loader = Callable[[str], F32]

#: tensors probed in their own coordinates before a rotation is looked for
PROBES = 8


def _rows_sample(n: int, most: int) -> npt.NDArray[np.int64]:
    return np.unique(np.linspace(0, n - 1, min(n, most)).astype(np.int64))


def _oriented(role: StreamRole, original_shape: tuple[int, ...], values: F32) -> F32 | None:
    """The suspect tensor in the original's orientation (transposed storage undone), or None."""
    if values.shape == original_shape:
        return values
    if values.shape == original_shape[::-1]:
        return np.ascontiguousarray(values.T)
    return None


def stream_transform(
    suspect: Suspect,
    load_suspect: Callable[[str], F32],
    originals: Mapping[str, tuple[int, ...]],
    load_original: Loader,
) -> tuple[StreamTransform, dict[str, str]]:
    """The suspect's residual-stream transform against the original's tensors (names: shapes).

    Returns the transform (empty when nothing was folded or rotated) and the name mapping
    (original -> suspect) it used.
    """
    suspect_shapes = {n: suspect.shape(n) for n in suspect.names()}
    names = map_names(originals, suspect_shapes)
    norms: dict[str, tuple[F32, F32]] = {}
    changed = set()
    stream = []
    for o_name, shape in originals.items():
        role = stream_role(o_name)
        if role is None or len(shape) != 2 or o_name not in names:
            continue
        stream.append((o_name, role))
        if role.norm and role.norm not in norms and role.norm in originals:
            try:
                g_o = load_original(role.norm).reshape(-1)
            except NotFound:
                continue
            s_name = names.get(role.norm)
            # a suspect without its norms was folded, if anything (a rotation needs g = 1)
            g_s = load_suspect(s_name).reshape(-1) if s_name else np.ones_like(g_o)
            if g_s.shape != g_o.shape:
                g_s = np.ones_like(g_o)
            norms[role.norm] = (g_s.astype(np.float32), g_o.astype(np.float32))
            if norms_differ(g_s, g_o):
                changed.add(role.norm)
    if not stream:
        return StreamTransform(None), names

    def pair(o_name: str, role: StreamRole, most: int) -> tuple[F32, F32] | None:
        theirs = _oriented(role, originals[o_name], load_suspect(names[o_name]))
        if theirs is None:
            return None
        try:
            original = load_original(o_name)
        except NotFound:  # a type tracing does not decode: no evidence from this one
            return None
        g = norms.get(role.norm or "")
        a = effective_rows(role, original, None if g is None else g[1])
        s = effective_rows(role, theirs, None if g is None else g[0])
        rows = _rows_sample(a.shape[0], most)
        return np.ascontiguousarray(a[rows]), np.ascontiguousarray(s[rows])

    # the probe: one tensor of each kind from a few layers; agreeing ones mean no rotation
    by_size = sorted(stream, key=lambda nr: -int(np.prod(originals[nr[0]])))
    probes = by_size[:: max(1, len(by_size) // PROBES)][:PROBES]
    for o_name, role in probes:
        p = pair(o_name, role, CHECK_ROWS)
        if p is not None and median_row_correlation(p[1], p[0]) >= AGREE:
            return StreamTransform(None, norms, frozenset(changed)), names

    # the largest tensors of each layer kind, spread over the layers, are fitted on (FIT_ROWS
    # rows each); the others are checked (CHECK_ROWS rows each)
    spread = by_size[:: max(1, len(by_size) // FIT_TENSORS)][:FIT_TENSORS]
    fit_names = {n for n, _ in spread}
    pairs = {}
    for o_name, role in stream:
        p = pair(o_name, role, FIT_ROWS if o_name in fit_names else CHECK_ROWS)
        if p is not None:
            pairs[o_name] = p
    rotation = fit_stream_rotation(pairs)
    return StreamTransform(rotation, norms, frozenset(changed)), names
