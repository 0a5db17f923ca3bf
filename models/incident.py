from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, id_column

HOSPITAL_VALUES = ("conveyed", "declined", "not_required", "unknown")
NALOXONE_BY = ("ambulance", "police", "peer", "bystander", "hospital", "outreach", "other")
FOLLOW_UP_STATUSES = ("awaiting_contact", "contacted", "closed")
CLOSED_REASONS = (
    "contacted",
    "declined",
    "already_engaged",
    "in_custody",
    "in_hospital",
    "moved_away",
    "deceased",
    "unable_to_locate",
)


class Incident(Base):
    """One non-fatal overdose, with its follow-up (the 72-hour contact obligation) inline."""

    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("source_agency_id", "source_ref"),
        Index("ix_incidents_occurred_at_id", "occurred_at", "id"),
        Index("ix_incidents_person_id_occurred_at", "person_id", "occurred_at"),
        # The summary report reads a period's incidents from this index alone (index-only
        # scans): every column its figures and breakdowns use, after the occurred_at range.
        Index(
            "ix_incidents_occurred_at_report",
            "occurred_at",
            "id",
            "person_id",
            "source_agency_id",
            "postcode_district",
            "fu_status",
            "within_window",
            "first_contact_at",
            "contact_due_at",
            "person_sex",
            "person_age",
        ),
        # Incident lists page newest first on (occurred_at, id): filtered by follow-up status
        # (and overdue, which is awaiting_contact) or by assigned agency (also the outreach
        # scope), the keyset order must be the index order or PostgreSQL walks every incident.
        Index(
            "ix_incidents_fu_status_occurred_at_id_contact_due_at",
            "fu_status",
            "occurred_at",
            "id",
            "contact_due_at",  # overdue filter answered from the index
        ),
        Index(
            "ix_incidents_assigned_agency_id_occurred_at_id",
            "assigned_agency_id",
            "occurred_at",
            "id",
        ),
        Index("ix_incidents_fu_status_contact_due_at", "fu_status", "contact_due_at"),
        Index(
            "ix_incidents_assigned_agency_id_fu_status_contact_due_at",
            "assigned_agency_id",
            "fu_status",
            "contact_due_at",
        ),
        Index("ix_incidents_postcode_district_occurred_at", "postcode_district", "occurred_at"),
        Index("ix_incidents_source_agency_id_occurred_at", "source_agency_id", "occurred_at"),
        # The huddle agenda's "new" section: everything never discussed.
        Index(
            "ix_incidents_undiscussed_reported_at",
            "reported_at",
            postgresql_where=text("discussed_at_huddle_id IS NULL"),
            sqlite_where=text("discussed_at_huddle_id IS NULL"),
        ),
        Index("ix_incidents_discussed_at_huddle_id", "discussed_at_huddle_id"),
        # The agenda's "follow_ups" section: discussed and still awaiting contact. Exact, so
        # a partner's back-fill of thousands of undiscussed incidents awaiting contact is not
        # read (and filtered out) by every agenda.
        Index(
            "ix_incidents_discussed_awaiting_contact_due_at",
            "contact_due_at",
            postgresql_where=text(
                "discussed_at_huddle_id IS NOT NULL AND fu_status = 'awaiting_contact'"
            ),
            sqlite_where=text(
                "discussed_at_huddle_id IS NOT NULL AND fu_status = 'awaiting_contact'"
            ),
        ),
    )

    id: Mapped[str] = id_column()
    source_agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"))
    source_ref: Mapped[str | None] = mapped_column(String(100))
    created_by_type: Mapped[str] = mapped_column(String(10))  # "user" | "client"
    created_by_id: Mapped[str] = mapped_column(String(36))
    request_hash: Mapped[str | None] = mapped_column(String(64))

    occurred_at: Mapped[datetime]
    reported_at: Mapped[datetime]
    contact_due_at: Mapped[datetime]

    location_description: Mapped[str | None] = mapped_column(String(500))
    postcode: Mapped[str | None] = mapped_column(String(8))
    postcode_district: Mapped[str | None] = mapped_column(String(4))
    naloxone_administered: Mapped[bool | None]
    naloxone_administered_by: Mapped[str | None] = mapped_column(String(20))
    hospital: Mapped[str | None] = mapped_column(String(20))
    # The person block exactly as the partner submitted it (returned on read).
    person_submitted: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    person_id: Mapped[str | None] = mapped_column(ForeignKey("persons.id"))
    # Copies of the person's sex and of their age at the overdose (whole years to its UTC
    # date; null without a person or a date of birth), for the summary report: banding a
    # year's incidents by them then needs no join to every person. Kept by the database
    # (migration 0008): an incident takes them from its person when inserted or moved to
    # another person or date, and a person's corrected sex or date of birth is copied to all
    # of their incidents. A writer gives them only for a person not yet visible to the
    # database's look-up (intake's new person, written in the incident's own statement).
    person_sex: Mapped[str | None] = mapped_column(String(10))
    person_age: Mapped[int | None]
    notes: Mapped[str | None] = mapped_column(Text)

    # Follow-up
    fu_status: Mapped[str] = mapped_column(String(20), default="awaiting_contact")
    first_contact_at: Mapped[datetime | None]
    within_window: Mapped[bool | None]
    assigned_agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"))
    closed_reason: Mapped[str | None] = mapped_column(String(30))
    closed_at: Mapped[datetime | None]

    # Huddle
    discussed_at_huddle_id: Mapped[str | None] = mapped_column(String(36))
    discussed_at: Mapped[datetime | None]

    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class IncidentSubstance(Base):
    """One substance named on an incident (trimmed, lower-cased), in submitted order."""

    __tablename__ = "incident_substances"
    __table_args__ = (
        Index("ix_incident_substances_substance", "substance"),
        # The summary report counts a period's substances with one index-only range scan.
        Index(
            "ix_incident_substances_occurred_at_incident_id_substance",
            "occurred_at",
            "incident_id",
            "substance",
        ),
    )

    incident_id: Mapped[str] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(primary_key=True)
    substance: Mapped[str] = mapped_column(String(100))
    # A copy of the incident's occurred_at, kept by database triggers (migration 0002) on
    # insert and whenever the incident's occurred_at changes; never set it here.
    occurred_at: Mapped[datetime | None]
