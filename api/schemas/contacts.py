"""Wire schemas for contact attempts (API.md "Contact attempts")."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from api.schemas.common import RequestModel, ResponseModel
from api.schemas.incidents import Text, Timestamp
from models.contact import ACTIONS, METHODS, OUTCOMES, REFERRALS

# One vocabulary, defined beside the model: the wire accepts exactly what is stored.
Method = Literal[METHODS]
Outcome = Literal[OUTCOMES]
Action = Literal[ACTIONS]
Referral = Literal[REFERRALS]


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
