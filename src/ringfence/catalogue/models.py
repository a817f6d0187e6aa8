"""Catalogue tables: an organisation's models, their immutable releases and artifacts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ringfence.db import Base, UTCDateTime, utcnow
from ringfence.fingerprint.carrier import DENSITY_LOG2


class Organisation(Base):
    """The lab; its slug prefixes Hub-style repo ids (`SLUG/MODEL`)."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Licence(Base):
    """One version of a licence text; (slug, version) is unique and the text never changes."""

    __tablename__ = "licences"
    __table_args__ = (UniqueConstraint("slug", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def ref(self) -> str:
        """`slug@version`, how people name it."""
        return f"{self.slug}@{self.version}"


class Model(Base):
    """A model the lab publishes; it has releases."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    name: Mapped[str] = mapped_column(String(96))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    organisation: Mapped[Organisation] = relationship()
    releases: Mapped[list[Release]] = relationship(
        back_populates="model", order_by="Release.created_at"
    )


class Release(Base):
    """An immutable version of a model: a set of artifacts with a manifest of hashes."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    version: Mapped[str] = mapped_column(String(64))
    licence_id: Mapped[int | None] = mapped_column(ForeignKey("licences.id"))
    #: who may receive it: in-house < partners < research < public (a new release is in-house)
    circle: Mapped[str] = mapped_column(String(16), default="in-house")
    #: sha256 of the canonical manifest JSON (see catalogue.manifest)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    total_size: Mapped[int] = mapped_column(BigInteger)
    parameter_count: Mapped[int] = mapped_column(BigInteger, default=0)
    #: what the release's fingerprint code withstands, fixed at publish time (the code's
    #: length and every codeword depend on it): recipients, colluders, false-accusation bound
    fingerprint_recipients: Mapped[int] = mapped_column(BigInteger, default=10**6)
    fingerprint_colluders: Mapped[int] = mapped_column(Integer, default=8)
    fingerprint_bound: Mapped[float] = mapped_column(Float, default=1e-9)
    #: one weight in 2^d carries the code (releases before migration 0006: 1/8)
    fingerprint_density_log2: Mapped[int] = mapped_column(Integer, default=DENSITY_LOG2)
    #: symbols in the code; 0: the least length the three above need (releases before 0015)
    fingerprint_code_length: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    model: Mapped[Model] = relationship(back_populates="releases")
    licence: Mapped[Licence | None] = relationship()
    artifacts: Mapped[list[Artifact]] = relationship(
        back_populates="release", order_by="Artifact.path", cascade="all, delete-orphan"
    )

    @property
    def ref(self) -> str:
        """`MODEL@VERSION`, how people name it."""
        return f"{self.model.name}@{self.version}"


class Artifact(Base):
    """One file of a release: where it sits in the release, its bytes' hash and format."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("release_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    path: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    #: "safetensors", "gguf", "json", "text" or "other"
    format: Mapped[str] = mapped_column(String(16))
    #: for weights: byte offset where tensor data starts (after the header)
    data_offset: Mapped[int | None] = mapped_column(BigInteger)

    release: Mapped[Release] = relationship(back_populates="artifacts")
    tensors: Mapped[list[TensorEntry]] = relationship(
        back_populates="artifact", order_by="TensorEntry.begin", cascade="all, delete-orphan"
    )


class TensorEntry(Base):
    """One tensor in a weights artifact: name, dtype, shape and absolute byte range in the file."""

    __tablename__ = "tensors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), index=True)
    name: Mapped[str] = mapped_column(String(512))
    dtype: Mapped[str] = mapped_column(String(16))
    shape: Mapped[list[Any]] = mapped_column()
    begin: Mapped[int] = mapped_column(BigInteger)
    end: Mapped[int] = mapped_column(BigInteger)

    artifact: Mapped[Artifact] = relationship(back_populates="tensors")
