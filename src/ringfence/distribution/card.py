"""The release's README.md model card on the Hub API: where distribution meets the gates.

A release with a finished gate run has a README.md whose front matter is the Hub's metadata
block (licence, base models, datasets, the gate figures), made on request from the stored
report (`gates.services.model_card`): a file of its own when the publisher shipped none, else
the publisher's README.md body under the generated block. Without a finished run nothing
changes: Hub clients get the published file, as published.

The card is a small plain file, as a git-stored (non-LFS) file is on the Hub: its ETag and
tree oid are its git blob id, and its size is that of the bytes served. Hub clients cache by
commit, so the commit a recipient sees folds the card's blob id in (`commit_for`): a re-run
of the gates with new figures, or a new licence, is a new commit and never a stale cached
card. A revision naming an earlier card's commit is then no longer found, as after a force
push on the Hub. The signed manifest and download links describe the published files only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy.orm import Session

from ringfence.accounts.models import User
from ringfence.catalogue.models import Release
from ringfence.distribution import services as dist
from ringfence.distribution import sources
from ringfence.distribution.ranges import ByteRange, if_range_holds, parse_range
from ringfence.gates import services as gates
from ringfence.web.headers import content_disposition
from ringfence.wiring import Services

#: where the card lives in the repository, as on the Hub
PATH = "README.md"


@dataclass(frozen=True)
class Card:
    """The README.md bytes Hub clients get for a release with a gate report."""

    body: bytes

    @property
    def size(self) -> int:
        """Its length in bytes."""
        return len(self.body)

    @property
    def oid(self) -> str:
        """Its git blob id (sha1 of "blob SIZE\\0" and the bytes): ETag and tree oid."""
        return hashlib.sha1(
            b"blob %d\x00" % self.size + self.body, usedforsecurity=False
        ).hexdigest()


def card_of(session: Session, services: Services, release: Release) -> Card | None:
    """The release's model card, or None when no gate run finished on it."""
    published = next((a for a in release.artifacts if a.path == PATH), None)

    def published_text() -> str | None:
        if published is None:
            return None
        with services.blobs.open(published.sha256) as fh:
            return fh.read().decode("utf-8", errors="replace")

    text = gates.model_card(session, release, published_text)
    return None if text is None else Card(text.encode("utf-8"))


def commit_for(services: Services, release: Release, user_id: int, card: Card | None) -> str:
    """The commit a recipient sees on the Hub API: changes whenever the card does."""
    return dist.commit_hash(services.secrets, release, user_id, card=card.oid if card else None)


@dataclass(frozen=True)
class CardDelivery:
    """One response of the card: its bytes in range, with the Hub's headers."""

    card: Card
    byte_range: ByteRange
    commit: str

    def headers(self) -> dict[str, str]:
        """Response headers of a small Hub file: exact length, blob-id ETag, the commit."""
        headers = {
            "Content-Length": str(self.byte_range.length),
            "Content-Type": "text/markdown; charset=utf-8",
            "ETag": f'"{self.card.oid}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": content_disposition(PATH),
            "Cache-Control": "private, no-store",
            "X-Repo-Commit": self.commit,
        }
        if self.byte_range.partial:
            headers["Content-Range"] = self.byte_range.content_range()
        return headers

    def content(self) -> bytes:
        """The bytes in range."""
        return self.card.body[self.byte_range.start : self.byte_range.end]


def prepare_card(
    session: Session,
    services: Services,
    *,
    release: Release,
    card: Card,
    user: User | None,
    range_header: str | None,
    if_range: str | None,
    send_body: bool,
    ip: str | None = None,
    user_agent: str | None = None,
) -> CardDelivery:
    """Check the grant as for any file of the release, choose the range, audit a GET."""
    grant = sources.authorise(session, user, release)
    assert user is not None  # authorise refuses anonymous callers
    if range_header is not None and not if_range_holds(if_range, card.oid):
        range_header = None  # the card changed since the client began: send all of it
    byte_range = parse_range(range_header, card.size)
    if send_body:
        dist.record_download(
            session,
            user,
            release,
            path=PATH,
            byte_range=byte_range,
            size=card.size,
            via="hub",
            ip=ip,
            user_agent=user_agent,
            card=True,
            link_id=None,
            grant_id=grant.id,
        )
    return CardDelivery(card, byte_range, commit_for(services, release, user.id, card))
