"""Distribution tables: signed download links and the per-recipient signed manifests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ringfence.db import Base, UTCDateTime, utcnow


class DownloadLink(Base):
    """A signed, expiring, limited-use URL bound to one grant and its holder.

    The URL carries only `nonce` under a server signature; everything else is looked up here
    on every request, so revoking the link, its grant or narrowing the release's circle
    stops it at once. A "use" is one full copy of the release: the link may deliver at
    most `max_uses × release size` bytes, so resuming an interrupted download costs only
    the bytes it fetches again.
    """

    __tablename__ = "download_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    nonce: Mapped[str] = mapped_column(String(32), unique=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id"), index=True)
    #: the grant's issuance the link was made under: a re-approved grant does not revive it
    grant_issuance: Mapped[int] = mapped_column(Integer, default=1)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    max_uses: Mapped[int] = mapped_column(Integer)
    #: max_uses × the release's total size
    byte_budget: Mapped[int] = mapped_column(BigInteger)
    bytes_served: Mapped[int] = mapped_column(BigInteger, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def uses(self) -> float:
        """Copies of the release delivered so far (bytes served over the release size)."""
        if not self.byte_budget:
            return 0.0
        return self.bytes_served * self.max_uses / self.byte_budget


class RecipientManifest(Base):
    """The sha256 of every file exactly as one recipient receives it, signed by the lab.

    `bundle` is a Sigstore bundle (DSSE envelope around an in-toto statement with the
    `https://model_signing/signature/v1.0` predicate), so `model_signing verify key` accepts it.
    """

    __tablename__ = "recipient_manifests"
    __table_args__ = (UniqueConstraint("release_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    #: pending, ready or failed
    state: Mapped[str] = mapped_column(String(16), default="pending")
    #: sha256 of the signed statement: the root digest over the files' digests
    root_sha256: Mapped[str | None] = mapped_column(String(64))
    #: {path: sha256} of the recipient's bytes
    files: Mapped[dict[str, Any]] = mapped_column(default=dict)
    bundle: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    computed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RecipientFileHash(Base):
    """One file of a recipient's ready manifest, by its sha256: exact copies found by index.

    Written with the manifest (`manifest_jobs._store_manifest`) and removed when it is no longer
    ready, so a trace looks a suspect file's hash up instead of reading every manifest.
    """

    __tablename__ = "recipient_file_hashes"
    __table_args__ = (UniqueConstraint("release_id", "user_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    path: Mapped[str] = mapped_column(String(512))
