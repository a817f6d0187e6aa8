"""Tracing a leaked copy: identify the release, align, read, score everyone, record the trace.

The adapter between the numeric core (`align` here; `read` and `accuse` in the fingerprint
area, shared with `fingerprint detect`) and the rest of ringfence:
catalogue (releases and their original bytes), the fingerprint area (release keys, carrier
plans, recipients), distribution (per-recipient manifests for the exact-copy fast path),
access (grants and licence acceptances for the evidence) and the audit log.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Artifact, Release
from ringfence.catalogue.services import get_release
from ringfence.errors import InvalidInput
from ringfence.fingerprint import code
from ringfence.fingerprint.accuse import DEFAULT_BOUND, Verdict, decide, score_all
from ringfence.fingerprint.models import Recipient
from ringfence.fingerprint.read import SymbolEvidence, decode, soft_symbols, tensor_evidence
from ringfence.fingerprint.services import (
    recipient_indices,
    release_key,
    release_params,
    release_thresholds,
)
from ringfence.tracing.align import (
    align_matrix,
)
from ringfence.tracing.match import (
    MIN_RELEASE_CORRELATION,
    identify_release,
    load_suspect,
    match_tensors,
    oriented,
    original_raw,
    release_stream,
    shape_of,
    suspect_grid,
    weight_plans,
)
from ringfence.tracing.records import attach_records
from ringfence.tracing.rotation import (
    StreamTransform,
    block_axis,
    stream_role,
    undo_block_rotations,
)
from ringfence.tracing.suspect import Suspect, SuspectFile, open_suspect
from ringfence.wiring import Services

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Progress = Callable[[str], None]

_LAYER = re.compile(r"\.(\d+)\.")
#: tensors read at once (one per core; each holds a few float32 copies of one matrix)
READ_WORKERS = min(4, os.cpu_count() or 1)
#: an attention matrix aligned worse than this is tried for rotations inside its heads
HEADS_SUSPECTED = 0.8


@dataclass(frozen=True)
class AccusedRecipient:
    """A recipient the evidence names; `score` is None for an exact-copy (hash) match."""

    recipient: str
    index: int
    score: float | None
    z: float | None
    p_value: float
    simulated: bool = False


@dataclass
class TraceResult:
    """Everything a trace found: what the CLI prints, the report shows and the audit keeps."""

    files: list[SuspectFile]
    release: str | None
    exact_match: bool
    accused: list[AccusedRecipient]
    alignment: list[str]
    bound: float
    message: str
    recipients_scored: int = 0
    threshold_z: float | None = None
    symbols_read: int = 0
    code_length: int = 0
    tensors_read: int = 0
    tensors_carrying: int = 0
    verdict: Verdict | None = None
    layer_evidence: dict[str, dict[str, float]] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    audit_seq: int | None = None

    def summary(self) -> dict[str, Any]:
        """The one JSON object `ringfence trace --json` prints."""
        return {
            "release": self.release,
            "exact_match": self.exact_match,
            "accused": [
                {"recipient": a.recipient, "score": a.score, "p_value": a.p_value}
                for a in self.accused
            ],
            "alignment": self.alignment,
            "bound": self.bound,
            "message": self.message,
        }


def _group(name: str) -> str:
    """The report's unit of per-layer evidence: `layer N`, or the tensor's name."""
    match = _LAYER.search(name)
    return f"layer {int(match.group(1)):02d}" if match else name.rsplit(".", 1)[0]


def _collapse(steps: Sequence[str]) -> list[str]:
    """Steps repeated across tensors said once, with how many tensors needed them."""
    counts: Counter[str] = Counter()
    first: dict[str, str] = {}
    for step in steps:
        shape = re.sub(r"\d+(\.\d+)?", "#", step)
        counts[shape] += 1
        first.setdefault(shape, step)
    return [
        first[k] + (f" (in {n} tensors, e.g. this one)" if n > 1 else "") for k, n in counts.items()
    ]


# --- fast path: exact copies ---------------------------------------------------------------


def exact_copies(session: Session, files: Sequence[SuspectFile]) -> list[tuple[int, str, str]]:
    """(release id, recipient e-mail, path) of issued copies that hold a suspect file's bytes.

    One indexed lookup of the files' sha256s in `recipient_file_hashes`, which distribution
    keeps equal to the files of every ready signed per-recipient manifest.
    """
    try:
        from ringfence.accounts.models import User
        from ringfence.distribution.models import RecipientFileHash
    except ImportError:  # pragma: no cover - the distribution area is not installed
        return []
    wanted = sorted({f.sha256 for f in files if f.sha256})
    if not wanted:
        return []
    rows = session.execute(
        select(RecipientFileHash.release_id, User.email, RecipientFileHash.path)
        .join(User, User.id == RecipientFileHash.user_id)
        .where(RecipientFileHash.sha256.in_(wanted))
        .order_by(RecipientFileHash.id)
    )
    return [(int(release_id), str(email), str(path)) for release_id, email, path in rows]


def _originals_matching(session: Session, files: Sequence[SuspectFile]) -> list[str]:
    wanted = {f.sha256 for f in files if f.sha256}
    if not wanted:
        return []
    rows = session.execute(
        select(Release, Artifact.path).join(Artifact).where(Artifact.sha256.in_(wanted))
    )
    return [f"{release.ref}:{path}" for release, path in rows]


# --- the trace -----------------------------------------------------------------------------


def _emails(
    session: Session, release: Release, indices: Sequence[int]
) -> dict[int, tuple[str, bool]]:
    rows = session.execute(
        select(Recipient.index, Recipient.email, Recipient.simulated).where(
            Recipient.release_id == release.id, Recipient.index.in_(list(indices))
        )
    )
    return {int(i): (str(e), bool(s)) for i, e, s in rows}


def read_symbols(
    services: Services,
    release: Release,
    key: bytes,
    suspect: Suspect,
    steps: list[str],
    progress: Progress | None = None,
    transform: StreamTransform | None = None,
) -> tuple[SymbolEvidence, dict[str, SymbolEvidence], int, int]:
    """Align every carrier tensor the suspect holds and read the code symbols from it.

    `transform` is the suspect's residual-stream transform when it is known already (fitted
    while identifying the release); otherwise it is fitted here.
    """
    plans = weight_plans(services, release, key)
    carriers = {t.name: (artifact, plan, t) for artifact, plan in plans for t in plan.tensors}
    shapes = {name: shape_of(a, name) for name, (a, _, _) in carriers.items()}

    def load_original(name: str) -> F32:
        artifact, _, tensor = carriers[name]
        return decode(tensor.dtype, original_raw(services, artifact, tensor)).reshape(shapes[name])

    mapping = match_tensors(suspect, shapes, steps, load_original)
    if transform is None:
        transform, _ = release_stream(services, release, suspect)
    steps.extend(transform.steps())
    length = release_params(release).design.length
    total = SymbolEvidence.empty(length)
    groups: dict[str, SymbolEvidence] = {}
    tensor_steps: list[str] = []

    def read_one(name: str) -> tuple[list[str], SymbolEvidence | None]:
        artifact, plan, tensor = carriers[name]
        other = mapping[name]
        said: list[str] = []
        raw = original_raw(services, artifact, tensor)
        original = decode(tensor.dtype, raw).reshape(shapes[name])
        theirs, rotary = load_suspect(suspect, other)
        if rotary:
            said.append(rotary)
        dtype = suspect.entries[other].info.dtype
        if dtype != tensor.dtype:
            said.append(f"dtype {dtype} read against the release's {tensor.dtype}")
        untouched = True
        if not transform.empty and stream_role(name) is not None:
            theirs = transform.undo(name, oriented(original.shape, theirs))
            untouched = False
        aligned = align_matrix(original, theirs)
        axis = block_axis(name)
        if aligned.correlation < HEADS_SUSPECTED and axis is not None:
            # rotations inside attention heads (value/output, rotary-preserving query/key)
            inside = undo_block_rotations(original, theirs, axis)
            if inside is not None:
                again = align_matrix(original, inside[0])
                if again.correlation > aligned.correlation:
                    said.append(f"rotations inside heads undone (blocks of {inside[1]})")
                    aligned, untouched = again, False
        del theirs
        said.extend(aligned.steps)
        if aligned.correlation < MIN_RELEASE_CORRELATION:
            return said, None
        # the leak's own quantisation grid, where its values are read in its own layout
        grid = suspect_grid(suspect, other) if untouched and not aligned.steps else None
        ev = tensor_evidence(
            tensor.dtype,
            raw,
            aligned.values,
            tensor.seed,
            plan.code_length,
            plan.density_log2,
            values=original,
            grid=grid,
        )
        return said, ev

    present = [name for name in carriers if name in mapping]
    read = 0
    # numpy releases the GIL in its array loops: tensors are read on every core, and summed
    # in the carriers' order so that the evidence does not depend on the scheduling
    with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
        for name, (said, ev) in zip(present, pool.map(read_one, present), strict=True):
            if progress is not None:
                progress(name)
            tensor_steps.extend(said)
            if ev is None:
                continue
            total.add(ev)
            groups.setdefault(_group(name), SymbolEvidence.empty(length)).add(ev)
            read += 1
    steps.extend(_collapse(tensor_steps))
    if read < len(carriers):
        steps.append(f"subset: {read} of {len(carriers)} fingerprinted tensors present and read")
    return total, groups, read, len(carriers)


def _layer_z(
    groups: dict[str, SymbolEvidence], key: bytes, limits: npt.NDArray[np.uint16], index: int
) -> dict[str, float]:
    """Per layer: the recipient's z from that layer's symbols alone."""
    p = limits.astype(np.float64) / code.RESOLUTION
    bits = code.codeword(key, index, limits).astype(np.float64)
    u = (bits - p) / np.sqrt(p * (1 - p))
    out = {}
    for name in sorted(groups):
        y = soft_symbols(groups[name]).symbols
        norm = float(np.sqrt(np.sum(y * y)))
        out[name] = float(y @ u) / norm if norm > 0 else 0.0
    return out


def trace(
    services: Services,
    session: Session,
    paths: Sequence[Path],
    *,
    release_ref: str | None = None,
    bound: float = DEFAULT_BOUND,
    actor: str = "cli",
    progress: Progress | None = None,
) -> TraceResult:
    """Trace a suspect copy (files or directories) and record the trace in the audit log."""
    if not 0 < bound < 1:
        raise InvalidInput(f"the false-accusation bound must be in (0, 1), not {bound}")
    say = progress or (lambda _m: None)
    with open_suspect([Path(p) for p in paths]) as suspect:
        say("hashing and checking issued copies")
        result = _exact_path(session, suspect, release_ref, bound)
        if result is None:
            result = _statistical_path(services, session, suspect, release_ref, bound, say)
    attach_records(session, result)
    event = record(
        session,
        EventTag.Tracing.TraceRun,
        actor=actor,
        subject=f"release:{result.release}" if result.release else "release:unknown",
        payload={
            "files": [
                {"name": f.path.name, "sha256": f.sha256, "size": f.size} for f in result.files
            ],
            **result.summary(),
            "recipients_scored": result.recipients_scored,
        },
    )
    result.audit_seq = event.seq
    return result


def _exact_path(
    session: Session, suspect: Suspect, release_ref: str | None, bound: float
) -> TraceResult | None:
    hits = exact_copies(session, suspect.files)
    if not hits:
        return None
    release_ids = {r for r, _, _ in hits}
    releases = {
        r.id: r for r in session.scalars(select(Release).where(Release.id.in_(release_ids)))
    }
    if release_ref is not None:
        wanted = get_release(session, release_ref)
        hits = [h for h in hits if h[0] == wanted.id]
        if not hits:
            return None
    emails = sorted({e for _, e, _ in hits})
    release = releases[hits[0][0]]
    # list(): a Result has .keys(), so dict() would take it for a mapping
    indices = dict(
        list(
            session.execute(
                select(Recipient.email, Recipient.index).where(
                    Recipient.release_id == release.id, Recipient.email.in_(emails)
                )
            ).tuples()
        )
    )
    accused = [AccusedRecipient(e, int(indices.get(e, -1)), None, None, 0.0) for e in emails]
    paths = sorted({p for _, _, p in hits})
    return TraceResult(
        files=suspect.files,
        release=release.ref,
        exact_match=True,
        accused=accused,
        alignment=[],
        bound=bound,
        message=(
            f"exact copy: the bytes of {', '.join(paths)} are those issued to "
            f"{', '.join(emails)} (sha256 of the recipient's signed manifest)"
        ),
    )


def _statistical_path(
    services: Services,
    session: Session,
    suspect: Suspect,
    release_ref: str | None,
    bound: float,
    say: Progress,
) -> TraceResult:
    steps: list[str] = []
    originals = _originals_matching(session, suspect.files)
    transform = None
    if release_ref is not None:
        release = get_release(session, release_ref)
    else:
        say("identifying the release")
        release, corr, transform = identify_release(services, session, suspect)
        steps.append(f"release identified by weight correlation {corr:.3f}")
    key = release_key(services.secrets, release)
    say(f"reading the fingerprint against {release.ref}")
    total, groups, read, carrying = read_symbols(
        services, release, key, suspect, steps, say, transform
    )
    params = release_params(release)
    length = params.design.length
    limits = release_thresholds(key, params)
    soft = soft_symbols(total)
    ids = recipient_indices(session, release)
    base = TraceResult(
        files=suspect.files,
        release=release.ref,
        exact_match=False,
        accused=[],
        alignment=steps,
        bound=bound,
        message="",
        recipients_scored=int(ids.size),
        symbols_read=soft.read,
        code_length=length,
        tensors_read=read,
        tensors_carrying=carrying,
    )
    if read == 0:
        base.message = (
            f"no fingerprint found: the suspect holds none of {release.ref}'s fingerprinted tensors"
        )
        return base
    if originals:
        base.message = "the suspect holds the unfingerprinted original bytes of " + ", ".join(
            originals
        )
    if ids.size == 0:
        base.message = (
            base.message or f"no fingerprint to look for: {release.ref} was issued to nobody"
        )
        return base
    say(f"scoring {ids.size:,} recipients")
    scored = score_all(key, limits, soft.symbols, ids, screen=params.least_length)
    if scored.screened_out:
        steps.append(
            f"screened {ids.size:,} recipients on the first {scored.screen:,} code symbols "
            f"(the least code for {params.max_colluders} colluders); the best "
            f"{ids.size - scored.screened_out:,} scored on all {length:,}"
        )
    verdict = decide(scored, ids, limits, soft.symbols, bound=bound)
    base.verdict = verdict
    base.threshold_z = verdict.threshold_z
    names = _emails(session, release, [c.index for c in verdict.candidates])
    base.candidates = [
        {
            "recipient": names.get(c.index, ("?", False))[0],
            "index": c.index,
            "score": c.score,
            "z": c.z,
            "p_value": c.p_value,
            "accused": c.accused,
        }
        for c in verdict.candidates
    ]
    for c in verdict.accused:
        email, simulated = names.get(c.index, (f"recipient #{c.index}", False))
        base.accused.append(AccusedRecipient(email, c.index, c.score, c.z, c.p_value, simulated))
        base.layer_evidence[email] = _layer_z(groups, key, limits, c.index)
    if base.accused:
        base.message = (
            f"{len(base.accused)} recipient(s) accused; each p-value is below the bound {bound:g} "
            f"over all {ids.size:,} recipients"
        )
    elif not originals:
        top = verdict.candidates[0] if verdict.candidates else None
        base.message = (
            "no fingerprint found: the evidence is not enough to accuse anyone "
            f"(best z {top.z:.2f} against a threshold of {verdict.threshold_z:.2f}; "
            f"{soft.read:,} of {length:,} code symbols read)"
            if top
            else "no fingerprint found"
        )
    return base
