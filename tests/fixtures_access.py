"""Factories for access tests: real rows in a real database, no mocks.

Passwords are hashed once per process (argon2id is slow on purpose) and shared by every
factory-made user; all of them sign in with PASSWORD.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from functools import cache
from typing import Any

import pytest
from sqlalchemy.orm import Session

from ringfence.access.accounts import hasher
from ringfence.access.licences import install_research_licence
from ringfence.access.models import NDA, Institution, User
from ringfence.catalogue import services as catalogue
from ringfence.catalogue.models import Model, Release
from ringfence.db import utcnow
from tests.live import free_port

PASSWORD = "correct horse battery"


@cache
def password_hash() -> str:
    """One argon2id hash of PASSWORD for every factory-made user."""
    return hasher.hash(PASSWORD)


def make_user(
    session: Session,
    email: str,
    *,
    role: str = "member",
    verified: bool = True,
    institution: Institution | None = None,
) -> User:
    """A user who signs in with PASSWORD."""
    user = User(
        email=email,
        role=role,
        password_hash=password_hash(),
        institution=institution,
        email_verified_at=utcnow() if verified else None,
    )
    session.add(user)
    session.flush()
    return user


def make_release(
    session: Session,
    name: str = "tiny",
    version: str = "1.0",
    *,
    circle: str = "research",
    licensed: bool = True,
) -> Release:
    """A release row without files (access rules never read the bytes)."""
    org = catalogue.init_organisation(session, "lab")
    model = session.query(Model).filter_by(name=name).first() or Model(
        organisation_id=org.id, name=name
    )
    licence = install_research_licence(session, actor="test") if licensed else None
    release = Release(
        model=model,
        version=version,
        circle=circle,
        licence=licence,
        manifest_sha256="0" * 64,
        total_size=0,
    )
    session.add(release)
    session.flush()
    return release


def make_partner(
    session: Session, name: str = "Partner Uni", domain: str = "partner.example"
) -> Institution:
    """An institution with a countersigned NDA valid for a year."""
    inst = Institution(name=name, domains=[domain])
    session.add(inst)
    session.flush()
    admin = session.query(User).filter_by(role="admin").first() or make_user(
        session, f"nda-admin@{domain}", role="admin"
    )
    session.add(
        NDA(
            institution=inst,
            document_sha256="1" * 64,
            document_name="nda.pdf",
            signatory="Dean",
            expires_at=utcnow() + timedelta(days=365),
            countersigned_by=admin,
            countersigned_at=utcnow(),
        )
    )
    session.flush()
    return inst


@dataclass
class Inbox:
    """Mails an in-process SMTP server received."""

    messages: list[Message] = field(default_factory=list)

    def to(self, address: str) -> list[Message]:
        """Mails to `address`, oldest first."""
        return [m for m in self.messages if address in (m["To"] or "")]

    def last_body(self, address: str) -> str:
        """The text of the newest mail to `address`."""
        mails = self.to(address)
        assert mails, f"no mail to {address}; got {[m['To'] for m in self.messages]}"
        payload: Any = mails[-1].get_payload(decode=True)
        return str(payload.decode())


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Inbox]]:
    """A real SMTP server (aiosmtpd) on a free loopback port, capturing every mail."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    lock = threading.Lock()

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with lock:
                inbox.messages.append(message_from_bytes(envelope.content))
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()
