"""Migration 0009: a chain written before it still verifies, and new events chain their user."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.orm import Session

import ringfence.db
from ringfence.audit.services import GENESIS, _digest, record, verify
from ringfence.audit.tags import EventTag


def _upgrade(engine: sa.Engine, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(ringfence.db.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def _old_event(conn: sa.Connection, seq: int, prev: str) -> str:
    """An event as the code before 0009 wrote it (its hash has no user in it)."""
    at = datetime(2026, 11, 1, 12, 0, seq, tzinfo=UTC)
    payload = {"recipient": "bob@x.org", "index": seq}
    digest = _digest(
        prev, seq, "fingerprint:recipient:registered", "cli", "release:m@1", None, payload, at
    )
    conn.execute(
        sa.text(
            "INSERT INTO audit_events (seq, tag, actor, subject, ip, payload, created_at, "
            "prev_hash, hash) VALUES (:seq, 'fingerprint:recipient:registered', 'cli', "
            "'release:m@1', NULL, :payload, :at, :prev, :hash)"
        ),
        {
            "seq": seq,
            "payload": json.dumps(payload),
            "at": at.isoformat(" "),
            "prev": prev,
            "hash": digest,
        },
    )
    return digest


def test_audit_verify_passes_over_a_chain_that_spans_0009(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    _upgrade(engine, "0008")
    with engine.begin() as conn:
        prev = GENESIS
        for seq in (1, 2, 3):
            prev = _old_event(conn, seq, prev)
    _upgrade(engine, "head")
    with Session(engine) as session:
        assert verify(session).ok
        record(session, EventTag.Tracing.TraceRun, actor="cli", subject="release:m@1", user_id=7)
        record(session, EventTag.Tracing.TraceRun, actor="cli", subject="release:m@1")
        session.commit()
        report = verify(session)
        assert report.ok and report.events == 5
    # the user is chained content: moving an event to another person breaks the chain there
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_events SET user_id = 8 WHERE seq = 4"))
    with Session(engine) as session:
        broken = verify(session)
    assert broken.broken_seq == 4 and broken.reason == "its content does not match its hash"
    # and an old event cannot be given a user after the fact either
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_events SET user_id = NULL WHERE seq = 4"))
        conn.execute(sa.text("UPDATE audit_events SET user_id = 7 WHERE seq = 2"))
    with Session(engine) as session:
        assert verify(session).broken_seq == 2


def test_0009_indexes_the_file_hashes_of_manifests_already_computed(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    _upgrade(engine, "0008")
    with engine.begin() as conn:  # SQLite leaves foreign keys unchecked on a plain connection
        for user_id, state, digest in ((1, "ready", "aa" * 32), (2, "pending", "bb" * 32)):
            conn.execute(
                sa.text(
                    "INSERT INTO recipient_manifests (release_id, user_id, state, files, "
                    "created_at) VALUES (5, :user, :state, :files, '2026-11-01 00:00:00')"
                ),
                {"user": user_id, "state": state, "files": json.dumps({"model.gguf": digest})},
            )
    _upgrade(engine, "head")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT sha256, release_id, user_id, path FROM recipient_file_hashes")
        ).all()
    assert [tuple(r) for r in rows] == [("aa" * 32, 5, 1, "model.gguf")]
