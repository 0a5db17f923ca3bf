"""Wire schemas for contact attempts (API.md "Contact attempts")."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from api.schemas.common import RequestModel, ResponseModel
from api.schemas.incidents import Text, Timestamp

Method = Literal[
    "phone", "text", "home_visit", "street", "hospital", "at_service", "letter", "via_partner"
]
Outcome = Literal[
    "contacted",
    "no_answer",
    "not_found",
    "message_left",
    "declined",
    "in_hospital",
    "in_custody",
    "deceased",
]
Action = Literal[
    "naloxone_supplied", "harm_reduction_advice", "injecting_equipment", "wound_care", "bbv_test"
]
Referral = Literal[
    "drug_treatment",
    "same_day_prescribing",
    "housing",
    "mental_health",
    "womens_services",
    "children_and_families",
    "adult_protection",
]


class ContactCreate(RequestModel):
    attempted_at: Timestamp
    method: Method
    outcome: Outcome
    notes: Text | None = Field(default=None, max_length=5000)
    actions: list[Action] = Field(default_factory=list, max_length=10)
    referrals: list[Referral] = Field(default_factory=list, max_length=10)


class ContactOut(ResponseModel):
    id: str
    incident_id: str
    attempted_at: datetime
    method: str
    outcome: str
    notes: str | None
    actions: list[str]
    referrals: list[str]
    recorded_by_type: str
    recorded_by_id: str
    agency_id: str | None
    created_at: datetime
