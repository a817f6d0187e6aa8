"""Several server processes run the manifest worker: each manifest is computed by one."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from ringfence.db import utcnow
from ringfence.distribution import services as dist
from ringfence.distribution.models import RecipientManifest
from ringfence.distribution.tasks import compute_pending
from ringfence.settings import Settings
from ringfence.wiring import Services, build
from tests.unit.distribution.world import make_world, release


def test_one_process_claims_a_manifest_and_the_others_skip_it(
    services: Services, tiny_model: Path
) -> None:
    world = make_world(services, tiny_model)
    release_id = release(services, world.ref).id
    other = build(Settings(home=services.settings.home))  # a second worker's own engine
    assert dist.claim_manifest(services, release_id, world.user_id)
    assert not dist.claim_manifest(other, release_id, world.user_id)
    assert compute_pending(other) == 0  # claimed: the second worker computes nothing
    # A claim whose worker died is taken over once it is old enough.
    with services.sessions() as session:
        session.execute(
            update(RecipientManifest).values(computed_at=utcnow() - 2 * dist.CLAIM_TIMEOUT)
        )
        session.commit()
    assert compute_pending(other) == 1
    with services.sessions() as session:
        row = dist.manifest_row(session, release_id, world.user_id)
        assert row is not None and row.state == "ready"
    assert not dist.claim_manifest(services, release_id, world.user_id)  # done: nothing to claim
