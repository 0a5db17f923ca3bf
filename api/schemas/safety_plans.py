"""Wire types of versioned safety plans."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field, StrictBool, StrictStr

from api.schemas.common import RequestModel
from api.schemas.huddles import IsoDate
from models.safety_plan import RISK_FACTORS, RISK_LEVELS

RiskLevel = Literal[RISK_LEVELS]
RiskFactor = Literal[RISK_FACTORS]


class ActionIn(RequestModel):
    description: StrictStr = Field(min_length=1, max_length=1000)
    owner_agency_id: StrictStr | None = Field(default=None, max_length=36)
    due_on: IsoDate | None = None
    done: StrictBool = False


class SafetyPlanIn(RequestModel):
    risk_level: RiskLevel
    risk_factors: list[RiskFactor] = Field(
        default_factory=list, max_length=50, description="duplicates are ignored"
    )
    actions: list[ActionIn] = Field(default_factory=list, max_length=100)
    lead_agency_id: StrictStr | None = Field(default=None, max_length=36)
    review_on: IsoDate | None = None
    notes: StrictStr | None = Field(default=None, max_length=20_000)


class ActionOut(BaseModel):
    id: str
    description: str
    owner_agency_id: str | None
    due_on: date | None
    done: bool


class SafetyPlanOut(BaseModel):
    id: str
    person_id: str
    version: int
    is_current: bool
    risk_level: str
    risk_factors: list[str]
    actions: list[ActionOut]
    lead_agency_id: str | None
    review_on: date | None
    notes: str | None
    created_by_id: str
    created_at: datetime
    etag: str
