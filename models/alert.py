from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, id_column

ALERT_KINDS = (
    "contact_overdue",
    "contact_due_soon",
    "repeat_overdose",
    "action_overdue",
    "cluster",
)
ALERT_STATES = ("open", "acknowledged")


class Alert(Base):
    """Raised once: ``dedupe_key`` is unique, so a second sweep's insert is refused."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_raised_at_id", "raised_at", "id"),
        Index("ix_alerts_incident_id", "incident_id"),
        Index("ix_alerts_person_id", "person_id"),
        Index("ix_alerts_kind_state", "kind", "state"),
    )

    id: Mapped[str] = id_column()
    kind: Mapped[str] = mapped_column(String(30))
    state: Mapped[str] = mapped_column(String(20), default="open")
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    raised_at: Mapped[datetime]
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"))
    person_id: Mapped[str | None] = mapped_column(ForeignKey("persons.id"))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[str | None] = mapped_column(String(36))
