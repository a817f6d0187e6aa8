"""Catalogue services: organisation, publish, immutability, licences, references."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ringfence.audit.models import AuditEvent
from ringfence.catalogue import services as catalogue
from ringfence.catalogue.manifest import canonical_manifest
from ringfence.catalogue.models import Artifact, Release
from ringfence.db import transaction
from ringfence.errors import Conflict, InvalidInput, NotFound
from ringfence.wiring import Services
from tests.conftest import TINY_CODE


def _publish(services: Services, path: Path, version: str = "1.0") -> Release:
    with transaction(services.sessions) as session:
        catalogue.init_organisation(session, "lab")
        return catalogue.publish(
            session, services.blobs, path, model="tiny", version=version, fingerprint=TINY_CODE
        )


def test_publish_records_every_file_with_its_hash(services: Services, tiny_model: Path) -> None:
    release = _publish(services, tiny_model)
    with transaction(services.sessions) as session:
        stored = catalogue.get_release(session, "tiny@1.0")
        paths = {a.path: a for a in stored.artifacts}
        assert set(paths) == {"README.md", "config.json", "model.safetensors", "tokenizer.json"}
        for path, artifact in paths.items():
            raw = (tiny_model / path).read_bytes()
            assert artifact.sha256 == hashlib.sha256(raw).hexdigest()
            assert artifact.size == len(raw)
            with services.blobs.open(artifact.sha256) as fh:
                assert fh.read() == raw
        weights = paths["model.safetensors"]
        assert weights.format == "safetensors"
        assert len(weights.tensors) == 22
        assert stored.circle == "in-house"
        assert stored.parameter_count == sum(
            int(__import__("math").prod(t.shape)) for t in weights.tensors
        )
    assert (
        release.manifest_sha256
        == hashlib.sha256(
            canonical_manifest(
                "tiny",
                "1.0",
                [catalogue.ManifestEntry(p, a.size, a.sha256) for p, a in paths.items()],
            )
        ).hexdigest()
    )


def test_releases_are_immutable(services: Services, tiny_model: Path) -> None:
    _publish(services, tiny_model)
    with pytest.raises(Conflict, match="immutable"):
        _publish(services, tiny_model)


def test_refused_publish_leaves_nothing(services: Services, tiny_model: Path) -> None:
    (tiny_model / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(InvalidInput):
        _publish(services, tiny_model)
    with transaction(services.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Release)) == 0
        assert session.scalar(select(func.count()).select_from(Artifact)) == 0
        tags = session.scalars(select(AuditEvent.tag)).all()
        assert "catalogue:release:published" not in tags


def test_release_without_weights_is_refused(services: Services, tmp_path: Path) -> None:
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({}))
    with pytest.raises(InvalidInput, match="no weights"):
        _publish(services, folder)


def test_parse_ref_accepts_org_prefix_and_rejects_garbage() -> None:
    assert catalogue.parse_ref("lab/smollm2@1.0") == ("smollm2", "1.0")
    for bad in ("smollm2", "@1.0", "a@", "a b@1", "x@1/../2"):
        with pytest.raises(InvalidInput):
            catalogue.parse_ref(bad)


def test_unknown_release_is_not_found(services: Services) -> None:
    with transaction(services.sessions) as session, pytest.raises(NotFound):
        catalogue.get_release(session, "nope@1")


def test_licence_versions_increase_and_identical_text_is_idempotent(services: Services) -> None:
    with transaction(services.sessions) as session:
        first = catalogue.add_licence(session, "research", "Research", "v1 text", actor="t")
        same = catalogue.add_licence(session, "research", "Research", "v1 text", actor="t")
        second = catalogue.add_licence(session, "research", "Research", "v2 text", actor="t")
        assert (first.version, same.id, second.version) == (1, first.id, 2)
        assert catalogue.get_licence(session, "research").version == 2
        assert (
            catalogue.get_licence(session, "research@1").sha256
            == hashlib.sha256(b"v1 text").hexdigest()
        )


def test_organisation_cannot_be_reinitialised_under_another_slug(services: Services) -> None:
    with transaction(services.sessions) as session:
        catalogue.init_organisation(session, "lab")
        assert catalogue.init_organisation(session, "lab").slug == "lab"
        with pytest.raises(Conflict):
            catalogue.init_organisation(session, "other")
        with pytest.raises(InvalidInput):
            catalogue.init_organisation(session, "Bad Slug")
