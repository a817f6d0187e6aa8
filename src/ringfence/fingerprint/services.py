"""Fingerprint operations: recipients, the bytes a recipient downloads, issuing and detecting.

The numeric core (`code`, `carrier`, `embed`, `read`, `accuse`) sees arrays only; this module is the
adapter between it and the catalogue (releases, artifacts, blobs), the secret store and the
audit log. A release's key is `secrets.derive("fingerprint:release:<id>")`: it never leaves
the server, and with it and a recipient's index every byte of her copy can be recomputed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Artifact, Release
from ringfence.db import utcnow
from ringfence.errors import Conflict, InvalidInput, NotFound
from ringfence.fingerprint import carrier, code, read
from ringfence.fingerprint.accuse import Candidate, decide, score_all
from ringfence.fingerprint.code import CodeParams
from ringfence.fingerprint.models import Recipient
from ringfence.fingerprint.plan import FingerprintPlan, build_plan
from ringfence.fingerprint.stream import fingerprinted_bytes
from ringfence.formats.index import TensorInfo, WeightsIndex, read_index
from ringfence.secrets import SecretStore
from ringfence.storage import BlobStore

if TYPE_CHECKING:
    from ringfence.settings import Settings

WEIGHT_FORMATS = ("safetensors", "gguf")


@functools.lru_cache(maxsize=64)
def code_params(
    max_recipients: int,
    max_colluders: int,
    false_accusation: float,
    density_log2: int = carrier.DENSITY_LOG2,
    length: int = 0,
) -> CodeParams:
    """Shared parameter objects, so each code's design is computed once per process."""
    if max_recipients < 2 or max_colluders < 1 or not 0 < false_accusation < 1:
        raise InvalidInput(
            "fingerprint parameters: need at least 2 recipients, 1 colluder and a bound in (0, 1)"
        )
    if density_log2 not in carrier.DENSITIES:
        raise InvalidInput(f"fingerprint density 2^-{density_log2} is not one of 2^-3 .. 2^-6")
    if length < 0 or length % carrier.BLOCK:
        raise InvalidInput(f"fingerprint code length {length} is not a multiple of 64")
    return CodeParams(max_recipients, max_colluders, false_accusation, density_log2, length)


def release_params(release: Release) -> CodeParams:
    """What the release's code withstands, as fixed when it was published."""
    return code_params(
        release.fingerprint_recipients,
        release.fingerprint_colluders,
        release.fingerprint_bound,
        release.fingerprint_density_log2,
        release.fingerprint_code_length,
    )


def settings_params(settings: Settings) -> CodeParams:
    """The parameters new releases get by default."""
    return code_params(
        settings.fingerprint_max_recipients,
        settings.fingerprint_max_colluders,
        settings.fingerprint_false_accusation,
    )


def publish_params(
    settings: Settings, *, max_recipients: int | None = None, max_colluders: int | None = None
) -> CodeParams:
    """The parameters a new release gets: the settings' defaults, with the operator's overrides."""
    defaults = settings_params(settings)
    return code_params(
        max_recipients or defaults.max_recipients,
        max_colluders or defaults.max_colluders,
        defaults.false_accusation,
    )


def release_key(secrets: SecretStore, release: Release) -> bytes:
    """The release's fingerprint key (server-side only)."""
    return secrets.derive(f"fingerprint:release:{release.id}")


#: attempts at registering a recipient while others register for the same release
REGISTER_TRIES = 8


def register_recipient(
    session: Session,
    release: Release,
    email: str,
    *,
    actor: str,
    simulated: bool = False,
    user_id: int | None = None,
) -> Recipient:
    """The release's recipient for `email`, registered (with the next dense index) if new.

    `user_id` is the account behind `email`, if any: the audit event names it.
    """
    email = email.strip()
    if not email or len(email) > 320:
        raise InvalidInput("a recipient needs an e-mail address or user reference")
    # Two servers registering at once may pick the same next index (or the same e-mail):
    # the loser's insert fails on the unique constraint inside its savepoint, and it looks again.
    for attempt in range(REGISTER_TRIES):
        found = session.scalars(
            select(Recipient).where(Recipient.release_id == release.id, Recipient.email == email)
        ).first()
        if found is not None:
            return found
        recipient = Recipient(
            release_id=release.id,
            index=next_index(session, release),
            email=email,
            simulated=simulated,
        )
        try:
            with session.begin_nested():
                session.add(recipient)
        except sa_exc.IntegrityError:
            if attempt == REGISTER_TRIES - 1:
                raise Conflict(
                    f"could not register a recipient of {release.ref} for {email}",
                    hint="retry: other registrations were running at the same time",
                ) from None
            continue
        break
    if not simulated:
        record(
            session,
            EventTag.Fingerprint.RecipientRegistered,
            actor=actor,
            subject=f"release:{release.ref}",
            user_id=user_id,
            payload={"recipient": email, "index": recipient.index},
        )
    return recipient


def next_index(session: Session, release: Release) -> int:
    """The index the release's next recipient gets: one past the highest (0 for the first).

    Indices are dense (0, 1, 2, ...) since every registration takes this one, so it is also
    the number of recipients registered so far.
    """
    last = session.scalar(
        select(func.max(Recipient.index)).where(Recipient.release_id == release.id)
    )
    return 0 if last is None else int(last) + 1


def simulate_recipients(
    session: Session, release: Release, count: int, *, actor: str, chunk: int = 50_000
) -> int:
    """Register `count` made-up recipients (trace experiments); returns the release's total.

    They take the indices `next_index` .. `next_index + count - 1`, after every recipient
    registered so far, real or simulated, and are named `simulated-<index>@invalid`. Written
    with bulk inserts of `chunk` rows (a million in seconds, not minutes).
    """
    if count < 1:
        raise InvalidInput("simulate at least one recipient")
    start = next_index(session, release)
    now = utcnow()
    for first in range(start, start + count, chunk):
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
                for i in range(first, min(first + chunk, start + count))
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


def recipient_indices(session: Session, release: Release) -> npt.NDArray[np.int64]:
    """Every registered recipient index of a release."""
    ids = session.scalars(select(Recipient.index).where(Recipient.release_id == release.id))
    return np.fromiter(ids, dtype=np.int64)


def artifact_index(artifact: Artifact) -> WeightsIndex | None:
    """The tensor index of a weights artifact, from the catalogue (no file read)."""
    if artifact.format not in WEIGHT_FORMATS or artifact.data_offset is None:
        return None
    tensors = tuple(
        TensorInfo(t.name, t.dtype, tuple(int(d) for d in t.shape), int(t.begin), int(t.end))
        for t in sorted(artifact.tensors, key=lambda t: t.begin)
    )
    return WeightsIndex(artifact.format, int(artifact.data_offset), int(artifact.size), tensors)


def artifact_plan(key: bytes, artifact: Artifact, params: CodeParams) -> FingerprintPlan | None:
    """How a weights artifact is fingerprinted (None for configs, tokenizers, cards)."""
    index = artifact_index(artifact)
    return None if index is None else build_plan(index, key, params)


@functools.lru_cache(maxsize=256)
def release_thresholds(key: bytes, params: CodeParams) -> npt.NDArray[np.uint16]:
    """The release's bias thresholds (computed once per release and process)."""
    limits = code.thresholds(key, params.design.length, params.cutoff)
    limits.flags.writeable = False
    return limits


@functools.lru_cache(maxsize=1024)
def codeword(key: bytes, recipient: int, params: CodeParams) -> npt.NDArray[np.bool_]:
    """A recipient's codeword under a release key (cached: every request of a download needs it)."""
    bits = code.codeword(key, recipient, release_thresholds(key, params))
    bits.flags.writeable = False
    return bits


def artifact_bytes(
    blobs: BlobStore,
    secrets: SecretStore,
    release: Release,
    artifact: Artifact,
    recipient: int,
    start: int = 0,
    end: int | None = None,
) -> Iterator[bytes]:
    """Bytes [start, end) of one artifact as `recipient` downloads it, in constant memory."""
    end = artifact.size if end is None else end
    if not 0 <= start <= end <= artifact.size:
        raise InvalidInput(f"byte range {start}-{end} is outside {artifact.path}")
    key = release_key(secrets, release)
    params = release_params(release)
    plan = artifact_plan(key, artifact, params)
    with blobs.open(artifact.sha256) as fh:
        if plan is None:
            fh.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = fh.read(min(remaining, 16 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
            return
        yield from fingerprinted_bytes(fh, plan, codeword(key, recipient, params), start, end)


@dataclass(frozen=True)
class IssuedCopy:
    """A fingerprinted copy written to disk for one recipient."""

    recipient: Recipient
    files: list[Path]


def make_copy(
    session: Session,
    blobs: BlobStore,
    secrets: SecretStore,
    release: Release,
    email: str,
    out: Path,
    *,
    actor: str,
    progress: Callable[[str, int], None] | None = None,
    user_id: int | None = None,
) -> IssuedCopy:
    """Write exactly the copy `email` would download into `out`, and record the issuance.

    The audit events name the account `user_id`, or else the account whose address is
    exactly `email` (a copy may also be made for someone without one).
    """
    if user_id is None:
        user_id = _account_of(session, email.strip())
    recipient = register_recipient(session, release, email, actor=actor, user_id=user_id)
    files = []
    for artifact in release.artifacts:
        target = (out / artifact.path).resolve()
        if out.resolve() not in target.parents:
            raise InvalidInput(f"artifact path {artifact.path} escapes the output directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        with tmp.open("wb") as fh:
            for chunk in artifact_bytes(blobs, secrets, release, artifact, recipient.index):
                fh.write(chunk)
                if progress is not None:
                    progress(artifact.path, len(chunk))
        os.replace(tmp, target)
        files.append(target)
    record(
        session,
        EventTag.Fingerprint.CopyIssued,
        actor=actor,
        subject=f"release:{release.ref}",
        user_id=user_id,
        payload={
            "recipient": recipient.email,
            "index": recipient.index,
            "via": "make",
            "files": [a.path for a in release.artifacts],
        },
    )
    return IssuedCopy(recipient, files)


def _account_of(session: Session, email: str) -> int | None:
    """The id of the account whose address is exactly `email`, if there is one."""
    from ringfence.accounts.models import User  # accounts sit above fingerprints: import late

    found: int | None = session.scalar(select(User.id).where(User.email == email))
    return found


def _suspect_tensors(path: Path) -> dict[str, tuple[WeightsIndex, Path]]:
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.suffix in (".safetensors", ".gguf"))
    )
    found: dict[str, tuple[WeightsIndex, Path]] = {}
    for f in files:
        index = read_index(f)
        for t in index.tensors:
            found[t.name] = (index, f)
    return found


def read_suspect(
    blobs: BlobStore, key: bytes, release: Release, suspect: Path
) -> npt.NDArray[np.float64]:
    """Soft code symbols of a suspect copy (file or directory, same format and tensor names).

    The tracing reader without the alignment: `read.tensor_evidence` over every carrier
    tensor the copy holds under the release's own name and size.
    """
    tensors = _suspect_tensors(suspect)
    params = release_params(release)
    total = read.SymbolEvidence.empty(params.design.length)
    matched = 0
    for artifact in release.artifacts:
        plan = artifact_plan(key, artifact, params)
        if plan is None:
            continue
        with blobs.open(artifact.sha256) as original:
            for t in plan.tensors:
                if t.name not in tensors:
                    continue
                index, path = tensors[t.name]
                info = index.by_name()[t.name]
                if info.numel != t.numel:
                    continue
                original.seek(t.begin)
                raw = np.frombuffer(original.read(t.end - t.begin), dtype=np.uint8)
                with path.open("rb") as fh:
                    fh.seek(info.begin)
                    theirs = np.frombuffer(fh.read(info.end - info.begin), dtype=np.uint8)
                values = read.decode(info.dtype, theirs)
                total.add(
                    read.tensor_evidence(
                        t.dtype, raw, values, t.seed, plan.code_length, plan.density_log2
                    )
                )
                matched += 1
    if not matched:
        raise NotFound(
            f"{suspect} holds none of {release.ref}'s fingerprinted tensors",
            hint="give the copy in the release's own format and tensor names",
        )
    return read.soft_symbols(total).symbols


def detect_copy(
    session: Session,
    blobs: BlobStore,
    secrets: SecretStore,
    release: Release,
    suspect: Path,
    *,
    top: int = 10,
) -> tuple[list[tuple[Candidate, str]], float]:
    """The registered recipients whose codewords a copy carries best, and the z threshold.

    Accused as a trace accuses (`accuse.decide`), at the release's own false-accusation bound.
    """
    key = release_key(secrets, release)
    symbols = read_suspect(blobs, key, release, suspect)
    ids = recipient_indices(session, release)
    if ids.size == 0:
        raise NotFound(f"{release.ref} has no recipients yet")
    params = release_params(release)
    limits = release_thresholds(key, params)
    verdict = decide(
        score_all(key, limits, symbols, ids, screen=params.least_length),
        ids,
        limits,
        symbols,
        bound=params.false_accusation,
        top=top,
    )
    rows = session.execute(
        select(Recipient.index, Recipient.email).where(
            Recipient.release_id == release.id,
            Recipient.index.in_([c.index for c in verdict.candidates]),
        )
    ).tuples()
    emails = {index: email for index, email in rows}  # a Result has keys(): dict() misreads it
    return [(c, emails.get(c.index, "?")) for c in verdict.candidates], verdict.threshold_z
