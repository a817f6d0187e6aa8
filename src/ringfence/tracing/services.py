"""Tracing a leaked copy: identify the release, align, read, score everyone, record the trace.

The adapter between the numeric core (`align`, `read`, `accuse`) and the rest of ringfence:
catalogue (releases and their original bytes), the fingerprint area (release keys, carrier
plans, recipients), distribution (per-recipient manifests for the exact-copy fast path),
access (grants and licence acceptances for the evidence) and the audit log.
"""

from __future__ import annotations

import math
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
from sqlalchemy import String, cast, insert, select
from sqlalchemy.orm import Session

from ringfence.audit.models import AuditEvent
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Artifact, Release
from ringfence.catalogue.services import get_release, list_releases
from ringfence.errors import InvalidInput, NotFound
from ringfence.fingerprint import code
from ringfence.fingerprint.detect import decode
from ringfence.fingerprint.models import Recipient
from ringfence.fingerprint.plan import CarrierTensor, FingerprintPlan
from ringfence.fingerprint.services import (
    artifact_plan,
    recipient_indices,
    release_key,
    release_params,
    release_thresholds,
)
from ringfence.tracing.accuse import DEFAULT_BOUND, Verdict, decide, score_all
from ringfence.tracing.align import (
    align_matrix,
    map_names,
    shape_signature,
    signature_similarity,
)
from ringfence.tracing.read import SymbolEvidence, soft_symbols, tensor_evidence
from ringfence.tracing.suspect import Suspect, SuspectFile, open_suspect
from ringfence.wiring import Services

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Progress = Callable[[str], None]

#: a release is recognised when its aligned weights correlate at least this well
MIN_RELEASE_CORRELATION = 0.5
_LAYER = re.compile(r"\.(\d+)\.")
#: tensors read at once (one per core; each holds a few float32 copies of one matrix)
READ_WORKERS = min(4, os.cpu_count() or 1)


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


# --- the original release ------------------------------------------------------------------


def _weight_plans(
    services: Services, release: Release, key: bytes
) -> list[tuple[Artifact, FingerprintPlan]]:
    plans = []
    params = release_params(release)
    for artifact in release.artifacts:
        plan = artifact_plan(key, artifact, params)
        if plan is not None and plan.tensors:
            plans.append((artifact, plan))
    return plans


def _original_raw(
    services: Services, artifact: Artifact, tensor: CarrierTensor
) -> npt.NDArray[np.uint8]:
    local = services.blobs.local_path(artifact.sha256)
    if local is not None:
        mm = np.memmap(local, dtype=np.uint8, mode="r")
        return np.asarray(mm[tensor.begin : tensor.end])
    with services.blobs.open(artifact.sha256) as fh:
        fh.seek(tensor.begin)
        return np.frombuffer(fh.read(tensor.end - tensor.begin), dtype=np.uint8)


def _shape_of(artifact: Artifact, name: str) -> tuple[int, ...]:
    for t in artifact.tensors:
        if t.name == name:
            return tuple(int(d) for d in t.shape)
    raise NotFound(f"tensor {name} is not in {artifact.path}")


# --- the suspect's tensors -----------------------------------------------------------------


def _load_suspect(suspect: Suspect, name: str) -> tuple[F32, str | None]:
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


def _match_tensors(
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
    signatures = {n: shape_signature(_load_suspect(suspect, n)[0]) for n in free}
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
            ranked, key=lambda n: align_matrix(original, _load_suspect(suspect, n)[0]).correlation
        )
        if align_matrix(original, _load_suspect(suspect, best)[0]).correlation >= (
            MIN_RELEASE_CORRELATION
        ):
            chosen[name] = best
    return chosen


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


# --- release identification ----------------------------------------------------------------


def identify_release(
    services: Services, session: Session, suspect: Suspect
) -> tuple[Release, float]:
    """The catalogued release whose weights the suspect's are closest to (aligned correlation)."""
    best: tuple[float, Release | None] = (-1.0, None)
    suspect_2d = {n: suspect.shape(n) for n in suspect.names() if len(suspect.shape(n)) == 2}
    for summary in list_releases(session):
        release = get_release(session, summary.ref)
        weights = [a for a in release.artifacts if a.format in ("safetensors", "gguf")]
        originals = {
            t.name: (tuple(int(d) for d in t.shape), a)
            for a in weights
            for t in a.tensors
            if len(t.shape) == 2
        }
        if not originals:
            continue
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
            continue
        pairs.sort(key=lambda p: -math.prod(originals[p[0]][0]))
        chosen = [p for p in pairs if math.prod(originals[p[0]][0]) <= 4_000_000][:3] or pairs[:1]
        scores = []
        for o_name, s_name in chosen:
            shape, artifact = originals[o_name]
            original = _original_values(services, artifact, o_name).reshape(shape)
            theirs, _ = _load_suspect(suspect, s_name)
            scores.append(align_matrix(original, theirs).correlation)
        value = float(np.mean(scores))
        if value > best[0]:
            best = (value, release)
    if best[1] is None or best[0] < MIN_RELEASE_CORRELATION:
        raise NoRelease(
            "the suspect's weights match no release in the catalogue "
            f"(best correlation {max(best[0], 0.0):.2f}): no fingerprint found"
        )
    return best[1], best[0]


def _original_values(services: Services, artifact: Artifact, name: str) -> F32:
    for t in artifact.tensors:
        if t.name == name:
            ct = CarrierTensor(t.name, t.dtype, 0, int(t.begin), int(t.end), 0)
            raw = _original_raw(services, artifact, ct)
            if t.dtype == "BF16" or t.dtype in ("F16", "F32", "Q8_0"):
                return decode(t.dtype, raw)
            raise NotFound(f"{name} is {t.dtype}, which tracing does not decode")
    raise NotFound(f"tensor {name} is not in {artifact.path}")


class NoRelease(NotFound):
    """The suspect matches no catalogued release (a trace that finds no fingerprint)."""

    exit_code = 1


# --- fast path: exact copies ---------------------------------------------------------------


def exact_copies(session: Session, files: Sequence[SuspectFile]) -> list[tuple[int, str, str]]:
    """(release id, recipient e-mail, path) of issued copies that hold a suspect file's bytes.

    The hook for issued copies' hashes: distribution's signed per-recipient manifests.
    """
    try:
        from ringfence.access.models import User
        from ringfence.distribution.models import RecipientManifest
    except ImportError:  # pragma: no cover - the distribution area is not installed
        return []
    wanted = {f.sha256 for f in files if f.sha256}
    if not wanted:
        return []
    found = []
    rows = session.execute(
        select(RecipientManifest.release_id, RecipientManifest.files, User.email)
        .join(User, User.id == RecipientManifest.user_id)
        .where(RecipientManifest.state == "ready")
    )
    for release_id, manifest_files, email in rows:
        for path, digest in (manifest_files or {}).items():
            if digest in wanted:
                found.append((int(release_id), str(email), str(path)))
    return found


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
) -> tuple[SymbolEvidence, dict[str, SymbolEvidence], int, int]:
    """Align every carrier tensor the suspect holds and read the code symbols from it."""
    plans = _weight_plans(services, release, key)
    carriers = {t.name: (artifact, plan, t) for artifact, plan in plans for t in plan.tensors}
    shapes = {name: _shape_of(a, name) for name, (a, _, _) in carriers.items()}

    def load_original(name: str) -> F32:
        artifact, _, tensor = carriers[name]
        return decode(tensor.dtype, _original_raw(services, artifact, tensor)).reshape(shapes[name])

    mapping = _match_tensors(suspect, shapes, steps, load_original)
    length = release_params(release).design.length
    total = SymbolEvidence.empty(length)
    groups: dict[str, SymbolEvidence] = {}
    tensor_steps: list[str] = []

    def read_one(name: str) -> tuple[list[str], SymbolEvidence | None]:
        artifact, plan, tensor = carriers[name]
        other = mapping[name]
        said: list[str] = []
        raw = _original_raw(services, artifact, tensor)
        original = decode(tensor.dtype, raw).reshape(shapes[name])
        theirs, rotary = _load_suspect(suspect, other)
        if rotary:
            said.append(rotary)
        dtype = suspect.entries[other].info.dtype
        if dtype != tensor.dtype:
            said.append(f"dtype {dtype} read against the release's {tensor.dtype}")
        aligned = align_matrix(original, theirs)
        del theirs
        said.extend(aligned.steps)
        if aligned.correlation < MIN_RELEASE_CORRELATION:
            return said, None
        ev = tensor_evidence(
            tensor.dtype, raw, aligned.values, tensor.seed, plan.code_length, values=original
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
    _attach_records(session, result)
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
    if release_ref is not None:
        release = get_release(session, release_ref)
    else:
        say("identifying the release")
        release, corr = identify_release(services, session, suspect)
        steps.append(f"release identified by weight correlation {corr:.3f}")
    key = release_key(services.secrets, release)
    say(f"reading the fingerprint against {release.ref}")
    total, groups, read, carrying = read_symbols(services, release, key, suspect, steps, say)
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
    all_scores = score_all(key, limits, soft.symbols, ids)
    verdict = decide(all_scores, ids, limits, soft.symbols, bound=bound)
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


def _attach_records(session: Session, result: TraceResult) -> None:
    """Each accused recipient's grants, licence acceptances and audit events (downloads)."""
    from ringfence.access.models import Grant, LicenceAcceptance, User

    for accused in result.accused:
        email = accused.recipient
        user = session.scalars(select(User).where(User.email == email)).first()
        records: list[dict[str, Any]] = []
        if user is not None:
            for g in session.scalars(select(Grant).where(Grant.user_id == user.id)):
                records.append(
                    {
                        "kind": "grant",
                        "at": g.created_at.isoformat(),
                        "detail": f"grant #{g.id} for release {g.release_id}: {g.state} "
                        f"(by {g.granted_by}, expires {g.expires_at:%Y-%m-%d})",
                    }
                )
            for a in session.scalars(
                select(LicenceAcceptance).where(LicenceAcceptance.user_id == user.id)
            ):
                records.append(
                    {
                        "kind": "licence acceptance",
                        "at": a.accepted_at.isoformat(),
                        "detail": f"{a.licence_ref} (text sha256 {a.text_sha256[:12]}) "
                        f"from {a.ip or '?'}",
                    }
                )
        events = session.scalars(
            select(AuditEvent)
            .where(
                (AuditEvent.subject.contains(email))
                | (cast(AuditEvent.payload, String).contains(email))
            )
            .order_by(AuditEvent.seq)
            .limit(200)
        )
        for e in events:
            records.append(
                {
                    "kind": e.tag,
                    "at": e.created_at.isoformat(),
                    "detail": f"#{e.seq} by {e.actor} on {e.subject}",
                }
            )
        result.records[email] = sorted(records, key=lambda r: r["at"])


# --- simulated recipients ------------------------------------------------------------------


def simulate_recipients(
    session: Session, release: Release, count: int, *, actor: str, chunk: int = 50_000
) -> int:
    """Register `count` simulated recipients with bulk inserts; returns the release's total."""
    from sqlalchemy import func

    if count < 1:
        raise InvalidInput("simulate at least one recipient")
    last_index = session.scalar(
        select(func.max(Recipient.index)).where(Recipient.release_id == release.id)
    )
    start = 0 if last_index is None else int(last_index) + 1
    from ringfence.db import utcnow

    now = utcnow()
    for first in range(start, start + count, chunk):
        last = min(first + chunk, start + count)
        session.execute(
            insert(Recipient),
            [
                {
                    "release_id": release.id,
                    "index": i,
                    "email": f"simulated-{i}@invalid",
                    "simulated": True,
                    "created_at": now,
                }
                for i in range(first, last)
            ],
        )
    record(
        session,
        EventTag.Fingerprint.RecipientsSimulated,
        actor=actor,
        subject=f"release:{release.ref}",
        payload={"added": count, "total": start + count},
    )
    return start + count
