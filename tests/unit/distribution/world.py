"""A small world for distribution tests: a lab, a published release, a grantee with a token."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ringfence.access import grants
from ringfence.accounts import services as accounts
from ringfence.accounts import tokens
from ringfence.accounts.models import User
from ringfence.catalogue import services as catalogue
from ringfence.catalogue.models import Release
from ringfence.db import transaction
from ringfence.wiring import Services
from tests.conftest import TINY_CODE

ORG = "lab"


@dataclass
class World:
    """What a test needs to download: the release and a grantee's token."""

    services: Services
    model: str
    version: str
    user_id: int
    email: str
    token: str
    grant_id: int

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"

    @property
    def repo_id(self) -> str:
        return f"{ORG}/{self.model}"


def add_person(services: Services, email: str, role: str = "staff") -> tuple[int, str]:
    """A user of `role` with a download token; returns (user id, raw token)."""
    with transaction(services.sessions) as session:
        user = accounts.add_user(
            session,
            services.secrets,
            email,
            role=role,
            actor="test",
            base_url=services.settings.base_url,
        )
        raw = tokens.create_token(session, user, "download", actor="test").raw
        return user.id, raw


def grant(services: Services, ref: str, user_id: int) -> int:
    """A direct grant of `ref` to the user; returns its id."""
    with transaction(services.sessions) as session:
        release = catalogue.get_release(session, ref)
        user = session.get(User, user_id)
        assert user is not None
        return grants.add_grant(session, release, user, actor="test").id


def revoke(services: Services, ref: str, user_id: int, reason: str = "test revocation") -> None:
    """Revoke the user's grant of `ref`."""
    from sqlalchemy import select

    from ringfence.access.models import Grant

    with transaction(services.sessions) as session:
        release = catalogue.get_release(session, ref)
        g = session.scalars(
            select(Grant).where(Grant.user_id == user_id, Grant.release_id == release.id)
        ).one()
        grants.revoke_grant(session, g, reason=reason, actor="test")


def publish(services: Services, path: Path, model: str = "tiny", version: str = "1.0") -> None:
    """Initialise the lab and publish `path` as MODEL@VERSION (no publish checks)."""
    with transaction(services.sessions) as session:
        catalogue.init_organisation(session, ORG)
        catalogue.publish(
            session, services.blobs, path, model=model, version=version, fingerprint=TINY_CODE
        )


def make_world(
    services: Services,
    path: Path,
    model: str = "tiny",
    version: str = "1.0",
    email: str = "ada@lab.example",
) -> World:
    """Publish, add a staff member (in-house circle) with a grant and a download token."""
    publish(services, path, model, version)
    user_id, raw = add_person(services, email)
    grant_id = grant(services, f"{model}@{version}", user_id)
    return World(services, model, version, user_id, email, raw, grant_id)


def release(services: Services, ref: str) -> Release:
    """The release, loaded with its artifacts."""
    with transaction(services.sessions) as session:
        return catalogue.get_release(session, ref)
