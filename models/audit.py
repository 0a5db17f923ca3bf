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
    # The chain. ``content_hash`` is the SHA-256 of the entry's canonical JSON, computed when
    # the entry is recorded. At the commit that makes the entry visible it is given its place
    # in the chain: ``chain_seq`` (commit order, which can differ from ``seq``), ``prev_hash``
    # (the hash of the entry before it) and ``hash`` = SHA-256(prev_hash + content_hash). On
    # PostgreSQL a deferred trigger (migration 0005) does that inside COMMIT under an advisory
    # lock; on SQLite, which holds its write lock for the whole transaction, services.audit
    # does it before the commit. Entries written before 0005 have no content_hash; their hash
    # covers their canonical JSON including prev_hash (services.audit.legacy_hash).
    # prev_hash and chain_seq are unique: two writers can never both extend the same entry.
    content_hash: Mapped[str | None] = mapped_column(String(64))
    chain_seq: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), unique=True
    )
    prev_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    hash: Mapped[str | None] = mapped_column(String(64))
