"""The scheduler tick forgets Idempotency-Keys past their retention, never ahead of time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from api.scheduler import tick
from models.idempotency import IdempotencyRecord
from services.db import make_session_factory


def _key(session, key: str, expires_at: datetime) -> None:
    session.add(
        IdempotencyRecord(
            principal_key="client:x",
            key=key,
            method="POST",
            path="/v1/incidents",
            request_hash="h",
            status_code=201,
            response_body={},
            lease_expires_at=expires_at,
            created_at=expires_at - timedelta(hours=48),
            expires_at=expires_at,
        )
    )


def test_tick_purges_expired_keys_only(engine, settings, session):
    now = datetime.now(UTC)
    _key(session, "old", now - timedelta(minutes=1))
    _key(session, "kept", now + timedelta(hours=1))
    session.commit()
    tick(make_session_factory(engine), settings=settings, at=now)
    left = set(session.execute(select(IdempotencyRecord.key)).scalars())
    assert left == {"kept"}


def test_a_replay_in_the_future_does_not_purge_live_keys(engine, settings, session):
    now = datetime.now(UTC)
    _key(session, "live", now + timedelta(hours=1))
    session.commit()
    tick(make_session_factory(engine), settings=settings, at=now + timedelta(days=3))
    assert set(session.execute(select(IdempotencyRecord.key)).scalars()) == {"live"}
