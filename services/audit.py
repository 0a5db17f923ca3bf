"""The append-only, hash-chained audit log.

Services call :func:`record` for every read of personal data, every refused read, every
change, export, merge and login failure. Entries are queued on the session and written at
the outermost commit (``before_commit``) with the SHA-256 of their own content. They are
chained as their transaction commits: on PostgreSQL by a deferred trigger inside COMMIT
(migrations 0005 and 0007), under an advisory lock but with no client round trip inside it;
on SQLite, which holds its write lock for the whole transaction, here before the commit.
Either way a committed entry always has its link in the chain (``audit_chain``): its place
(``chain_seq``), ``prev_hash`` and ``hash`` = SHA-256(prev_hash + content_hash);
``chain_seq`` is the link's key and an entry has one link, so the chain never forks.
Entries never hold personal data: ids, kinds and codes only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.audit import AuditChainLink, AuditEntry
from models.base import new_id
from services.canonical import sorted_json, utc_text
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
        at = utc_text(at)
    return sorted_json(
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
        default=str,
        ensure_ascii=True,
    )


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
    if session.get_bind().dialect.name == "postgresql":
        # The deferred trigger audit_log_seal links the rows inside COMMIT.
        insert_rows_at_commit(session, AuditEntry.__table__, rows)
        return
    # SQLite: this transaction already holds the database's write lock (BEGIN IMMEDIATE), so
    # nobody can write an entry or a link between this read and the commit. The entries get
    # their seq here, past every seq a link names (a removed entry's is never reused).
    links = []
    pos, prev, seq = session.execute(_SQLITE_CHAIN_END).one()
    for values in rows:
        pos, seq = pos + 1, seq + 1
        values["seq"] = seq
        digest = chain_hash(prev, values["content_hash"])
        links.append({"chain_seq": pos, "entry_seq": seq, "prev_hash": prev, "hash": digest})
        prev = digest
    insert_rows_at_commit(session, AuditEntry.__table__, rows)
    insert_rows_at_commit(session, AuditChainLink.__table__, links)


def _last_link(column):
    return select(column).order_by(AuditChainLink.chain_seq.desc()).limit(1).scalar_subquery()


# The chain's last link (0 and the genesis hash when there is none) and the highest entry
# seq in use, by an entry or by a link.
_SQLITE_CHAIN_END = select(
    func.coalesce(_last_link(AuditChainLink.chain_seq), 0),
    func.coalesce(_last_link(AuditChainLink.hash), GENESIS_HASH),
    func.max(
        func.coalesce(select(func.max(AuditEntry.seq)).scalar_subquery(), 0),
        func.coalesce(select(func.max(AuditChainLink.entry_seq)).scalar_subquery(), 0),
    ),
)


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


def _iter_links(
    session: Session, batch: int = 5000
) -> Iterator[tuple[AuditChainLink, AuditEntry | None]]:
    """The chain's links in order, each with its entry (None when the entry is gone)."""
    last = -1
    while True:
        rows = session.execute(
            select(AuditChainLink, AuditEntry)
            .outerjoin(AuditEntry, AuditEntry.seq == AuditChainLink.entry_seq)
            .where(AuditChainLink.chain_seq > last)
            .order_by(AuditChainLink.chain_seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1][0].chain_seq
        session.expunge_all()


def _expected_hash(entry: AuditEntry, prev: str) -> str | None:
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
    if entry.content_hash is None:
        return legacy_hash(values, prev)
    if content_hash(values) != entry.content_hash:
        return None
    return chain_hash(prev, entry.content_hash)


def verify_chain(session: Session) -> VerifyResult:
    """Recompute every hash in chain order; report the first entry altered, removed or
    reordered, and any committed entry that is not in the chain at all."""
    prev = GENESIS_HASH
    checked = 0
    removed: int | None = None  # the seq of an entry whose link remains but it is gone
    for link, entry in _iter_links(session):
        if link.prev_hash != prev:
            seq, entry_id = (entry.seq, entry.id) if entry else (link.entry_seq, None)
            return VerifyResult(
                False,
                checked,
                seq,
                entry_id,
                "chain broken: an entry before it was removed or reordered",
            )
        if entry is None:
            removed = link.entry_seq if removed is None else removed
            prev = link.hash
            continue
        if removed is not None:
            return VerifyResult(
                False,
                checked,
                entry.seq,
                entry.id,
                f"chain broken: the entry before it (seq={removed}) was removed",
            )
        if _expected_hash(entry, prev) != link.hash:
            return VerifyResult(False, checked, entry.seq, entry.id, "entry altered: hash mismatch")
        prev = link.hash
        checked += 1
    if removed is not None:
        return VerifyResult(
            False, checked, removed, None, "entry removed: the chain's last entry is gone"
        )
    loose = session.execute(
        select(AuditEntry.seq, AuditEntry.id)
        .where(
            ~select(AuditChainLink.entry_seq)
            .where(AuditChainLink.entry_seq == AuditEntry.seq)
            .exists()
        )
        .order_by(AuditEntry.seq)
        .limit(1)
    ).one_or_none()
    if loose is not None:
        return VerifyResult(
            False, checked, loose.seq, loose.id, "entry outside the chain: it was never sealed"
        )
    return VerifyResult(True, checked)
