"""A trace's evidence names the right person: found by account id and by indexed file hash."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import select

from ringfence.access.models import Grant
from ringfence.accounts.models import User
from ringfence.audit.models import AuditEvent
from ringfence.audit.services import verify
from ringfence.catalogue import services as catalogue
from ringfence.db import transaction
from ringfence.distribution import links, sources
from ringfence.distribution import services as distribution
from ringfence.tracing import services as tracing
from ringfence.wiring import Services
from tests.unit.distribution.world import add_person, grant, make_world

WEIGHTS = "model.safetensors"


def _issue(services: Services, ref: str, user_id: int, out: Path) -> Path:
    """A link and a signed manifest for the user, and her copy of the weights written to `out`."""
    with services.sessions() as s:
        release_id = catalogue.get_release(s, ref).id
    distribution.compute_manifest(services, release_id, user_id)
    with transaction(services.sessions) as s:
        release = catalogue.get_release(s, ref)
        g = s.scalars(select(Grant).where(Grant.user_id == user_id)).one()
        links.create_link(s, services.secrets, g, release, actor="reviewer@lab.example")
        user = s.get(User, user_id)
        assert user is not None
        recipient = sources.recipient_for(s, release, user)
        artifact = next(a for a in release.artifacts if a.path == WEIGHTS)
    out.write_bytes(
        b"".join(sources.copy_bytes(services, release, artifact, recipient, 0, artifact.size))
    )
    return out


def test_trace_report_does_not_mix_bob_and_jimbob(
    services: Services, tiny_model: Path, tmp_path: Path
) -> None:
    world = make_world(services, tiny_model, email="bob@x.org")
    jimbob, _ = add_person(services, "jimbob@x.org")
    grant(services, world.ref, jimbob)
    bobs = _issue(services, world.ref, world.user_id, tmp_path / "bob.safetensors")
    _issue(services, world.ref, jimbob, tmp_path / "jimbob.safetensors")

    with transaction(services.sessions) as s:
        result = tracing.trace(services, s, [bobs])
        assert result.exact_match and [a.recipient for a in result.accused] == ["bob@x.org"]
        owners = dict(s.execute(select(AuditEvent.seq, AuditEvent.user_id)).tuples().all())
    records = result.records["bob@x.org"]
    # audit events read "#<seq> by <actor> on <subject>"; grants and acceptances do not
    shown = [int(r["detail"].split()[0][1:]) for r in records if r["detail"].startswith("#")]
    kinds = {r["kind"] for r in records}
    # bob's own link and recipient registration are there; nothing of jimbob's is (his address
    # contains bob's, which is how a substring search mixed them)
    assert {"distribution:link:created", "fingerprint:recipient:registered"} <= kinds
    assert shown and all(owners[seq] == world.user_id for seq in shown)
    assert not any(owners[seq] == jimbob for seq in shown)
    with services.sessions() as s:
        assert verify(s).ok


def test_an_exact_copy_is_found_among_many_by_one_indexed_lookup(
    services: Services, tiny_model: Path, tmp_path: Path
) -> None:
    world = make_world(services, tiny_model, email="r00@x.org")
    users = [world.user_id]
    for i in range(1, 12):
        uid, _ = add_person(services, f"r{i:02d}@x.org")
        grant(services, world.ref, uid)
        users.append(uid)
    copies = [_issue(services, world.ref, u, tmp_path / f"{u}.safetensors") for u in users]

    with transaction(services.sessions) as s:
        result = tracing.trace(services, s, [copies[7]])
        assert result.exact_match and [a.recipient for a in result.accused] == ["r07@x.org"]
        assert WEIGHTS in result.message
        query = (
            "SELECT release_id, user_id, path FROM recipient_file_hashes "
            "WHERE sha256 IN ('ab', 'cd')"
        )
        if s.get_bind().dialect.name == "postgresql":
            # The planner prefers a scan on a tiny table; ask it not to, to see the index used.
            s.execute(sa.text("SET LOCAL enable_seqscan = off"))
            explain = f"EXPLAIN {query}"
        else:
            explain = f"EXPLAIN QUERY PLAN {query}"
        plan = " ".join(str(row[-1]) for row in s.execute(sa.text(explain)))
    assert "ix_recipient_file_hashes_sha256" in plan
