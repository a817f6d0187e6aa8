"""Licence click-through: the shipped research-only licence, acceptances, a release's licence.

An acceptance names the exact text a person was shown (its sha256): a new licence version on a
release has another id and hash, so every holder must accept again before the next download.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from sqlalchemy import select
from sqlalchemy.orm import Session

from ringfence.access.models import Grant, LicenceAcceptance
from ringfence.accounts.models import User
from ringfence.audit.services import record
from ringfence.audit.tags import EventTag
from ringfence.catalogue import services as catalogue
from ringfence.catalogue.models import Licence, Release
from ringfence.errors import Conflict, InvalidInput
from ringfence.mail import messages
from ringfence.mail import services as mail

RESEARCH_ONLY = "research-only"


def shipped_licence_text(slug: str = RESEARCH_ONLY) -> str:
    """The text of a licence template that ships with ringfence (`ringfence/licences/SLUG.md`)."""
    return resources.files("ringfence").joinpath(f"licences/{slug}.md").read_text(encoding="utf-8")


def install_research_licence(session: Session, *, actor: str) -> Licence:
    """Add the shipped research-only licence (a no-op when its newest version has this text)."""
    return add_licence(session, RESEARCH_ONLY, actor=actor)


def add_licence(
    session: Session,
    slug: str,
    *,
    text: str | None = None,
    title: str | None = None,
    actor: str,
) -> Licence:
    """Add the next version of a licence, the same way from the CLI and the admin page.

    Line ends are normalised (a browser sends CRLF, a file may hold either) so the same text
    always hashes the same; no text means the shipped template of that slug; the title
    defaults to the text's first heading. The same text as the newest version is a no-op.
    """
    slug = slug.strip()
    body = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    if not body.strip():
        if slug != RESEARCH_ONLY:
            raise InvalidInput("give the licence text", hint="a markdown file or the text itself")
        body = shipped_licence_text(slug)
    heading = body.strip().splitlines()[0].lstrip("# ").strip()
    return catalogue.add_licence(
        session, slug, (title or "").strip() or heading or slug, body, actor
    )


def list_licences(session: Session) -> list[Licence]:
    """Every licence version, by slug and newest version first."""
    return list(session.scalars(select(Licence).order_by(Licence.slug, Licence.version.desc())))


def latest_acceptance(session: Session, user: User, release: Release) -> LicenceAcceptance | None:
    """The user's acceptance of the release's current licence text, if any."""
    if release.licence_id is None:
        return None
    licence = release.licence
    assert licence is not None  # licence_id is set, so the relationship loads
    return session.scalars(
        select(LicenceAcceptance)
        .where(
            LicenceAcceptance.user_id == user.id,
            LicenceAcceptance.release_id == release.id,
            LicenceAcceptance.licence_id == licence.id,
            LicenceAcceptance.text_sha256 == licence.sha256,
        )
        .order_by(LicenceAcceptance.id.desc())
    ).first()


def has_accepted(session: Session, user: User, release: Release) -> bool:
    """Whether `user` accepted the release's current licence (True when it has none)."""
    return release.licence_id is None or latest_acceptance(session, user, release) is not None


def accept_licence(
    session: Session,
    user: User,
    release: Release,
    *,
    text_sha256: str,
    ip: str | None,
    user_agent: str | None,
) -> LicenceAcceptance:
    """Record that `user` accepted the release's licence, shown as the text with `text_sha256`.

    The hash must be the current text's: a page or client that showed an older version cannot
    accept the new one on the person's behalf. Accepting twice returns the first acceptance.
    """
    licence = release.licence
    if licence is None:
        raise InvalidInput(f"{release.ref} has no licence to accept")
    if text_sha256 != licence.sha256:
        raise Conflict(
            f"the licence text you were shown is not {licence.ref}, the current licence of "
            f"{release.ref}",
            hint="reload the page (or rerun the command) and read the current text",
        )
    existing = latest_acceptance(session, user, release)
    if existing is not None:
        return existing
    acceptance = LicenceAcceptance(
        user_id=user.id,
        release_id=release.id,
        licence_id=licence.id,
        licence_ref=licence.ref,
        text_sha256=licence.sha256,
        ip=ip,
        user_agent=(user_agent or "")[:512],
    )
    session.add(acceptance)
    session.flush()
    record(
        session,
        EventTag.Access.LicenceAccepted,
        actor=user.email,
        ip=ip,
        subject=f"release:{release.ref}",
        payload={
            "licence": licence.ref,
            "licence_id": licence.id,
            "sha256": licence.sha256,
            "user_agent": acceptance.user_agent,
        },
    )
    return acceptance


def set_release_licence(
    session: Session, release: Release, licence: Licence, *, actor: str, base_url: str
) -> int:
    """Name `licence` as the release's licence; every active holder must accept it again.

    Returns how many holders were mailed.
    """
    before = release.licence.ref if release.licence else None
    if release.licence_id == licence.id:
        return 0
    release.licence = licence
    holders = session.scalars(
        select(User.email)
        .join(Grant, Grant.user_id == User.id)
        .where(Grant.release_id == release.id, Grant.state == "active")
    ).all()
    mail.queue_many(
        session,
        holders,
        messages.licence_changed(
            release=release.ref,
            title=licence.title,
            licence=licence.ref,
            release_url=f"{base_url}/models/{release.model.name}/{release.version}",
        ),
    )
    record(
        session,
        EventTag.Access.ReleaseLicenceChanged,
        actor=actor,
        subject=f"release:{release.ref}",
        payload={
            "from": before,
            "to": licence.ref,
            "sha256": licence.sha256,
            "holders": len(holders),
        },
    )
    return len(holders)


def text_sha256(text: str) -> str:
    """sha256 of a licence text as stored (UTF-8)."""
    return hashlib.sha256(text.encode()).hexdigest()
