"""Wire types of the daily huddle: the agenda, the held meeting, discussion outcomes."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, StrictBool, StrictStr

from api.schemas.common import RequestModel

_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_iso_date(value: Any) -> date:
    """A calendar date written exactly ``YYYY-MM-DD`` (no numbers, no timestamps)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("expected a date written YYYY-MM-DD")


IsoDate = Annotated[date, BeforeValidator(parse_iso_date)]

# Huddle dates go through the holiday calendar: keep them within sensible years.
HUDDLE_YEARS = (2000, 2099)


def parse_huddle_date(value: Any) -> date:
    day = parse_iso_date(value)
    if not HUDDLE_YEARS[0] <= day.year <= HUDDLE_YEARS[1]:
        raise ValueError(f"a huddle date must be between {HUDDLE_YEARS[0]} and {HUDDLE_YEARS[1]}")
    return day


HuddleDate = Annotated[date, BeforeValidator(parse_huddle_date)]


class HuddleCreate(RequestModel):
    date: HuddleDate
    chair_name: StrictStr | None = Field(default=None, min_length=1, max_length=200)


class DiscussionIn(RequestModel):
    """Only the fields sent are changed. ``assigned_agency_id`` becomes the incident's
    follow-up agency (giving that agency's outreach workers access)."""

    discussed: StrictBool = True
    assigned_agency_id: StrictStr | None = Field(default=None, max_length=36)
    notes: StrictStr | None = Field(default=None, max_length=10_000)


class AgencyRef(BaseModel):
    id: str
    name: str


class Location(BaseModel):
    description: str | None = None
    postcode: str | None = None
    postcode_district: str | None = None


class FollowUp(BaseModel):
    status: str
    overdue: bool
    first_contact_at: datetime | None = None
    within_window: bool | None = None
    assigned_agency_id: str | None = None
    closed_reason: str | None = None


class PersonSummary(BaseModel):
    id: str
    name: str | None = None
    age: int | None = None
    incidents_30d: int
    incidents_365d: int
    risk_level: str | None = None


class AgendaItem(BaseModel):
    incident_id: str
    occurred_at: datetime
    reported_at: datetime
    contact_due_at: datetime
    hours_remaining: float = Field(description="hours until contact_due_at; negative when overdue")
    overdue: bool
    due_before_next_huddle: bool
    source_agency: AgencyRef
    substances: list[str]
    location: Location
    follow_up: FollowUp
    person: PersonSummary | None = None
    discussed_at_huddle_id: str | None = None
    # Outcome fields (present on held huddles).
    section: str | None = Field(default=None, description="new, follow_ups or late")
    position: int | None = None
    discussed: bool | None = None
    discussed_at: datetime | None = None
    assigned_agency_id: str | None = None
    notes: str | None = None


class Agenda(BaseModel):
    date: date
    working_day: bool
    cutoff_at: datetime
    previous_huddle_date: date | None
    next_huddle_date: date | None
    held: bool
    huddle_id: str | None
    held_at: datetime | None = None
    chair_name: str | None = None
    generated_at: datetime
    new: list[AgendaItem]
    follow_ups: list[AgendaItem]
    late: list[AgendaItem] = Field(
        default_factory=list, description="added after the huddle was held"
    )


class HuddleOut(Agenda):
    id: str
    held_by_id: str


class HuddleSummary(BaseModel):
    id: str
    date: date
    held_at: datetime
    held_by_id: str
    chair_name: str | None
    cutoff_at: datetime
    previous_huddle_date: date | None
    next_huddle_date: date | None
    item_count: int
    discussed_count: int
