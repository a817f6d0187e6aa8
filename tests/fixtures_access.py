"""Factories for access tests: real rows in a real database, no mocks.

Passwords are hashed once per process (argon2id is slow on purpose) and shared by every
factory-made user; all of them sign in with PASSWORD. Admins and reviewers have two-factor
sign-in on with KNOWN_SECRET, as the security layer requires of them; `totp_code` gives a
code the server accepts now.
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

import pyotp
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ringfence.access.licences import install_research_licence
from ringfence.accounts import two_factor as two_factor_services
from ringfence.accounts.models import User
from ringfence.accounts.services import hasher
from ringfence.catalogue import services as catalogue
from ringfence.catalogue.models import Model, Release
from ringfence.db import utcnow
from ringfence.organisations.models import NDA, Institution
from ringfence.secrets import SecretStore
from tests.live import free_port

PASSWORD = "correct horse battery"
#: the TOTP secret of every factory-made user with two-factor sign-in (base32)
KNOWN_SECRET = "RINGFENCETESTSECRETKNOWNTOTESTS2"


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
    secrets: SecretStore | None = None,
    two_factor: bool | None = None,
) -> User:
    """A user who signs in with PASSWORD, and a code for KNOWN_SECRET when `two_factor`.

    `two_factor` defaults to whether the role needs it (admin, reviewer); enrolling seals the
    secret under the server's key, so it needs that server's `secrets`.
    """
    user = User(
        email=email,
        role=role,
        password_hash=password_hash(),
        institution=institution,
        email_verified_at=utcnow() if verified else None,
    )
    session.add(user)
    session.flush()
    if role in two_factor_services.REQUIRED_ROLES if two_factor is None else two_factor:
        if secrets is None:
            raise TypeError(
                f"make_user({email!r}, role={role!r}) enrols two-factor sign-in: pass the "
                "server's secrets=, or two_factor=False for a user who never signs in"
            )
        user.totp_secret_sealed = two_factor_services.seal_secret(secrets, user.id, KNOWN_SECRET)
        user.two_factor_enabled_at = utcnow()
        session.flush()
    return user


def totp_code(sessions: sessionmaker[Session] | Session, email: str) -> str:
    """A KNOWN_SECRET code the server accepts now: not yet used by `email`, inside the window."""
    if isinstance(sessions, Session):
        last = sessions.scalars(select(User.totp_last_step).where(User.email == email)).one()
    else:
        with sessions() as session:
            last = session.scalars(select(User.totp_last_step).where(User.email == email)).one()
    totp = pyotp.TOTP(KNOWN_SECRET)
    now = totp.timecode(utcnow())
    # This step, else the next (the server accepts one step either side of its clock).
    for step in (now, now + 1):
        if last is None or step > last:
            return totp.generate_otp(step)
    raise AssertionError(f"{email} used both codes of this window; sign in fewer times")


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
    # The countersigning admin never signs in, so needs no second factor here.
    admin = session.query(User).filter_by(role="admin").first() or make_user(
        session, f"nda-admin@{domain}", role="admin", two_factor=False
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
