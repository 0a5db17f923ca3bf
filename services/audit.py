"""The append-only, hash-chained audit log.

Services call :func:`record` for every read of personal data, every refused read, every
change, export, merge and login failure. Entries are queued on the session and written at
the outermost commit (``before_commit``) with the SHA-256 of their own content. They are
chained as their transaction commits: on PostgreSQL by a deferred trigger inside COMMIT
(migration 0005), under an advisory lock but with no client round trip inside it; on SQLite,
which holds its write lock for the whole transaction, here before the commit. Either way a
committed entry always has its place in the chain (``chain_seq``), ``prev_hash`` and
``hash`` = SHA-256(prev_hash + content_hash); ``prev_hash`` and ``chain_seq`` are unique, so
the chain never forks. Entries never hold personal data: ids, kinds and codes only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.audit import AuditEntry
from models.base import new_id
from services.db import before_commit_writes, insert_rows_at_commit
from services.principal import Principal

GENESIS_HASH = "0" * 64
_PENDING = "audit_pending"
_CONTEXT = "audit_context"

ACTIONS = (
    "read",
    "denied",
    "create",
    "update",
    "delete",
    "merge",
    "export",
    "login",
    "login_failed",
    "acknowledge",
)


@dataclass
class AuditContext:
    request_id: str | None = None
    client_addr: str | None = None


@dataclass
class _Pending:
    values: dict[str, Any]
    survive_rollback: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def set_context(session: Session, *, request_id: str | None, client_addr: str | None) -> None:
    session.info[_CONTEXT] = AuditContext(request_id=request_id, client_addr=client_addr)


def record(
    session: Session,
    *,
    actor: Principal | None,
    action: str,
    at: datetime,
    subject_type: str | None = None,
    subject_id: str | None = None,
    details: dict[str, Any] | None = None,
    survive_rollback: bool | None = None,
) -> None:
    """Queue one audit entry; it is written and chained when the session commits.

    ``denied`` and ``login_failed`` entries survive a rolled-back request by default.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    ctx: AuditContext = session.info.get(_CONTEXT) or AuditContext()
    values = {
        "id": new_id(),
        "at": at.astimezone(UTC),
        "actor_type": actor.kind if actor else "anonymous",
        "actor_id": actor.id if actor else None,
        "action": action,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "request_id": ctx.request_id,
        "client_addr": ctx.client_addr,
        "details": details or None,
    }
    if survive_rollback is None:
        survive_rollback = action in ("denied", "login_failed")
    session.info.setdefault(_PENDING, []).append(_Pending(values, survive_rollback))


def record_many(
    session: Session,
    *,
    actor: Principal | None,
    action: str,
    at: datetime,
    subject_type: str,
    subject_ids: list[str],
    details: dict[str, Any] | None = None,
) -> None:
    for subject_id in subject_ids:
        record(
            session,
            actor=actor,
            action=action,
            at=at,
            subject_type=subject_type,
            subject_id=subject_id,
            details=details,
        )


def keep_only_survivors(session: Session) -> bool:
    """After a rollback: drop queued entries except the ones that must survive.

    Returns True when something remains to be committed.
    """
    pending: list[_Pending] = session.info.get(_PENDING, [])
    survivors = [p for p in pending if p.survive_rollback]
    session.info[_PENDING] = survivors
    return bool(survivors)


def has_pending(session: Session) -> bool:
    return bool(session.info.get(_PENDING))


def discard_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _canonical(values: dict[str, Any], **extra: Any) -> bytes:
    at = values["at"]
    if isinstance(at, datetime):
        at = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(
        {
            "id": values["id"],
            "at": at,
            "actor_type": values["actor_type"],
            "actor_id": values["actor_id"],
            "action": values["action"],
            "subject_type": values["subject_type"],
            "subject_id": values["subject_id"],
            "request_id": values["request_id"],
            "client_addr": values["client_addr"],
            "details": values["details"],
            **extra,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    ).encode()


def content_hash(values: dict[str, Any]) -> str:
    """SHA-256 of an entry's canonical JSON (microsecond times survive both backends)."""
    return hashlib.sha256(_canonical(values)).hexdigest()


def chain_hash(prev_hash: str, content: str) -> str:
    """The chain link; the PostgreSQL trigger computes the same in SQL."""
    return hashlib.sha256((prev_hash + content).encode()).hexdigest()


def legacy_hash(values: dict[str, Any], prev_hash: str) -> str:
    """How entries written before migration 0005 were hashed (prev_hash inside the JSON)."""
    return hashlib.sha256(_canonical(values, prev_hash=prev_hash)).hexdigest()


def _write_pending(session: Session) -> None:
    pending: list[_Pending] = session.info.pop(_PENDING, [])
    if not pending:
        return
    rows = []
    for item in pending:
        values = dict(item.values)
        values["content_hash"] = content_hash(values)
        rows.append(values)
    if session.get_bind().dialect.name != "postgresql":
        # SQLite: this transaction already holds the database's write lock (BEGIN
        # IMMEDIATE), so nobody can chain between this read and the commit.
        last = session.execute(
            select(AuditEntry.chain_seq, AuditEntry.hash)
            .where(AuditEntry.chain_seq.is_not(None))
            .order_by(AuditEntry.chain_seq.desc())
            .limit(1)
        ).one_or_none()
        pos, prev = (last.chain_seq, last.hash) if last else (0, GENESIS_HASH)
        for values in rows:
            pos += 1
            values["chain_seq"] = pos
            values["prev_hash"] = prev
            values["hash"] = prev = chain_hash(prev, values["content_hash"])
    # PostgreSQL: the deferred trigger audit_log_seal chains the rows inside COMMIT.
    insert_rows_at_commit(session, AuditEntry.__table__, rows)


# Run at the real (outermost) commit only, not when a SAVEPOINT is released, so the chain
# lock is held briefly and entries survive a savepoint rolled back later. The rows go with
# the session's other writes at commit (services.db.write_at_commit): on PostgreSQL, one
# statement for them all.
before_commit_writes(_write_pending)


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    first_bad_id: str | None = None
    reason: str | None = None


def _iter_entries(session: Session, batch: int = 5000) -> Iterator[AuditEntry]:
    last = -1
    while True:
        rows = list(
            session.execute(
                select(AuditEntry)
                .where(AuditEntry.chain_seq > last)
                .order_by(AuditEntry.chain_seq)
                .limit(batch)
            ).scalars()
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].chain_seq
        session.expunge_all()


def verify_chain(session: Session) -> VerifyResult:
    """Recompute every hash in chain order; report the first entry altered, removed or
    reordered, and any committed entry that is not in the chain at all."""
    prev = GENESIS_HASH
    checked = 0
    for entry in _iter_entries(session):
        values = {
            "id": entry.id,
            "at": entry.at,
            "actor_type": entry.actor_type,
            "actor_id": entry.actor_id,
            "action": entry.action,
            "subject_type": entry.subject_type,
            "subject_id": entry.subject_id,
            "request_id": entry.request_id,
            "client_addr": entry.client_addr,
            "details": entry.details,
        }
        if entry.prev_hash != prev:
            return VerifyResult(
                False,
                checked,
                entry.seq,
                entry.id,
                "chain broken: an entry before it was removed or reordered",
            )
        if entry.content_hash is None:
            expected = legacy_hash(values, prev)
        elif content_hash(values) != entry.content_hash:
            expected = None
        else:
            expected = chain_hash(prev, entry.content_hash)
        if expected != entry.hash:
            return VerifyResult(False, checked, entry.seq, entry.id, "entry altered: hash mismatch")
        prev = entry.hash
        checked += 1
    loose = session.execute(
        select(AuditEntry.seq, AuditEntry.id)
        .where(AuditEntry.chain_seq.is_(None))
        .order_by(AuditEntry.seq)
        .limit(1)
    ).one_or_none()
    if loose is not None:
        return VerifyResult(
            False, checked, loose.seq, loose.id, "entry outside the chain: it was never sealed"
        )
    return VerifyResult(True, checked)
