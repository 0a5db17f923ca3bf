from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, id_column


class IdempotencyRecord(Base):
    """A caller's Idempotency-Key with the answer it got, written with the work's commit
    (services.idempotency). Only rows left by earlier versions, which committed an in-flight
    marker before the work, have a null status_code; lease_expires_at matters only for
    those (until it, such a key is still in flight)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("principal_key", "key"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    id: Mapped[str] = id_column()
    principal_key: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(500))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None]
    response_body: Mapped[Any | None] = mapped_column(JSONType)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSONType)
    lease_expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
