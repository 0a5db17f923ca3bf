"""Idempotency-Key records (IETF draft semantics), scoped per caller (Principal.key).

Phase 1 (:func:`claim`) inserts an in-flight marker that the API layer commits at once, so
a concurrent duplicate sees it; phase 2 (:func:`complete`) stores the answer in the same
transaction as the work, written with its commit. :func:`release` removes a marker whose
work failed, so a retry can run. Keys are kept ``idempotency_ttl_hours`` (>= 24, default 48)
and then purged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from models.base import new_id
from models.idempotency import IdempotencyRecord
from services.config import Settings
from services.db import execute_direct, insert_unless_conflict, write_at_commit
from services.errors import Conflict, Invalid

MAX_KEY_LENGTH = 255


@dataclass
class Claim:
    record_id: str
    replay: IdempotencyRecord | None = None  # set when the stored answer must be replayed


def validate_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise Invalid(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            loc=["header", "Idempotency-Key"],
        )


def _find(session: Session, principal_key: str, key: str) -> IdempotencyRecord | None:
    return session.execute(
        select(IdempotencyRecord).where(
            IdempotencyRecord.principal_key == principal_key, IdempotencyRecord.key == key
        )
    ).scalar_one_or_none()


# Built once (see services.db.plain_insert): these run on every keyed request.
_RECORDS = IdempotencyRecord.__table__
_FORGET_EXPIRED = delete(_RECORDS).where(
    _RECORDS.c.principal_key == bindparam("principal_key"),
    _RECORDS.c.expires_at <= bindparam("now"),
)
_FORGET_ONE = delete(_RECORDS).where(
    _RECORDS.c.id == bindparam("record_id"), _RECORDS.c.expires_at <= bindparam("now")
)
_COMPLETE = (
    update(_RECORDS)
    .where(_RECORDS.c.id == bindparam("record_id"))
    .values(
        status_code=bindparam("status_code"),
        response_body=bindparam("response_body"),
        response_headers=bindparam("response_headers"),
    )
)


# When each caller's keys past retention were last forgotten, in this process (see claim).
_PURGE_EVERY = timedelta(minutes=10)
_last_purge: dict[str, datetime] = {}


def _forget_callers_expired(session: Session, principal_key: str, now: datetime) -> None:
    """Delete this caller's keys past retention, at most every ``_PURGE_EVERY`` per process
    (the scheduler purges everyone's; this keeps a caller's own tidy when it runs rarely).
    Not on every request: it would be one more statement on every keyed intake."""
    last = _last_purge.get(principal_key)
    if last is not None and last <= now < last + _PURGE_EVERY:
        return
    if len(_last_purge) > 10_000:  # a bound, not a policy: forgetting only costs a DELETE
        _last_purge.clear()
    execute_direct(
        session.connection(), _FORGET_EXPIRED, {"principal_key": principal_key, "now": now}
    )
    _last_purge[principal_key] = now


def claim(
    session: Session,
    *,
    principal_key: str,
    key: str,
    method: str,
    path: str,
    request_hash: str,
    now: datetime,
    settings: Settings,
) -> Claim:
    """Phase 1: take the key or report why not. The caller commits right after.

    Raises Invalid (422) for the same key with another request, Conflict (409, with
    Retry-After) while another request with this key is in flight. A key past retention
    counts as free even before it is purged: it is forgotten and claimed afresh.
    """
    validate_key(key)
    lease = now + timedelta(seconds=settings.idempotency_lease_seconds)
    conn = session.connection()
    row = {
        "principal_key": principal_key,
        "key": key,
        "method": method,
        "path": path,
        "request_hash": request_hash,
        "status_code": None,
        "lease_expires_at": lease,
        "created_at": now,
        "expires_at": now + timedelta(hours=settings.idempotency_ttl_hours),
    }
    claim_key = insert_unless_conflict(conn.dialect.name, _RECORDS, "principal_key", "key")
    existing = None
    for _attempt in range(2):
        # INSERT ... ON CONFLICT DO NOTHING: a concurrent claim of the same key makes this
        # one wait for it (no savepoint, no error), then find its marker below.
        record_id = new_id()
        if execute_direct(conn, claim_key, {"id": record_id, **row}):  # a row: claimed
            _forget_callers_expired(session, principal_key, now)
            return Claim(record_id=record_id)
        existing = _find(session, principal_key, key)
        if existing is None or existing.expires_at > now:
            break
        # Past retention, not purged yet: forget it (unless someone just did) and try again.
        conn.execute(_FORGET_ONE, {"record_id": existing.id, "now": now})
        session.expunge(existing)
        existing = None
    if existing is None:  # pragma: no cover - the winner failed and released it
        raise Conflict(
            "a request with this Idempotency-Key is in progress; retry shortly",
            headers={"Retry-After": "1"},
        )
    same_request = (
        existing.request_hash == request_hash
        and existing.method == method
        and existing.path == path
    )
    if not same_request:
        raise Invalid(
            "this Idempotency-Key was already used with a different request",
            loc=["header", "Idempotency-Key"],
        )
    if existing.status_code is not None:
        return Claim(record_id=existing.id, replay=existing)
    if existing.lease_expires_at > now:
        retry = max(1, int((existing.lease_expires_at - now).total_seconds()) + 1)
        raise Conflict(
            "a request with this Idempotency-Key is still being processed; retry later",
            headers={"Retry-After": str(retry)},
        )
    # The earlier attempt died holding the lease: take it over, if nobody else just did.
    taken = session.execute(
        update(IdempotencyRecord)
        .where(
            IdempotencyRecord.id == existing.id,
            IdempotencyRecord.status_code.is_(None),
            IdempotencyRecord.lease_expires_at == existing.lease_expires_at,
        )
        .values(lease_expires_at=lease)
        .execution_options(synchronize_session=False)
    ).rowcount
    if taken != 1:
        raise Conflict(
            "a request with this Idempotency-Key is still being processed; retry later",
            headers={"Retry-After": "1"},
        )
    return Claim(record_id=existing.id)


def complete(
    session: Session,
    *,
    record_id: str,
    status_code: int,
    body: Any,
    headers: dict[str, str] | None = None,
) -> None:
    """Phase 2: store the answer, in the same transaction as the work: it is written with
    the transaction's commit (services.db.write_at_commit), so the caller commits next."""
    write_at_commit(
        session,
        _COMPLETE,
        {
            "record_id": record_id,
            "status_code": status_code,
            "response_body": body,
            "response_headers": headers or None,
        },
    )


def release(session: Session, *, record_id: str) -> None:
    """Forget an in-flight marker whose work failed, so the client can retry with the key."""
    session.execute(
        delete(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id, IdempotencyRecord.status_code.is_(None))
        .execution_options(synchronize_session=False)
    )


def purge_expired(session: Session, now: datetime) -> int:
    """Delete keys past their retention (the scheduler calls this); returns how many."""
    return session.execute(
        delete(IdempotencyRecord)
        .where(IdempotencyRecord.expires_at <= now)
        .execution_options(synchronize_session=False)
    ).rowcount
