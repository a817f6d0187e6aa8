"""Migrations 0006 and 0015: releases published before them keep the density and the code
length their copies carry."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import ringfence.db


def _upgrade(engine: sa.Engine, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(ringfence.db.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_a_release_from_before_0006_keeps_density_1_in_8(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    _upgrade(engine, "0005")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO releases (id, model_id, version, circle, manifest_sha256, "
                "total_size, parameter_count, created_at) "
                "VALUES (1, 1, '1.0', 'research', :sha, 10, 5, '2026-11-01 00:00:00')"
            ),
            {"sha": "0" * 64},
        )
    _upgrade(engine, "head")
    with engine.connect() as conn:
        density = conn.execute(sa.text("SELECT fingerprint_density_log2 FROM releases")).scalar()
    assert density == 3


def test_a_release_from_before_0015_keeps_the_least_code_length(tmp_path: Path) -> None:
    from ringfence.catalogue.models import Release
    from ringfence.fingerprint.code import CodeParams
    from ringfence.fingerprint.services import release_params

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    _upgrade(engine, "0014")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO releases (id, model_id, version, circle, manifest_sha256, "
                "total_size, parameter_count, created_at, fingerprint_recipients, "
                "fingerprint_colluders, fingerprint_bound, fingerprint_density_log2) "
                "VALUES (1, 1, '1.0', 'research', :sha, 10, 5, '2026-11-01 00:00:00', "
                "1000000, 8, 1e-9, 4)"
            ),
            {"sha": "0" * 64},
        )
    _upgrade(engine, "head")
    with engine.connect() as conn:
        length = conn.execute(sa.text("SELECT fingerprint_code_length FROM releases")).scalar()
    assert length == 0
    old = Release(
        fingerprint_recipients=10**6,
        fingerprint_colluders=8,
        fingerprint_bound=1e-9,
        fingerprint_density_log2=4,
        fingerprint_code_length=length,
    )
    # the code its recipients' copies carry: the least length, 16,448 symbols
    assert release_params(old).design.length == CodeParams().least_length == 16448
