"""Pairing a suspect with a release: which release it came from, and which tensor is which.

Reads the original release's bytes (through the blob store) and the suspect's tensors; the
alignment itself is the pure numeric `align` module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from ringfence.catalogue.models import Artifact, Release
from ringfence.catalogue.services import get_release, list_releases
from ringfence.errors import NotFound
from ringfence.fingerprint.plan import CarrierTensor, FingerprintPlan
from ringfence.fingerprint.read import decode
from ringfence.fingerprint.services import artifact_plan, release_params
from ringfence.tracing.align import (
    align_matrix,
    map_names,
    shape_signature,
    signature_similarity,
)
from ringfence.tracing.rotation import StreamTransform
from ringfence.tracing.stream import stream_transform
from ringfence.tracing.suspect import Suspect
from ringfence.wiring import Services

F32 = npt.NDArray[np.float32]

#: a release is recognised when its aligned weights correlate at least this well
MIN_RELEASE_CORRELATION = 0.5


# --- the original release ------------------------------------------------------------------


def weight_plans(
    services: Services, release: Release, key: bytes
) -> list[tuple[Artifact, FingerprintPlan]]:
    plans = []
    params = release_params(release)
    for artifact in release.artifacts:
        plan = artifact_plan(key, artifact, params)
        if plan is not None and plan.tensors:
            plans.append((artifact, plan))
    return plans


def original_raw(
    services: Services, artifact: Artifact, tensor: CarrierTensor
) -> npt.NDArray[np.uint8]:
    local = services.blobs.local_path(artifact.sha256)
    if local is not None:
        mm = np.memmap(local, dtype=np.uint8, mode="r")
        return np.asarray(mm[tensor.begin : tensor.end])
    with services.blobs.open(artifact.sha256) as fh:
        fh.seek(tensor.begin)
        return np.frombuffer(fh.read(tensor.end - tensor.begin), dtype=np.uint8)


def shape_of(artifact: Artifact, name: str) -> tuple[int, ...]:
    for t in artifact.tensors:
        if t.name == name:
            return tuple(int(d) for d in t.shape)
    raise NotFound(f"tensor {name} is not in {artifact.path}")


# --- the suspect's tensors -----------------------------------------------------------------


def load_suspect(suspect: Suspect, name: str) -> tuple[F32, str | None]:
    """A suspect tensor, with llama.cpp's rotary row order of q/k undone when it is a GGUF."""
    from ringfence.formats.convert import unpermute_rotary

    values = suspect.load(name)
    meta = suspect.gguf_metadata
    if suspect.entries[name].format == "gguf" and values.ndim == 2:
        heads = meta.get("llama.attention.head_count")
        kv_heads = meta.get("llama.attention.head_count_kv", heads)
        if heads and re.search(r"\.attn_q\.weight$", name):
            return unpermute_rotary(values, int(heads)), "llama.cpp rotary order of q undone"
        if kv_heads and re.search(r"\.attn_k\.weight$", name):
            return unpermute_rotary(values, int(kv_heads)), "llama.cpp rotary order of k undone"
    return values, None


def suspect_grid(suspect: Suspect, name: str) -> F32 | None:
    """The bin widths of a quantised GGUF tensor, in the row order `load_suspect` gives."""
    from ringfence.formats.convert import unpermute_rotary

    grid = suspect.grid(name)
    if grid is None or grid.ndim != 2:
        return grid
    meta = suspect.gguf_metadata
    heads = meta.get("llama.attention.head_count")
    kv_heads = meta.get("llama.attention.head_count_kv", heads)
    if heads and re.search(r"\.attn_q\.weight$", name):
        return unpermute_rotary(grid, int(heads))
    if kv_heads and re.search(r"\.attn_k\.weight$", name):
        return unpermute_rotary(grid, int(kv_heads))
    return grid


def match_tensors(
    suspect: Suspect,
    originals: dict[str, tuple[int, ...]],
    steps: list[str],
    load_original: Callable[[str], F32],
) -> dict[str, str]:
    """Original carrier name -> suspect tensor name: by name, then by content."""
    suspect_2d = {n: suspect.shape(n) for n in suspect.names() if len(suspect.shape(n)) == 2}
    found = map_names(originals, suspect_2d)
    renamed = sum(1 for o, s in found.items() if o != s)
    if renamed:
        steps.append(f"{renamed} tensor names mapped to the release's names")
    left = [n for n in originals if n not in found]
    taken = set(found.values())
    free = [n for n in suspect_2d if n not in taken]
    if left and free:
        guessed = _match_by_content(suspect, originals, left, free, load_original)
        if guessed:
            steps.append(f"{len(guessed)} tensors with unknown names matched by content")
            found.update(guessed)
    return found


def _match_by_content(
    suspect: Suspect,
    originals: dict[str, tuple[int, ...]],
    left: list[str],
    free: list[str],
    load_original: Callable[[str], F32],
) -> dict[str, str]:
    """Pair unnamed suspect matrices with originals: permutation-blind signatures shortlist
    three candidates of a compatible shape, the aligned correlation decides."""
    signatures = {n: shape_signature(load_suspect(suspect, n)[0]) for n in free}
    chosen: dict[str, str] = {}
    for name in sorted(left, key=lambda n: -math.prod(originals[n])):
        shape = originals[name]
        fits = [
            n
            for n in free
            if n not in chosen.values()
            and (sorted(suspect.shape(n)) == sorted(shape) or shape[1] in suspect.shape(n))
        ]
        if not fits:
            continue
        original = load_original(name)
        mine = shape_signature(original)
        ranked = sorted(fits, key=lambda n: -signature_similarity(mine, signatures[n]))[:3]
        best = max(
            ranked, key=lambda n: align_matrix(original, load_suspect(suspect, n)[0]).correlation
        )
        if align_matrix(original, load_suspect(suspect, best)[0]).correlation >= (
            MIN_RELEASE_CORRELATION
        ):
            chosen[name] = best
    return chosen


# --- release identification ----------------------------------------------------------------


def release_tensors(release: Release) -> dict[str, tuple[tuple[int, ...], Artifact]]:
    """Every tensor of a release's weights files: name -> (shape, artifact)."""
    weights = [a for a in release.artifacts if a.format in ("safetensors", "gguf")]
    return {t.name: (tuple(int(d) for d in t.shape), a) for a in weights for t in a.tensors}


def release_stream(
    services: Services, release: Release, suspect: Suspect
) -> tuple[StreamTransform, dict[str, str]]:
    """The suspect's residual-stream transform (norm folding, rotation) against a release."""
    tensors = release_tensors(release)

    def load_original(name: str) -> F32:
        shape, artifact = tensors[name]
        return original_values(services, artifact, name).reshape(shape)

    return stream_transform(
        suspect,
        lambda n: load_suspect(suspect, n)[0],
        {n: shape for n, (shape, _) in tensors.items()},
        load_original,
    )


def _release_score(
    services: Services,
    release: Release,
    suspect: Suspect,
    transform: StreamTransform | None = None,
) -> float | None:
    """Mean aligned correlation of up to three of the suspect's matrices with the release's."""
    suspect_2d = {n: suspect.shape(n) for n in suspect.names() if len(suspect.shape(n)) == 2}
    originals = {n: v for n, v in release_tensors(release).items() if len(v[0]) == 2}
    if not originals:
        return None
    mapping = map_names({n: s for n, (s, _) in originals.items()}, suspect_2d)
    pairs = list(mapping.items())
    if not pairs:
        # names unknown: pair by shape (either orientation), largest first
        by_shape: dict[tuple[int, ...], list[str]] = {}
        for n, s in suspect_2d.items():
            by_shape.setdefault(tuple(sorted(s)), []).append(n)
        for n, (s, _) in sorted(originals.items(), key=lambda kv: -math.prod(kv[1][0])):
            cands = by_shape.get(tuple(sorted(s)))
            if cands:
                pairs.append((n, cands[0]))
    if not pairs:
        return None
    pairs.sort(key=lambda p: -math.prod(originals[p[0]][0]))
    chosen = [p for p in pairs if math.prod(originals[p[0]][0]) <= 4_000_000][:3] or pairs[:1]
    scores = []
    for o_name, s_name in chosen:
        shape, artifact = originals[o_name]
        original = original_values(services, artifact, o_name).reshape(shape)
        theirs, _ = load_suspect(suspect, s_name)
        if transform is not None and not transform.empty:
            theirs = transform.undo(o_name, oriented(original.shape, theirs))
        scores.append(align_matrix(original, theirs).correlation)
    return float(np.mean(scores))


def oriented(shape: tuple[int, ...], values: F32) -> F32:
    """A suspect matrix stored transposed (and not square) turned to the original's shape."""
    if values.shape != shape and values.shape == shape[::-1]:
        return np.ascontiguousarray(values.T)
    return values


def identify_release(
    services: Services,
    session: Session,
    suspect: Suspect,
    candidates: Sequence[Release] | None = None,
) -> tuple[Release, float, StreamTransform | None]:
    """The catalogued release whose weights the suspect's are closest to (aligned correlation).

    When none is close in the suspect's own coordinates, each release is tried again with the
    suspect's residual-stream rotation (fitted against it) undone; that transform is returned
    with the release (None when the release was recognised without one). `candidates` limits
    the search (default: every release); lineage checks leave out the derivative's own hosted
    release, which would match itself.
    """
    best: tuple[float, Release | None] = (-1.0, None)
    found: dict[int, StreamTransform] = {}
    releases = (
        [get_release(session, summary.ref) for summary in list_releases(session)]
        if candidates is None
        else list(candidates)
    )
    for release in releases:
        value = _release_score(services, release, suspect)
        if value is not None and value > best[0]:
            best = (value, release)
    if best[0] < MIN_RELEASE_CORRELATION:
        for release in releases:
            transform, _ = release_stream(services, release, suspect)
            if transform.rotation is None:
                continue
            found[release.id] = transform
            value = _release_score(services, release, suspect, transform)
            if value is not None and value > best[0]:
                best = (value, release)
    if best[1] is None or best[0] < MIN_RELEASE_CORRELATION:
        raise NoRelease(
            "the suspect's weights match no release in the catalogue "
            f"(best correlation {max(best[0], 0.0):.2f}): no fingerprint found"
        )
    return best[1], best[0], found.get(best[1].id)


def original_values(services: Services, artifact: Artifact, name: str) -> F32:
    for t in artifact.tensors:
        if t.name == name:
            ct = CarrierTensor(t.name, t.dtype, 0, int(t.begin), int(t.end), 0)
            raw = original_raw(services, artifact, ct)
            if t.dtype == "BF16" or t.dtype in ("F16", "F32", "Q8_0"):
                return decode(t.dtype, raw)
            raise NotFound(f"{name} is {t.dtype}, which tracing does not decode")
    raise NotFound(f"tensor {name} is not in {artifact.path}")


class NoRelease(NotFound):
    """The suspect matches no catalogued release (a trace that finds no fingerprint)."""

    exit_code = 1
