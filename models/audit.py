from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType


class AuditEntry(Base):
    """One append-only, hash-chained audit record. Never holds personal data itself."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_subject_id_seq", "subject_id", "seq"),
        Index("ix_audit_log_actor_id_seq", "actor_id", "seq"),
        Index("ix_audit_log_at_seq", "at", "seq"),
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(String(36), unique=True)
    at: Mapped[datetime]
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(30))
    subject_type: Mapped[str | None] = mapped_column(String(30))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(100))
    client_addr: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The SHA-256 of the entry's canonical JSON (services.audit.content_hash), computed when
    # the entry is recorded. Its place in the chain is an AuditChainLink, written at the
    # commit that makes the entry visible. Entries written before migration 0005 have none:
    # their link's hash covers their canonical JSON including prev_hash
    # (services.audit.legacy_hash).
    content_hash: Mapped[str | None] = mapped_column(String(64))


class AuditChainLink(Base):
    """An audit entry's place in the hash chain: ``chain_seq`` (commit order, which can
    differ from the entry's ``seq``), ``prev_hash`` (the hash of the link before it) and
    ``hash`` = SHA-256(prev_hash + the entry's content_hash).

    Written when the entry's transaction commits: on PostgreSQL by a deferred trigger inside
    COMMIT, under an advisory lock (migrations 0005 and 0007); on SQLite, which holds its
    write lock for the whole transaction, by services.audit just before the commit. A narrow
    table of its own, so that sealing an entry is one small insert instead of a second
    version of the wide entry row with an entry in each of its indexes (BENCHMARKS.md,
    eleventh round). ``chain_seq`` and ``entry_seq`` are unique: the chain never forks and an
    entry has one place in it."""

    __tablename__ = "audit_chain"

    chain_seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    entry_seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), unique=True
    )
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
