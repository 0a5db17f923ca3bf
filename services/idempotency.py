"""Idempotency-Key records (IETF draft semantics), scoped per caller (Principal.key).

A key is claimed (:func:`claim`) inside the transaction of the work it guards, and its row
- the request's hash with its answer - is written with that work's commit
(:func:`complete`, services.db.write_at_commit): the two are committed together or not at
all, so a failed request, a killed process or a lost connection leaves nothing behind, and
its retry can run at once. The unique (caller, key) index makes a second row impossible.

While a request with a key is in flight, nobody can see its row (it is not committed yet).
On PostgreSQL the claim therefore also takes two transaction-scoped advisory locks, without
waiting: one for the key, one for the key with this request's hash. A concurrent request
with the same key finds the first one taken; the second tells it whether the request in
flight is the same one (409, retry later) or another one (422). SQLite runs one writing
transaction at a time (BEGIN IMMEDIATE), so there a second request simply comes after the
first and finds its row. Keys are kept ``idempotency_ttl_hours`` (>= 24, default 48) and
then purged.

A partner's request on PostgreSQL can have its key looked at together with its caller's
look-up (:func:`look_as_client`, one statement: api.direct does it); :func:`claim` then
decides on that look instead of making its own.

Rows written by earlier versions, which committed an in-flight marker (status_code null)
before the work, are still understood: in flight until their lease ends, then taken over.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, select, text
from sqlalchemy.orm import Session

from models.base import new_id
from models.idempotency import IdempotencyRecord
from services.config import Settings
from services.db import execute_direct, plain_insert, write_at_commit
from services.errors import Conflict, Invalid

MAX_KEY_LENGTH = 255


@dataclass
class Stored:
    """A key's row as the claim read it."""

    id: str
    method: str
    path: str
    request_hash: str
    status_code: int | None
    response_body: Any
    response_headers: dict[str, str] | None
    lease_expires_at: datetime
    expires_at: datetime


@dataclass
class Look:
    """What a claim's first statement found, for one request: whether this request holds
    the key (``mine``), whether no request with its hash holds it (``body_free``), and the
    key's row. Both locks are this transaction's: a look is good until it ends."""

    principal_key: str
    key: str
    method: str
    path: str
    request_hash: str
    mine: bool
    body_free: bool
    stored: Stored | None

    def is_for(self, principal_key: str, key: str, method: str, path: str, hash_: str) -> bool:
        return (self.principal_key, self.key, self.method, self.path, self.request_hash) == (
            principal_key,
            key,
            method,
            path,
            hash_,
        )


@dataclass
class Claim:
    """The key, taken for this request: ``row`` is written with the answer at the commit
    (:func:`complete`); or ``replay``, the answer stored by the request that used it first."""

    row: dict[str, Any] | None = None
    replay: Stored | None = None


def validate_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise Invalid(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            loc=["header", "Idempotency-Key"],
        )


# The columns a claim reads, in Stored's order (the statements below select them).
_STORED_COLUMNS = tuple(field.name for field in fields(Stored))
_STORED = ", ".join(f"r.{name}" for name in _STORED_COLUMNS)


# The key's two advisory locks (PostgreSQL) are named by these strings: the caller's
# principal_key followed by a suffix. look_as_client builds the same names in SQL from the
# API client's id, so both statements take the very same locks.
def _key_suffix(key: str) -> str:
    return f"\n{key}"


def _body_suffix(key: str, method: str, path: str, request_hash: str) -> str:
    return f"\n{key}\n{method}\n{path}\n{request_hash}"


# PostgreSQL: both locks are tried (never waited for) whatever the row, then the row is read.
# OFFSET 0 keeps the subquery, so each lock function runs exactly once.
_CLAIM_PG = text(
    "SELECT l.mine, l.body_free, " + _STORED + " FROM (SELECT "
    "pg_try_advisory_xact_lock(hashtextextended(:key_lock, 7364)) AS mine, "
    "pg_try_advisory_xact_lock(hashtextextended(:body_lock, 7364)) AS body_free OFFSET 0) l "
    "LEFT JOIN idempotency_keys r ON r.principal_key = :principal_key AND r.key = :key"
)
# PostgreSQL, a partner's request: the caller's look-up (services.accounts.client_by_key)
# and the same look as _CLAIM_PG, in one statement. The locks are in a LATERAL on the
# client's row, so a key that matches no live client takes none.
_CLAIM_AS_CLIENT_PG = text(
    "SELECT c.id, c.name, c.agency_id, "
    "l.mine, l.body_free, " + _STORED + " FROM api_clients c "
    "CROSS JOIN LATERAL (SELECT 'client:' || c.id AS principal_key) p "
    "CROSS JOIN LATERAL (SELECT "
    "pg_try_advisory_xact_lock(hashtextextended(p.principal_key || :key_suffix, 7364)) AS mine, "
    "pg_try_advisory_xact_lock(hashtextextended(p.principal_key || :body_suffix, 7364)) "
    "AS body_free OFFSET 0) l "
    "LEFT JOIN idempotency_keys r ON r.principal_key = p.principal_key AND r.key = :key "
    "WHERE c.key_hash = :key_hash AND c.revoked_at IS NULL"
)
_RECORDS = IdempotencyRecord.__table__
_FORGET_EXPIRED = delete(_RECORDS).where(
    _RECORDS.c.principal_key == bindparam("principal_key"),
    _RECORDS.c.expires_at <= bindparam("now"),
)
_FORGET = delete(_RECORDS).where(_RECORDS.c.id == bindparam("record_id"))
# SQLite: the row alone (its types converted by SQLAlchemy: JSON, times).
_FIND = select(*(_RECORDS.c[name] for name in _STORED_COLUMNS)).where(
    _RECORDS.c.principal_key == bindparam("principal_key"), _RECORDS.c.key == bindparam("key")
)


def _looked(
    principal_key: str, key: str, method: str, path: str, request_hash: str, found: Any
) -> Look:
    """A Look from a PostgreSQL statement's (mine, body_free, the row's columns...)."""
    mine, body_free, *stored = found
    return Look(
        principal_key,
        key,
        method,
        path,
        request_hash,
        bool(mine),
        bool(body_free),
        Stored(*stored) if stored[0] is not None else None,
    )


def look(
    session: Session, *, principal_key: str, key: str, method: str, path: str, request_hash: str
) -> Look:
    """Try the key's locks (PostgreSQL) and read its row, in the session's transaction."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        row = conn.execute(_FIND, {"principal_key": principal_key, "key": key}).first()
        stored = Stored(*row) if row is not None else None
        return Look(principal_key, key, method, path, request_hash, True, True, stored)
    params = {
        "principal_key": principal_key,
        "key": key,
        "key_lock": principal_key + _key_suffix(key),
        "body_lock": principal_key + _body_suffix(key, method, path, request_hash),
    }
    found = execute_direct(conn, _CLAIM_PG, params)[0]
    return _looked(principal_key, key, method, path, request_hash, found)


def look_as_client(
    session: Session, *, key_hash: str, key: str, method: str, path: str, request_hash: str
) -> tuple[Any, Look] | None:
    """PostgreSQL only: the live API client holding the API key with this hash - its
    (id, name, agency_id) - and :func:`look` for its Idempotency-Key,
    in one statement (one round trip fewer for a partner's keyed request). None when no live
    client holds that API key; then no lock was taken."""
    validate_key(key)
    rows = execute_direct(
        session.connection(),
        _CLAIM_AS_CLIENT_PG,
        {
            "key_hash": key_hash,
            "key": key,
            "key_suffix": _key_suffix(key),
            "body_suffix": _body_suffix(key, method, path, request_hash),
        },
    )
    if not rows:
        return None
    client_id, name, agency_id, *found = rows[0]  # key_hash is unique
    # The client's principal_key (services.principal.Principal.key), as the statement built it.
    principal_key = f"client:{client_id}"
    return (client_id, name, agency_id), _looked(
        principal_key, key, method, path, request_hash, found
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
    looked: Look | None = None,
) -> Claim:
    """Take the key for this request, in the work's transaction, or say why not.

    Returns the stored answer to replay when this request was answered before. Raises
    Invalid (422) for the same key with another request, Conflict (409, with Retry-After)
    while the same request is in flight. A key past retention counts as free even before it
    is purged: it is forgotten and claimed afresh. ``looked``: this request's
    :func:`look_as_client`, made earlier in this same transaction (used only when it is
    for this very request; otherwise the key is looked at here).
    """
    validate_key(key)
    if looked is None or not looked.is_for(principal_key, key, method, path, request_hash):
        looked = look(
            session,
            principal_key=principal_key,
            key=key,
            method=method,
            path=path,
            request_hash=request_hash,
        )
    mine, body_free, stored = looked.mine, looked.body_free, looked.stored
    if stored is not None and stored.expires_at <= now:
        if not mine:  # someone is claiming it afresh right now
            raise Conflict(_IN_FLIGHT, headers={"Retry-After": "1"})
        _forget(session, stored)
        stored = None
    if stored is None:
        if not mine:
            if body_free:  # the request in flight with this key is another one
                raise Invalid(_REUSED, loc=["header", "Idempotency-Key"])
            raise Conflict(_IN_FLIGHT, headers={"Retry-After": "1"})
    else:
        same_request = (
            stored.request_hash == request_hash and stored.method == method and stored.path == path
        )
        if not same_request:
            raise Invalid(_REUSED, loc=["header", "Idempotency-Key"])
        if stored.status_code is not None:
            return Claim(replay=stored)
        # An in-flight marker committed by an earlier version of this service.
        if stored.lease_expires_at > now or not mine:
            retry = max(1, int((stored.lease_expires_at - now).total_seconds()) + 1)
            raise Conflict(_IN_FLIGHT, headers={"Retry-After": str(retry)})
        _forget(session, stored)  # its request died holding the lease: taken over
    _forget_callers_expired(session, principal_key, now)
    return Claim(
        row={
            "id": new_id(),
            "principal_key": principal_key,
            "key": key,
            "method": method,
            "path": path,
            "request_hash": request_hash,
            "lease_expires_at": now,
            "created_at": now,
            "expires_at": now + timedelta(hours=settings.idempotency_ttl_hours),
        }
    )


_IN_FLIGHT = "a request with this Idempotency-Key is still being processed; retry later"
_REUSED = "this Idempotency-Key was already used with a different request"


def _forget(session: Session, stored: Stored) -> None:
    execute_direct(session.connection(), _FORGET, {"record_id": stored.id})


def complete(
    session: Session,
    claim: Claim,
    *,
    status_code: int,
    body: Any,
    headers: dict[str, str] | None = None,
) -> None:
    """Store the answer with the key, written with the work's commit
    (services.db.write_at_commit): the caller commits next."""
    if claim.row is None:
        raise ValueError("complete: this claim replays a stored answer")
    write_at_commit(
        session,
        _STORE,
        {
            **claim.row,
            "status_code": status_code,
            "response_body": body,
            "response_headers": headers or None,
        },
    )


_STORE = plain_insert(_RECORDS)


def is_taken_meanwhile(error: Exception) -> bool:
    """Whether a commit failed because another request stored this key first: it claimed
    the key after this one looked, and committed before this one did."""
    diag = getattr(getattr(error, "orig", None), "diag", None)
    return getattr(diag, "constraint_name", None) == _UNIQUE_KEY


_UNIQUE_KEY = "uq_idempotency_keys_principal_key_key"


def purge_expired(session: Session, now: datetime) -> int:
    """Delete keys past their retention (the scheduler calls this); returns how many."""
    return session.execute(
        delete(IdempotencyRecord)
        .where(IdempotencyRecord.expires_at <= now)
        .execution_options(synchronize_session=False)
    ).rowcount
