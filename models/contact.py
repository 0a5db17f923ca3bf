from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, id_column

METHODS = (
    "phone",
    "text",
    "home_visit",
    "street",
    "hospital",
    "at_service",
    "letter",
    "via_partner",
)
OUTCOMES = (
    "contacted",
    "no_answer",
    "not_found",
    "message_left",
    "declined",
    "in_hospital",
    "in_custody",
    "deceased",
)
ACTIONS = (
    "naloxone_supplied",
    "harm_reduction_advice",
    "injecting_equipment",
    "wound_care",
    "bbv_test",
)
REFERRALS = (
    "drug_treatment",
    "same_day_prescribing",
    "housing",
    "mental_health",
    "womens_services",
    "children_and_families",
    "adult_protection",
)


class ContactAttempt(Base):
    __tablename__ = "contact_attempts"
    __table_args__ = (
        Index("ix_contact_attempts_incident_id_attempted_at", "incident_id", "attempted_at"),
        # The summary report goes from a period's incidents to their attempts' codes: the
        # attempt ids by incident without reading the table.
        Index("ix_contact_attempts_incident_id_id", "incident_id", "id"),
    )

    id: Mapped[str] = id_column()
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"))
    attempted_at: Mapped[datetime]
    method: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(String(20))
    notes: Mapped[str | None] = mapped_column(Text)
    recorded_by_type: Mapped[str] = mapped_column(String(10))
    recorded_by_id: Mapped[str] = mapped_column(String(36))
    agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"))
    created_at: Mapped[datetime]


class ContactCode(Base):
    """An action taken or a referral made during a contact attempt (one row each, for reports)."""

    __tablename__ = "contact_codes"
    __table_args__ = (
        Index("ix_contact_codes_kind_code", "kind", "code"),
        # The summary report counts a period's codes with one index-only range scan.
        Index("ix_contact_codes_occurred_at_kind_code", "occurred_at", "kind", "code"),
    )

    contact_id: Mapped[str] = mapped_column(
        ForeignKey("contact_attempts.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)  # "action" | "referral"
    code: Mapped[str] = mapped_column(String(30), primary_key=True)
    # A copy of the incident's occurred_at, kept by database triggers (migration 0002) on
    # insert and whenever the incident's occurred_at changes; never set it here.
    occurred_at: Mapped[datetime | None]
