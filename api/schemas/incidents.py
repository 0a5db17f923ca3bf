"""Wire schemas for incidents (API.md "Incidents")."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    StrictBool,
    StrictStr,
)

from api.schemas.common import RequestModel, ResponseModel
from models.incident import (
    CLOSED_REASONS,
    FOLLOW_UP_STATUSES,
    HOSPITAL_VALUES,
    NALOXONE_BY,
    Incident,
)
from models.person import SEXES
from services.follow_ups import is_overdue

_ISO_START = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _text_only(value: Any) -> Any:
    """Timestamps and dates come as RFC 3339 / ISO 8601 text, never as numbers."""
    if not isinstance(value, (str, datetime, date)):
        raise ValueError("must be an RFC 3339 string")
    if isinstance(value, str) and not _ISO_START.match(value):
        raise ValueError("must be an RFC 3339 string")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _plausible(value: datetime | date) -> datetime | date:
    if not 1900 <= value.year <= 2999:
        raise ValueError("must be between the years 1900 and 2999")
    return value


Text = Annotated[StrictStr, AfterValidator(_no_nul)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_text_only), AfterValidator(_plausible)]
StrictDate = Annotated[date, BeforeValidator(_text_only), AfterValidator(_plausible)]
# Vocabularies come from the models, so the wire and the domain cannot drift apart.
Hospital = Literal[HOSPITAL_VALUES]
Sex = Literal[SEXES]
NaloxoneBy = Literal[NALOXONE_BY]
FollowUpStatus = Literal[FOLLOW_UP_STATUSES]
ClosedReason = Literal[CLOSED_REASONS]


class LocationIn(RequestModel):
    description: Text | None = Field(default=None, max_length=500)
    postcode: Text | None = Field(
        default=None, max_length=16, description="a UK postcode, e.g. DD3 7AA"
    )


class PersonIn(RequestModel):
    chi: Text | None = Field(default=None, max_length=20, description="10 digits, modulus 11 or 10")
    given_name: Text | None = Field(default=None, max_length=100)
    family_name: Text | None = Field(default=None, max_length=100)
    date_of_birth: StrictDate | None = None
    sex: Sex | None = None
    postcode: Text | None = Field(default=None, max_length=16)
    phone: Text | None = Field(default=None, max_length=30, pattern=r"^\+?[0-9 ()-]{3,30}$")


class IncidentCreate(RequestModel):
    source_ref: Text | None = Field(default=None, min_length=1, max_length=100)
    source_agency_id: Text | None = Field(
        default=None,
        max_length=36,
        description="users only (default: the user's agency); partners record for their own",
    )
    occurred_at: Timestamp
    reported_at: Timestamp | None = None
    location: LocationIn | None = None
    substances: list[Annotated[Text, Field(max_length=100)]] | None = Field(
        default=None, max_length=50
    )
    naloxone_administered: StrictBool | None = None
    naloxone_administered_by: NaloxoneBy | None = None
    hospital: Hospital | None = None
    person: PersonIn | None = None
    notes: Text | None = Field(default=None, max_length=5000)


class IncidentBatch(RequestModel):
    incidents: list[Any] = Field(min_length=1, max_length=500)


class FollowUpClose(RequestModel):
    status: Literal["closed"]
    closed_reason: ClosedReason


class IncidentUpdate(RequestModel):
    occurred_at: Timestamp | None = None
    reported_at: Timestamp | None = None
    location: LocationIn | None = None
    substances: list[Annotated[Text, Field(max_length=100)]] | None = Field(
        default=None, max_length=50
    )
    naloxone_administered: StrictBool | None = None
    naloxone_administered_by: NaloxoneBy | None = None
    hospital: Hospital | None = None
    notes: Text | None = Field(default=None, max_length=5000)
    assigned_agency_id: Text | None = Field(default=None, max_length=36)
    person_id: Text | None = Field(default=None, max_length=36)
    follow_up: FollowUpClose | None = None


class FollowUpOut(BaseModel):
    status: FollowUpStatus
    overdue: bool
    first_contact_at: datetime | None
    within_window: bool | None
    assigned_agency_id: str | None
    closed_reason: str | None
    closed_at: datetime | None = None


class LocationOut(BaseModel):
    description: str | None
    postcode: str | None
    postcode_district: str | None


class IncidentOut(ResponseModel):
    id: str
    source_agency_id: str
    source_ref: str | None
    occurred_at: datetime
    reported_at: datetime
    contact_due_at: datetime
    person_id: str | None
    follow_up: FollowUpOut
    discussed_at_huddle_id: str | None
    location: LocationOut | None
    substances: list[str]
    naloxone_administered: bool | None
    naloxone_administered_by: str | None
    hospital: str | None
    person: dict[str, Any] | None = Field(description="the person block as submitted (normalised)")
    notes: str | None
    created_at: datetime
    updated_at: datetime


class IncidentSummary(BaseModel):
    """An incident in a person's history."""

    id: str
    source_agency_id: str
    occurred_at: datetime
    reported_at: datetime
    contact_due_at: datetime
    postcode_district: str | None
    substances: list[str]
    follow_up: FollowUpOut


class BatchResult(BaseModel):
    index: int
    status: int
    id: str | None = None
    error: dict[str, Any] | None = None


class BatchOut(BaseModel):
    results: list[BatchResult]


def follow_up_out(incident: Incident, now: datetime) -> FollowUpOut:
    return FollowUpOut(
        status=incident.fu_status,
        overdue=is_overdue(incident, now),
        first_contact_at=incident.first_contact_at,
        within_window=incident.within_window,
        assigned_agency_id=incident.assigned_agency_id,
        closed_reason=incident.closed_reason,
        closed_at=incident.closed_at,
    )


def incident_out(incident: Incident, substances: list[str], now: datetime) -> IncidentOut:
    location = None
    if incident.location_description is not None or incident.postcode is not None:
        location = LocationOut(
            description=incident.location_description,
            postcode=incident.postcode,
            postcode_district=incident.postcode_district,
        )
    return IncidentOut(
        id=incident.id,
        source_agency_id=incident.source_agency_id,
        source_ref=incident.source_ref,
        occurred_at=incident.occurred_at,
        reported_at=incident.reported_at,
        contact_due_at=incident.contact_due_at,
        person_id=incident.person_id,
        follow_up=follow_up_out(incident, now),
        discussed_at_huddle_id=incident.discussed_at_huddle_id,
        location=location,
        substances=substances,
        naloxone_administered=incident.naloxone_administered,
        naloxone_administered_by=incident.naloxone_administered_by,
        hospital=incident.hospital,
        person=incident.person_submitted,
        notes=incident.notes,
        created_at=incident.created_at,
        updated_at=incident.updated_at,
    )


def incident_summary(incident: Incident, substances: list[str], now: datetime) -> IncidentSummary:
    return IncidentSummary(
        id=incident.id,
        source_agency_id=incident.source_agency_id,
        occurred_at=incident.occurred_at,
        reported_at=incident.reported_at,
        contact_due_at=incident.contact_due_at,
        postcode_district=incident.postcode_district,
        substances=substances,
        follow_up=follow_up_out(incident, now),
    )
