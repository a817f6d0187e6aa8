"""The hosted area's public face: model ids, access checks, backends, calls and their audit.

    from ringfence.hosted import services as hosted

    release, grant = hosted.authorise(session, user, "lab/smollm2@1.0")
    call, usage = hosted.admit(session, grant, endpoint="chat.completions")
    ... generate ...
    hosted.finish(session, call.id, prompt=..., output=..., usage=(12, 40), state="done")

Views never build a backend: `BackendPool` (one per app) loads each release's once.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence.access.circles import visible_release
from ringfence.access.grants import authorise_hosted, get_grant
from ringfence.access.models import Grant
from ringfence.accounts.models import User
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue.models import Release
from ringfence.catalogue.services import organisation
from ringfence.db import utcnow
from ringfence.errors import InvalidInput, NotFound, RingfenceError
from ringfence.hosted.backends import Backend
from ringfence.hosted.models import HostedBackend, HostedCall
from ringfence.hosted.quotas import QuotaExceeded, Usage, admit, check_max_tokens, quota_of
from ringfence.wiring import Services

__all__ = [
    "BackendPool",
    "QuotaExceeded",
    "Usage",
    "admit",
    "authorise",
    "check_max_tokens",
    "finish",
    "hosted_models",
    "model_id",
    "quota_of",
    "set_backend",
]

_MODEL_ID = re.compile(r"^([A-Za-z0-9][\w.-]{0,63})/([A-Za-z0-9][\w.-]{0,127})@([\w.+-]{1,64})$")


def model_id(release: Release) -> str:
    """The id of a release on the endpoint: the Hub-style repo id and revision."""
    return f"{release.model.organisation.slug}/{release.model.name}@{release.version}"


def _release_of(session: Session, model: str, user: User) -> Release:
    match = _MODEL_ID.match(model or "")
    not_found = NotFound(
        f"the model {model[:200]!r} does not exist or you have no access to it",
        hint="list yours at /v1/models",
    )
    if match is None:
        raise not_found
    ns, name, version = match.groups()
    if ns != organisation(session).slug:
        raise not_found
    try:
        return visible_release(session, f"{name}@{version}", user)
    except NotFound:
        raise not_found from None


def authorise(session: Session, user: User, model: str) -> tuple[Release, Grant]:
    """The release a model id names and the caller's hosted grant for it, checked now."""
    release = _release_of(session, model, user)
    return release, authorise_hosted(session, user, release)


def still_allowed(session: Session, grant_id: int) -> str | None:
    """None while the grant still opens hosted access; else the reason it no longer does."""
    grant = session.get(Grant, grant_id)
    if grant is None:
        return "the grant no longer exists"
    try:
        authorise_hosted(session, grant.user, grant.release)
    except RingfenceError as exc:  # any refusal ends the stream with its reason
        return exc.message
    return None


def hosted_models(session: Session, user: User) -> list[dict[str, Any]]:
    """`/v1/models`: the releases the caller's hosted grants open now, nothing else."""
    grants = session.scalars(
        select(Grant).where(Grant.user_id == user.id, Grant.mode == "hosted").order_by(Grant.id)
    )
    found = []
    for grant in grants:
        try:
            authorise_hosted(session, user, grant.release)
        except RingfenceError:  # a grant that does not open access now is not listed
            continue
        found.append(
            {
                "id": model_id(grant.release),
                "object": "model",
                "created": int(grant.release.created_at.timestamp()),
                "owned_by": grant.release.model.organisation.slug,
            }
        )
    return found


def digest(text: str) -> str:
    """sha256 of a text (what the call log keeps when the terms forbid keeping the text)."""
    return hashlib.sha256(text.encode()).hexdigest()


def finish(
    session: Session,
    call_id: int,
    *,
    prompt: str,
    output: str,
    prompt_tokens: int,
    completion_tokens: int,
    state: str,
    error: str = "",
    ip: str | None = None,
) -> HostedCall:
    """Close a call: its token counts, hashes (texts when the terms allow), an audit event."""
    call = session.get(HostedCall, call_id)
    if call is None:
        raise NotFound(f"no hosted call {call_id}")
    grant = get_grant(session, call.grant_id)
    keep = quota_of(session, grant).keep_text
    call.state = state
    call.finished_at = utcnow()
    call.prompt_tokens = prompt_tokens
    call.completion_tokens = completion_tokens
    call.prompt_sha256 = digest(prompt)
    call.output_sha256 = digest(output)
    call.prompt_text = prompt if keep else None
    call.output_text = output if keep else None
    call.error = error[:500]
    tag = {"done": EventTag.Hosted.CallCompleted, "cut": EventTag.Hosted.CallCut}.get(
        state, EventTag.Hosted.CallFailed
    )
    record(
        session,
        tag,
        actor=grant.user.email,
        subject=f"release:{grant.release.ref}",
        ip=ip,
        user_id=grant.user_id,
        payload={
            "call_id": call.id,
            "grant_id": grant.id,
            "endpoint": call.endpoint,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "prompt_sha256": call.prompt_sha256,
            "output_sha256": call.output_sha256,
            "error": call.error,
        },
    )
    return call


def record_refusal(
    session: Session, user: User | None, model: str, reason: str, *, ip: str | None
) -> None:
    """Audit a refused inference call (no grant, quota, bad input)."""
    record(
        session,
        EventTag.Hosted.CallRefused,
        actor=user.email if user else "anonymous",
        subject=f"model:{model[:200]}",
        ip=ip,
        user_id=user.id if user else None,
        payload={"reason": reason[:500]},
    )


def backend_of(session: Session, release: Release) -> HostedBackend:
    """The release's backend settings (embedded unless the lab set an upstream)."""
    row = session.get(HostedBackend, release.id)
    return row if row is not None else HostedBackend(release_id=release.id, kind="embedded")


def set_backend(
    session: Session,
    release: Release,
    *,
    kind: str,
    url: str = "",
    upstream_model: str = "",
    key_env: str = "",
    actor: str,
) -> HostedBackend:
    """Choose where a release's generation runs: `embedded`, or `upstream` at `url`."""
    if kind not in ("embedded", "upstream"):
        raise InvalidInput(f"backend: give embedded or upstream (got {kind!r})")
    if kind == "upstream" and not re.match(r"^https?://[^\s]+$", url):
        raise InvalidInput("url: give the engine's OpenAI-compatible base URL (http(s)://.../v1)")
    if key_env and not re.match(r"^[A-Z_][A-Z0-9_]{0,99}$", key_env):
        raise InvalidInput("key-env: give the name of an environment variable (A-Z, 0-9, _)")
    row = session.get(HostedBackend, release.id)
    if row is None:
        row = HostedBackend(release_id=release.id)
        session.add(row)
    row.kind, row.url = kind, url if kind == "upstream" else ""
    row.upstream_model = upstream_model or model_id(release)
    row.key_env = key_env
    row.updated_at = utcnow()
    session.flush()
    record(
        session,
        EventTag.Hosted.BackendSet,
        actor=actor,
        subject=f"release:{release.ref}",
        payload={"kind": kind, "url": row.url, "upstream_model": row.upstream_model},
    )
    return row


class BackendPool:
    """The backends of one server process, one per release, made on first use."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._backends: dict[tuple[int, str, str], Backend] = {}
        self._lock = threading.Lock()

    def get(self, release: Release, settings: HostedBackend) -> Backend:
        """The release's backend (loading the embedded weights once, under a lock)."""
        key = (release.id, settings.kind, settings.url)
        with self._lock:
            backend = self._backends.get(key)
            if backend is None:
                backend = self._make(release, settings)
                self._backends[key] = backend
            return backend

    def _make(self, release: Release, settings: HostedBackend) -> Backend:
        if settings.kind == "upstream":
            from ringfence.hosted.upstream import UpstreamBackend

            return UpstreamBackend(
                settings.url, settings.upstream_model or model_id(release), key_env=settings.key_env
            )
        from ringfence.hosted.embedded import EmbeddedBackend

        threads = self.services.settings.hosted_threads or None
        return EmbeddedBackend(self._materialise(release), threads=threads)

    def _materialise(self, release: Release) -> Path:
        """The release's original files in a private directory the model loads from."""
        target = (
            self.services.settings.home / "hosted" / f"{release.id}-{release.manifest_sha256[:16]}"
        )
        if (target / ".complete").exists():
            return target
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        blobs = self.services.blobs
        for artifact in release.artifacts:
            dest = target / artifact.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            with blobs.open(artifact.sha256) as source, dest.open("wb") as out:
                shutil.copyfileobj(source, out, 4 * 1024 * 1024)
        (target / ".complete").write_text("")
        return target

    def close(self) -> None:
        """Stop every worker."""
        with self._lock:
            for backend in self._backends.values():
                backend.close()
            self._backends.clear()
