from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, id_column


class Huddle(Base):
    """A held morning meeting: its agenda frozen at the moment it was held."""

    __tablename__ = "huddles"

    id: Mapped[str] = id_column()
    date: Mapped[date] = mapped_column(unique=True)
    held_at: Mapped[datetime]
    held_by_id: Mapped[str] = mapped_column(String(36))
    chair_name: Mapped[str | None] = mapped_column(String(200))
    cutoff_at: Mapped[datetime]
    previous_huddle_date: Mapped[date | None]
    next_huddle_date: Mapped[date | None]
    created_at: Mapped[datetime]


class HuddleItem(Base):
    __tablename__ = "huddle_items"
    __table_args__ = (UniqueConstraint("huddle_id", "incident_id"),)

    id: Mapped[str] = id_column()
    huddle_id: Mapped[str] = mapped_column(ForeignKey("huddles.id", ondelete="CASCADE"))
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    section: Mapped[str] = mapped_column(String(20))  # "new" | "follow_ups"
    position: Mapped[int]
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONType)
    discussed: Mapped[bool] = mapped_column(default=False)
    discussed_at: Mapped[datetime | None]
    assigned_agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"))
    notes: Mapped[str | None] = mapped_column(Text)
    updated_by_id: Mapped[str | None] = mapped_column(String(36))
