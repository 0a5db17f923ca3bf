"""Wire schemas for people (API.md "People")."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from api.schemas.common import RequestModel
from api.schemas.incidents import IncidentSummary, Text


class PossibleDuplicateOut(BaseModel):
    id: str
    reason: str


class SafetyPlanSummary(BaseModel):
    version: int
    risk_level: str
    lead_agency_id: str | None
    review_on: date | None


class PersonSummaryOut(BaseModel):
    id: str
    chi: str | None
    given_name: str | None
    family_name: str | None
    date_of_birth: date | None
    sex: str | None
    postcode: str | None
    incident_count: int


class PersonOut(BaseModel):
    id: str
    chi: str | None
    given_name: str | None
    family_name: str | None
    date_of_birth: date | None
    sex: str | None
    postcode: str | None
    phone: str | None
    created_at: datetime
    updated_at: datetime
    incident_count: int
    incidents: list[IncidentSummary] = Field(description="newest first")
    possible_duplicates: list[PossibleDuplicateOut]
    safety_plan: SafetyPlanSummary | None


class MergeIn(RequestModel):
    duplicate_id: Text = Field(min_length=1, max_length=36)


class DismissIn(RequestModel):
    candidate_id: Text = Field(min_length=1, max_length=36)
