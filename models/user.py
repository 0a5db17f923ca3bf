from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, id_column

USER_ROLES = ("admin", "coordinator", "outreach", "analyst")


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = id_column()
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"), index=True)
    display_name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    # Bumped on deactivation or password change: tokens carry it and die when it moves.
    token_version: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class LoginFailure(Base):
    """One failed login, kept for throttling (per username and per client address)."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_username_at", "username", "at"),
        Index("ix_login_failures_client_addr_at", "client_addr", "at"),
    )

    id: Mapped[str] = id_column()
    username: Mapped[str] = mapped_column(String(150))
    client_addr: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
